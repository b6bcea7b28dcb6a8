#!/usr/bin/env python3
"""Consistency tests of infra/template.yaml that cfn-lint cannot know about."""

import json
import re
import sys
import unittest
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {name: value}


_Loader.add_multi_constructor("!", _tag)
T = yaml.load((ROOT / "infra" / "template.yaml").read_text(), Loader=_Loader)
R = T["Resources"]
NO_VALUE = {"Ref": "AWS::NoValue"}
_DROP = object()


def resolve(node, conditions):
    """The template node as deployed when the named conditions have the given truth values:
    Fn::If on those conditions takes its branch, AWS::NoValue drops the key or list item."""
    if isinstance(node, list):
        items = [resolve(n, conditions) for n in node]
        return [i for i in items if i is not _DROP]
    if isinstance(node, dict):
        if list(node) == ["Fn::If"] and node["Fn::If"][0] in conditions:
            cond, yes, no = node["Fn::If"]
            return resolve(yes if conditions[cond] else no, conditions)
        if node == NO_VALUE:
            return _DROP
        items = {k: resolve(v, conditions) for k, v in node.items()}
        return {k: v for k, v in items.items() if v is not _DROP}
    return node


def with_key(has_key):
    """Resources and Globals as deployed with KmsKeyArn set (True) or empty (False)."""
    conds = {"HasKmsKey": has_key, "NoKmsKey": not has_key}
    res = {lid: resolve(r, conds) for lid, r in R.items() if r.get("Condition") not in conds or conds[r["Condition"]]}
    return res, resolve(T["Globals"], conds)


def statements(role):
    """Every statement of a role's inline policies (with their policy name), Fn::If kept as is."""
    for policy in role["Properties"].get("Policies", []):
        if "Fn::If" in policy:
            continue
        for st in policy["PolicyDocument"]["Statement"]:
            yield policy["PolicyName"], st


def actions(st):
    return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]


def mentions(node, target):
    if node == target:
        return True
    if isinstance(node, dict):
        return any(mentions(v, target) for v in node.values())
    if isinstance(node, list):
        return any(mentions(v, target) for v in node)
    return False


KMS_REF = {"Ref": "KmsKeyArn"}
FUNCTION_ROLES = {"CollectFunction": "CollectRole", "ArchiveFunction": "ArchiveRole",
                  "TrainFunction": "TrainRole", "RecommendFunction": "RecommendRole"}

# The env vars each function's Config::from_env reads (the lead's contract).
ENV = {
    "CollectFunction": {"NECTAR_CONFIG", "NECTAR_STREAM_NAME", "NECTAR_PUT_DEADLINE_MS"},
    "ArchiveFunction": {"NECTAR_CONFIG", "NECTAR_BUCKET", "NECTAR_REDIS_URL", "NECTAR_REDIS_SECRET_ARN",
                        "NECTAR_CATALOG_TABLE"},
    "TrainFunction": {"NECTAR_CONFIG", "NECTAR_BUCKET", "NECTAR_REGISTRY_TABLE", "NECTAR_REDIS_URL",
                      "NECTAR_REDIS_SECRET_ARN"},
    "RecommendFunction": {"NECTAR_CONFIG", "NECTAR_STREAM_NAME", "NECTAR_REGISTRY_TABLE", "NECTAR_CATALOG_TABLE",
                          "NECTAR_KEYS_TABLE", "NECTAR_REDIS_URL", "NECTAR_REDIS_SECRET_ARN"},
}


class TemplateTest(unittest.TestCase):
    def test_function_env_vars(self):
        common = set(T["Globals"]["Function"]["Environment"]["Variables"])
        for fn, want in ENV.items():
            got = common | set(R[fn]["Properties"]["Environment"]["Variables"])
            self.assertEqual(got, want, fn)

    def test_routes(self):
        routes = {
            (ev["Properties"]["Method"], ev["Properties"]["Path"]): fn
            for fn in ENV
            for ev in (R[fn]["Properties"].get("Events") or {}).values()
            if ev["Type"] == "HttpApi"
        }
        self.assertEqual(routes, {
            ("POST", "/v1/collect"): "CollectFunction",
            ("OPTIONS", "/v1/collect"): "CollectFunction",
            ("GET", "/v1/recommend/{endpoint}"): "RecommendFunction",
            ("GET", "/v1/similar/{endpoint}"): "RecommendFunction",
            ("PUT", "/v1/items"): "RecommendFunction",
        })
        self.assertNotIn("CorsConfiguration", R["HttpApi"]["Properties"])

    def test_no_wildcard_actions_in_allow_statements(self):
        for has_key in (False, True):
            for lid, res in with_key(has_key)[0].items():
                if res["Type"] != "AWS::IAM::Role":
                    continue
                for _, st in statements(res):
                    for a in actions(st):
                        self.assertNotIn("*", a, f"{lid}: {a}")
                    if st["Resource"] == "*":
                        self.assertTrue(all(a.startswith(("xray:", "ec2:")) for a in actions(st)), f"{lid}: {st}")

    def test_checkov_skips_give_a_reason(self):
        # check.sh runs checkov: a finding is fixed or skipped next to its resource, with the reason.
        skips = 0
        for lid, res in R.items():
            for skip in (res.get("Metadata") or {}).get("checkov", {}).get("skip", []):
                skips += 1
                self.assertRegex(skip.get("id", ""), r"^CKV2?_AWS_[0-9]+$", lid)
                self.assertGreaterEqual(len(skip.get("comment", "").split()), 8, f"{lid} {skip.get('id')}: say why")
        self.assertNotIn("checkov", T.get("Metadata", {}), "skip per resource, with its reason, not for the template")
        self.assertGreater(skips, 0)

    def test_kms_key_parameter(self):
        p = T["Parameters"]["KmsKeyArn"]
        self.assertEqual(p["Default"], "")
        self.assertRegex("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", p["AllowedPattern"])
        self.assertNotRegex("alias/nectar", p["AllowedPattern"])  # IAM policies need the key ARN
        # WHEN the key is given, THEN everything that stores data is encrypted with it.
        res, globs = with_key(True)
        where = {
            "EventBucket": ["BucketEncryption"], "AthenaWorkGroup": ["WorkGroupConfiguration"],
            "EventStream": ["StreamEncryption"], "ArchiveDlq": ["KmsMasterKeyId"], "TrainDlq": ["KmsMasterKeyId"],
            "AlarmTopic": ["KmsMasterKeyId"], "RedisAuthSecret": ["KmsKeyId"],
        }
        where.update({lid: ["SSESpecification"] for lid, r in R.items() if r["Type"] == "AWS::DynamoDB::Table"})
        where.update({lid: ["KmsKeyId"] for lid, r in R.items() if r["Type"] == "AWS::Logs::LogGroup"})
        self.assertEqual(len([w for w in where if R[w]["Type"] == "AWS::Logs::LogGroup"]), 5)
        for lid, keys in where.items():
            for k in keys:
                self.assertTrue(mentions(res[lid]["Properties"].get(k), KMS_REF), f"{lid}.{k}")
        self.assertEqual(res["EventBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
                         ["ServerSideEncryptionByDefault"]["SSEAlgorithm"], "aws:kms")
        self.assertEqual(globs["Function"]["KmsKeyArn"], KMS_REF)
        self.assertNotIn("AlarmTopicKey", res)
        # WHEN it is not, THEN no resource names it, and AWS managed keys (or the topic's own) are used.
        res, globs = with_key(False)
        self.assertFalse(mentions(res, KMS_REF))
        self.assertNotIn("KmsKeyArn", globs["Function"])
        for q in ("ArchiveDlq", "TrainDlq"):
            self.assertEqual(res[q]["Properties"]["KmsMasterKeyId"], "alias/aws/sqs")
        self.assertEqual(res["AlarmTopic"]["Properties"]["KmsMasterKeyId"], {"Fn::GetAtt": "AlarmTopicKey.Arn"})
        self.assertTrue(res["AlarmTopicKey"]["Properties"]["EnableKeyRotation"])

    def test_kms_grants_are_on_that_key_only(self):
        # Each role may use the key only for what it stores or reads, through those services.
        want = {"CollectRole": {"kms:GenerateDataKey"}, "SchedulerRole": {"kms:Decrypt", "kms:GenerateDataKey"}}
        for role in FUNCTION_ROLES.values():
            want.setdefault(role, {"kms:Decrypt", "kms:GenerateDataKey"})
        for has_key in (False, True):
            res, _ = with_key(has_key)
            for lid, r in res.items():
                if r["Type"] != "AWS::IAM::Role":
                    continue
                kms = [st for _, st in statements(r) if any(a.startswith("kms:") for a in actions(st))]
                if not has_key:
                    self.assertEqual(kms, [], lid)
                    continue
                self.assertEqual(bool(kms), lid in want, lid)
                for st in kms:
                    self.assertEqual(st["Resource"], KMS_REF, lid)
                    self.assertEqual(set(actions(st)), want[lid], lid)
                    services = st["Condition"]["StringEquals"]["kms:ViaService"]
                    self.assertTrue(services and all(s["Fn::Sub"].endswith(".${AWS::Region}.amazonaws.com")
                                                     for s in services), lid)

    def test_reserved_concurrency_parameters(self):
        for fn in FUNCTION_ROLES:
            name = fn.removesuffix("Function")
            param = T["Parameters"][f"{name}ReservedConcurrency"]
            self.assertEqual((param["Type"], param["Default"], param["MinValue"]), ("Number", -1, -1), fn)
            self.assertEqual(T["Conditions"][f"Reserve{name}"],
                             {"Fn::Not": [{"Fn::Equals": [{"Ref": f"{name}ReservedConcurrency"}, -1]}]}, fn)
            self.assertEqual(R[fn]["Properties"]["ReservedConcurrentExecutions"],
                             {"Fn::If": [f"Reserve{name}", {"Ref": f"{name}ReservedConcurrency"}, NO_VALUE]}, fn)

    def test_failed_training_runs_reach_a_dead_letter_queue(self):
        dlq = {"Fn::GetAtt": "TrainDlq.Arn"}
        schedules = [r for r in R.values() if r["Type"] == "AWS::Scheduler::Schedule"]
        self.assertTrue(schedules)
        for sch in schedules:
            target = sch["Properties"]["Target"]
            self.assertEqual(target["DeadLetterConfig"], {"Arn": dlq}, sch["Properties"]["Description"])
            self.assertGreater(target["RetryPolicy"]["MaximumRetryAttempts"], 0)
            self.assertGreaterEqual(target["RetryPolicy"]["MaximumEventAgeInSeconds"], 60)
        on_failure = R["TrainFunction"]["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        self.assertEqual(on_failure, {"Type": "SQS", "Destination": dlq})
        for role in ("SchedulerRole", "TrainRole"):  # Scheduler and Lambda send with these roles
            self.assertTrue(any(actions(st) == ["sqs:SendMessage"] and st["Resource"] == dlq
                                for _, st in statements(R[role])), role)

    def test_queues_and_topics_are_encrypted(self):
        for has_key in (False, True):
            res, _ = with_key(has_key)
            for lid, r in res.items():
                if r["Type"] in ("AWS::SQS::Queue", "AWS::SNS::Topic"):
                    self.assertTrue(r["Properties"].get("KmsMasterKeyId"), (lid, has_key))
                    self.assertNotEqual(r["Properties"]["KmsMasterKeyId"], "alias/aws/sns", lid)  # alarms need a CMK
                if r["Type"] == "AWS::SQS::Queue":  # and TLS only
                    policies = [p for p in res.values() if p["Type"] == "AWS::SQS::QueuePolicy"
                                and p["Properties"]["Queues"] == [{"Ref": lid}]]
                    self.assertEqual(len(policies), 1, lid)

    def test_access_logs_are_a_parameter(self):
        self.assertEqual(T["Parameters"]["AccessLogBucket"]["Default"], "")
        on = resolve(R["EventBucket"], {"HasAccessLogBucket": True})["Properties"]["LoggingConfiguration"]
        self.assertEqual(on["DestinationBucketName"], {"Ref": "AccessLogBucket"})
        self.assertNotIn("LoggingConfiguration", resolve(R["EventBucket"], {"HasAccessLogBucket": False})["Properties"])

    def test_dedupe_view_matches_the_table(self):
        view = R["EventsDedupView"]["Properties"]["TableInput"]
        presto = json.loads(view["ViewOriginalText"]["Fn::Join"][1][1]["Fn::Base64"]["Fn::Sub"])
        table = R["EventsTable"]["Properties"]["TableInput"]
        cols = [c["Name"] for c in table["StorageDescriptor"]["Columns"]] + [p["Name"] for p in table["PartitionKeys"]]
        select = re.search(r"SELECT (.*?) FROM", presto["originalSql"]).group(1)
        self.assertEqual([s.strip().strip('"') for s in select.split(",")], cols)
        self.assertEqual([c["name"] for c in presto["columns"]], cols)
        self.assertEqual([c["Name"] for c in view["StorageDescriptor"]["Columns"]], cols)
        hive = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
        for c in presto["columns"]:
            if c["name"] in hive:
                want = hive[c["name"]]
                # row(a varchar,b row(c integer)) is struct<a:string,b:struct<c:int>> in Hive terms
                got = (c["type"].replace("varchar", "string").replace("integer", "int")
                       .replace("row(", "struct<").replace(")", ">").replace(" ", ":"))
                self.assertEqual(got, want, c["name"])

    def test_redis_urls_use_the_tls_cluster_client(self):
        # Serverless and the replication group are both cluster mode, always TLS
        # (RedisConn::connect in shared/platform/src/model_store/redis.rs).
        for fn in ("ArchiveFunction", "TrainFunction", "RecommendFunction"):
            url = R[fn]["Properties"]["Environment"]["Variables"]["NECTAR_REDIS_URL"]
            branches = url["Fn::If"][1:]
            self.assertEqual(len(branches), 2, fn)
            for b in branches:
                self.assertTrue(b["Fn::Sub"].startswith("rediss-cluster://"), (fn, b))

    def test_redis_access_string_is_least_privilege(self):
        rules = R["RedisDefaultUser"]["Properties"]["AccessString"].split()
        self.assertEqual(rules[:3], ["on", "~nectar:*", "-@all"])
        # Only single commands are added back: no category (+@...), no key pattern beyond nectar:*.
        for r in rules[3:]:
            self.assertRegex(r, r"^\+[a-z]+(\|[a-z]+)?$", r)
        for forbidden in ("keys", "flushall", "flushdb", "info", "config", "eval", "cluster"):
            self.assertNotIn(f"+{forbidden}", rules, forbidden)

    def test_samples_exist_for_every_function(self):
        names = {p.name for p in (ROOT / "events").glob("*.json")}
        for prefix in ("collect-", "archive-", "train-", "recommend-", "similar-", "items-"):
            self.assertTrue(any(n.startswith(prefix) for n in names), prefix)


if __name__ == "__main__":
    sys.exit(unittest.main())
