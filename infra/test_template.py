#!/usr/bin/env python3
"""Consistency tests of infra/template.yaml that cfn-lint cannot know about."""

import json
import re
import sys
import unittest
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "infra"))
import gen_schedules  # noqa: E402
import metric_names  # noqa: E402


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


SUB_VAR = re.compile(r"\$\{([A-Za-z0-9:.]+)\}")
# SEARCH('{Namespace,dim,...} MetricName="name"', ...) in dashboard expressions.
SEARCH = re.compile(r"SEARCH\('\{(?P<schema>[^}]*)\}(?P<terms>[^']*)'")


def alarm_metric_refs(alarm):
    """(namespace, metric name, dimension names) of every metric an alarm evaluates, including
    the inputs of a metric-math alarm."""
    p = alarm["Properties"]
    if "MetricName" in p:
        yield p["Namespace"], p["MetricName"], [d["Name"] for d in p.get("Dimensions", [])]
    for m in p.get("Metrics", []):
        if "MetricStat" in m:
            metric = m["MetricStat"]["Metric"]
            yield metric["Namespace"], metric["MetricName"], [d["Name"] for d in metric.get("Dimensions", [])]


def dashboard_json(body_sub):
    """The dashboard body as deployed, with every ${...} of its Fn::Sub replaced by a dummy (a
    number where the JSON has it bare, as for threshold parameters)."""
    return json.loads(SUB_VAR.sub(lambda m: "1" if m[1] in T["Parameters"] else f"dummy-{m[1]}", body_sub))


def dashboard_metric_refs(body):
    """(namespace, metric name, dimension names or None) of every metric the widgets name, either
    as a metric row ["Namespace", "Name", ...] or in a SEARCH expression."""
    for widget in body["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            if isinstance(row[0], str) and row[0] != ".":
                yield row[0], row[1], None
            for item in row:
                if isinstance(item, dict) and "expression" in item:
                    for m in SEARCH.finditer(item["expression"]):
                        schema = [x.strip() for x in m["schema"].split(",")]
                        names = re.findall(r'MetricName="([^"]*)"', m["terms"])
                        if not names:
                            yield schema[0], None, schema[1:]
                        for name in names:
                            yield schema[0], name, schema[1:]


def unknown_nectar_metrics(refs):
    """The problems among metric references: a Nectar metric the code does not emit (not in
    observe/names.rs), a dimension that is not one of its keys, or a SEARCH naming no metric."""
    bad = []
    for ns, name, dims in refs:
        if ns != metric_names.NAMESPACE:
            continue
        if name not in metric_names.METRICS:
            bad.append(f"metric {name!r} is not in observe/names.rs")
        for d in dims or []:
            if d not in metric_names.DIMENSIONS:
                bad.append(f"{name}: dimension {d!r} is not in observe/names.rs")
    return bad


KMS_REF = {"Ref": "KmsKeyArn"}
FUNCTION_ROLES = {"CollectFunction": "CollectRole", "ArchiveFunction": "ArchiveRole",
                  "TrainFunction": "TrainRole", "RecommendFunction": "RecommendRole"}

# The env vars each function's Config::from_env reads (the lead's contract).
ENV = {
    "CollectFunction": {"NECTAR_CONFIG", "NECTAR_STREAM_NAME", "NECTAR_PUT_DEADLINE_MS"},
    "ArchiveFunction": {"NECTAR_CONFIG", "NECTAR_BUCKET", "NECTAR_REDIS_URL", "NECTAR_REDIS_SECRET_ARN",
                        "NECTAR_CATALOG_TABLE"},
    "TrainFunction": {"NECTAR_CONFIG", "NECTAR_BUCKET", "NECTAR_REGISTRY_TABLE", "NECTAR_REDIS_URL",
                      "NECTAR_REDIS_SECRET_ARN", "NECTAR_ERASURES_TABLE"},
    "RecommendFunction": {"NECTAR_CONFIG", "NECTAR_SERVED_LOG", "NECTAR_STREAM_NAME", "NECTAR_BUCKET",
                          "NECTAR_REGISTRY_TABLE", "NECTAR_CATALOG_TABLE", "NECTAR_KEYS_TABLE",
                          "NECTAR_REDIS_URL", "NECTAR_REDIS_SECRET_ARN",
                          "NECTAR_ERASURES_TABLE", "NECTAR_EVENTS_EXPIRATION_DAYS"},
}


class TemplateTest(unittest.TestCase):
    def test_function_env_vars(self):
        common = set(T["Globals"]["Function"]["Environment"]["Variables"])
        for fn, want in ENV.items():
            got = common | set(R[fn]["Properties"]["Environment"]["Variables"])
            self.assertEqual(got, want, fn)

    def test_served_log_goes_through_a_log_subscription(self):
        # The filter sends only the served-event lines of the recommend log group to the stream,
        # with the pattern the code writes its lines for.
        sub = R["RecommendServedSubscription"]
        self.assertEqual(sub["Type"], "AWS::Logs::SubscriptionFilter")
        p = sub["Properties"]
        self.assertEqual(p["LogGroupName"], {"Ref": "RecommendLogGroup"})
        self.assertEqual(p["DestinationArn"], {"Fn::GetAtt": "EventStream.Arn"})
        self.assertEqual(p["RoleArn"], {"Fn::GetAtt": "RecommendServedLogRole.Arn"})
        code = (ROOT / "shared/platform/src/collect/log_stream.rs").read_text()
        pattern = re.search(r'SERVED_FILTER_PATTERN: &str = "(.*)";', code).group(1)
        self.assertEqual(p["FilterPattern"], pattern)
        # The role: assumed by CloudWatch Logs of this account only, allowed one action on the stream.
        role = R["RecommendServedLogRole"]["Properties"]
        trust = role["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual([st["Principal"] for st in trust], [{"Service": "logs.amazonaws.com"}])
        self.assertIn("aws:SourceArn", trust[0]["Condition"]["StringLike"])
        grants = [(actions(st), st["Resource"]) for _, st in statements(R["RecommendServedLogRole"])
                  if not any(a.startswith("kms:") for a in actions(st))]
        self.assertEqual(grants, [(["kinesis:PutRecord"], {"Fn::GetAtt": "EventStream.Arn"})])

    def test_served_log_extension_is_the_default(self):
        fn = R["RecommendFunction"]["Properties"]
        self.assertEqual(fn["Environment"]["Variables"]["NECTAR_SERVED_LOG"], "extension")
        self.assertIn({"Ref": "ServedLogLayer"}, fn["Layers"])
        layer = R["ServedLogLayer"]
        self.assertEqual(layer["Metadata"]["BuildMethod"], "makefile")
        self.assertEqual(layer["Properties"]["ContentUri"], "../functions/served-log-extension")
        makefile = (ROOT / "functions/served-log-extension/Makefile").read_text()
        self.assertIn("build-ServedLogLayer:", makefile)
        self.assertIn("--extension --bin nectar-served-log", makefile)
        # the extension runs with the function's role: PutRecords on the stream, nothing more
        grants = [(actions(st), st["Resource"]) for _, st in statements(R["RecommendRole"])
                  if any(a.startswith("kinesis:") for a in actions(st))]
        self.assertEqual(grants, [(["kinesis:PutRecords"], {"Fn::GetAtt": "EventStream.Arn"})])

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
            ("GET", "/v1/session/{endpoint}"): "RecommendFunction",
            ("PUT", "/v1/items"): "RecommendFunction",
            ("DELETE", "/v1/users/{user_id}"): "RecommendFunction",
            ("DELETE", "/v1/clients/{client_id}"): "RecommendFunction",
            ("GET", "/v1/users/{user_id}/export"): "RecommendFunction",
        })
        self.assertNotIn("CorsConfiguration", R["HttpApi"]["Properties"])

    def test_erasures_table_and_who_may_use_it(self):
        # the schema of privacy/dynamo.rs, encrypted and recoverable like the other tables
        t = R["ErasuresTable"]
        p = t["Properties"]
        self.assertEqual(t["Type"], "AWS::DynamoDB::Table")
        self.assertEqual(p["BillingMode"], "PAY_PER_REQUEST")
        self.assertEqual(p["KeySchema"], [{"AttributeName": "pk", "KeyType": "HASH"},
                                          {"AttributeName": "sk", "KeyType": "RANGE"}])
        self.assertTrue(p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"])
        self.assertTrue(p["SSESpecification"]["SSEEnabled"])
        self.assertEqual(t["DeletionPolicy"], "Retain")
        # recommend records and reads erasures, train only reads them; no other role names the table
        arn = {"Fn::GetAtt": "ErasuresTable.Arn"}
        want = {"RecommendRole": {"dynamodb:PutItem", "dynamodb:Query"}, "TrainRole": {"dynamodb:Query"}}
        got = {}
        for lid, res in R.items():
            if res["Type"] != "AWS::IAM::Role":
                continue
            for _, st in statements(res):
                if mentions(st["Resource"], arn):
                    self.assertEqual(st["Resource"], arn, lid)
                    got.setdefault(lid, set()).update(actions(st))
        self.assertEqual(got, want)
        # the functions find it by name through NECTAR_ERASURES_TABLE, and only these two
        for fn in ENV:
            env = R[fn]["Properties"]["Environment"]["Variables"]
            has = env.get("NECTAR_ERASURES_TABLE") == {"Ref": "ErasuresTable"}
            self.assertEqual(has, fn in ("RecommendFunction", "TrainFunction"), fn)
            self.assertFalse(mentions({k: v for k, v in env.items() if k != "NECTAR_ERASURES_TABLE"},
                                      {"Ref": "ErasuresTable"}), fn)

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
        want = {"CollectRole": {"kms:GenerateDataKey"}, "SchedulerRole": {"kms:Decrypt", "kms:GenerateDataKey"},
                "RecommendServedLogRole": {"kms:GenerateDataKey"}}
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
        # the compacted branch names the same columns in the same order (converted where the
        # Parquet type differs: client is JSON text there, hour an int)
        compacted = presto["originalSql"].split("UNION ALL SELECT ")[1].split(' FROM "')[0]
        items, depth, cur = [], 0, ""
        for ch in compacted:  # split on the commas outside parentheses
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
            else:
                cur += ch
        items.append(cur)
        self.assertEqual([i.rsplit(" AS ", 1)[-1].strip().strip('"') for i in items], cols)
        self.assertIn('NOT EXISTS (SELECT 1 FROM "${GlueDatabase}"."events_compacted" c', presto["originalSql"])
        # and the compacted table has every column the view reads from it
        ctable = R["EventsCompactedTable"]["Properties"]["TableInput"]
        ccols = [c["Name"] for c in ctable["StorageDescriptor"]["Columns"]] + [p["Name"] for p in ctable["PartitionKeys"]]
        self.assertLessEqual(set(cols), set(ccols))
        self.assertEqual([p["Name"] for p in ctable["PartitionKeys"]], ["site", "date"])
        self.assertEqual(
            ctable["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"],
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        )
        self.assertEqual(
            ctable["Parameters"]["storage.location.template"],
            {"Fn::Sub": "s3://${EventBucket}/compacted/site=${!site}/date=${!date}"},
        )
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

    def test_online_report_query_and_permissions(self):
        # the served marker is a column (only trusted served answers are counted)
        cols = [c["Name"] for c in R["EventsTable"]["Properties"]["TableInput"]["StorageDescriptor"]["Columns"]]
        self.assertIn("nectar_served", cols)
        q = R["OnlineReportCountsQuery"]["Properties"]
        sql = q["QueryString"]["Fn::Sub"]
        self.assertIn("nectar_served = true", sql)
        for col in ("served", "displayed", "clicks"):
            self.assertRegex(sql, rf"AS {col}\b")
        self.assertEqual(q["WorkGroup"], {"Ref": "AthenaWorkGroup"})
        # train (job "report") may write reports/, and (job "compact") compacted/, nothing else
        puts = [st for _, st in statements(R["TrainRole"]) if "s3:PutObject" in actions(st)]
        self.assertEqual(
            sorted(st["Resource"]["Fn::Sub"] for st in puts),
            ["${EventBucket.Arn}/compacted/*", "${EventBucket.Arn}/reports/*"],
        )

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

    # ------------------------------------------------------------ alarms and dashboard (issue 12)
    def alarms(self):
        return {lid: r for lid, r in R.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    def test_every_alarm_metric_is_one_the_code_emits(self):
        refs = [ref for a in self.alarms().values() for ref in alarm_metric_refs(a)]
        self.assertEqual(unknown_nectar_metrics(refs), [])
        used = {name for ns, name, _ in refs if ns == metric_names.NAMESPACE}
        # the alarms: staleness and failing runs, fallback share, rejection ratio, archive
        # lag, parked records, dropped served events
        self.assertEqual(used, {"train_runs", "recommend_fallbacks", "recommend_requests", "collect_payloads_rejected",
                                "collect_events_accepted", "archive_lag_seconds", "archive_records_parked",
                                "served_log_dropped"})
        self.assertIn(("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", ["StreamName"]), refs)

    def test_the_metric_check_catches_a_typo(self):
        # GIVEN an alarm on a name the code does not emit, and one with an unknown dimension
        bad = {"Properties": {"Namespace": "Nectar", "MetricName": "recommend_fallback",
                              "Dimensions": [{"Name": "site", "Value": "demo"}]}}
        math = {"Properties": {"Metrics": [{"Id": "a", "MetricStat": {"Metric": {
            "Namespace": "Nectar", "MetricName": "train_runs", "Dimensions": [{"Name": "tenant", "Value": "x"}]}}}]}}
        # THEN both are reported; other namespaces are not ours to check
        problems = unknown_nectar_metrics([*alarm_metric_refs(bad), *alarm_metric_refs(math),
                                           ("AWS/Lambda", "Errors", ["FunctionName"])])
        self.assertEqual(len(problems), 2, problems)

    def test_every_alarm_goes_to_the_alarm_topic(self):
        for lid, a in self.alarms().items():
            self.assertEqual(a["Properties"]["AlarmActions"], [{"Ref": "AlarmTopic"}], lid)
            self.assertTrue(a["Properties"].get("AlarmDescription"), lid)

    def test_every_parameter_has_a_default(self):
        for name, p in T["Parameters"].items():
            self.assertIn("Default", p, name)
        for name, want in (("FallbackShareAlarmThreshold", 0.2), ("CollectRejectionAlarmThreshold", 0.2),
                           ("ArchiveLagThresholdSeconds", 900)):
            self.assertEqual(T["Parameters"][name]["Default"], want, name)

    def test_metric_math_alarms_name_their_inputs(self):
        for lid, a in self.alarms().items():
            metrics = a["Properties"].get("Metrics")
            if not metrics:
                continue
            ids = {m["Id"] for m in metrics}
            returned = [m for m in metrics if m.get("ReturnData")]
            self.assertEqual(len(returned), 1, lid)
            used = set(re.findall(r"\b([a-z][a-zA-Z0-9_]*)\b(?!\()", returned[0]["Expression"]))
            self.assertTrue(used, lid)
            self.assertLessEqual(used - {"AND", "OR"}, ids, lid)

    def test_alarms_per_site_and_scheduled_task(self):
        keys, tasks = gen_schedules.read_config(ROOT / "config" / "nectar.toml")
        self.assertTrue(tasks)
        alarms = self.alarms().values()

        def metrics_of(p):
            if "MetricName" in p:
                yield p["MetricName"], p.get("Dimensions", [])
            for m in p.get("Metrics", []):
                if "MetricStat" in m:
                    yield m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Metric"]["Dimensions"]

        def on(name, **dims):
            """The alarms evaluating metric `name` with exactly these dimension values."""
            want = sorted(({"Name": k, "Value": v} for k, v in dims.items()), key=lambda d: d["Name"])
            return [a for a in alarms if any(n == name and sorted(d, key=lambda x: x["Name"]) == want
                                             for n, d in metrics_of(a["Properties"]))]

        for site in keys:
            for name in ("recommend_fallbacks", "collect_payloads_rejected", "archive_lag_seconds",
                         "archive_records_parked", "served_log_dropped"):
                self.assertTrue(on(name, site=site), (site, name))
        self.assertTrue(on("archive_records_parked", site="_unknown"))
        for site, task, expr in tasks:
            interval = gen_schedules.interval_seconds(expr)
            stale = [a["Properties"] for a in on("train_runs", site=site, task=task, status="published")
                     if "MetricName" in a["Properties"]]
            self.assertEqual(len(stale), 1, (site, task))
            # no published run for every period covering twice the schedule: missing data breaches
            p = stale[0]
            self.assertEqual((p["TreatMissingData"], p["ComparisonOperator"], p["Threshold"]),
                             ("breaching", "LessThanThreshold", 1))
            self.assertEqual(p["DatapointsToAlarm"], p["EvaluationPeriods"])
            self.assertGreaterEqual(p["Period"] * p["EvaluationPeriods"], min(2 * interval, 7 * 86400), (site, task))
            failing = [a["Properties"] for a in on("train_runs", site=site, task=task, status="failed")]
            self.assertEqual(len(failing), 1, (site, task))
            self.assertEqual(failing[0]["DatapointsToAlarm"], 2)
            self.assertTrue(on("train_runs", site=site, task=task, status="refused"))

    def test_dashboard_body_is_json_and_its_metrics_are_emitted(self):
        sub = R["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        for var in SUB_VAR.findall(sub):  # every ${...} resolves
            self.assertTrue(var.split(".")[0] in R or var in T["Parameters"] or var.startswith("AWS::"), var)
        body = dashboard_json(sub)
        refs = list(dashboard_metric_refs(body))
        self.assertEqual(unknown_nectar_metrics(refs), [])
        self.assertTrue(all(name for ns, name, _ in refs), "a SEARCH names no MetricName")
        shown = {name for ns, name, _ in refs if ns == metric_names.NAMESPACE}
        # latency, fallback share, events in, archive lag, nDCG against baseline, CTR per variant
        for name in ("recommend_latency_ms", "recommend_fallbacks", "recommend_requests", "collect_events_accepted",
                     "archive_lag_seconds", "train_ndcg_at_10", "train_baseline_ndcg_at_10", "report_ctr"):
            self.assertIn(name, shown)
        titles = " ".join(w["properties"]["title"] for w in body["widgets"])
        self.assertIn("p50 / p99", titles)

    def test_dashboard_check_sees_search_expressions(self):
        # GIVEN a widget whose SEARCH names a metric the code does not emit; THEN it is reported
        body = {"widgets": [{"properties": {"metrics": [[{"id": "x", "expression":
                "SEARCH('{Nectar,site} MetricName=\"report_ctrs\"', 'Average', 60)"}]]}}]}
        self.assertEqual(len(unknown_nectar_metrics(dashboard_metric_refs(body))), 1)

    def test_samples_exist_for_every_function(self):
        names = {p.name for p in (ROOT / "events").glob("*.json")}
        for prefix in ("collect-", "archive-", "train-", "recommend-", "similar-", "items-"):
            self.assertTrue(any(n.startswith(prefix) for n in names), prefix)


SPARK_FIXTURE = ROOT / "jobs" / "spark" / "testdata" / "nectar-spark.toml"


class SparkTemplateTest(unittest.TestCase):
    """The resources of a task with engine = "spark", generated from the Spark job's fixture
    config (config/nectar.toml declares no spark task, so the committed template has none)."""

    @classmethod
    def setUpClass(cls):
        text = gen_schedules.generate(SPARK_FIXTURE, (ROOT / "infra" / "template.yaml").read_text())
        cls.R = yaml.load(text, Loader=_Loader)["Resources"]

    def test_the_committed_template_has_no_spark_resources(self):
        self.assertFalse([lid for lid in R if lid.startswith("Spark")])

    def test_a_spark_task_gets_the_application_and_a_schedule_starting_the_state_machine(self):
        app = self.R["SparkApplication"]["Properties"]
        self.assertEqual((app["Type"], app["ReleaseLabel"]), ("SPARK", gen_schedules.SPARK_RELEASE_LABEL))
        # the scheduled spark task starts the state machine, not the train function
        self.assertNotIn("TrainScheduleFxBig", self.R)
        target = self.R["SparkScheduleFxBig"]["Properties"]["Target"]
        self.assertEqual(target["Arn"], {"Ref": "SparkTrainStateMachine"})
        self.assertEqual(json.loads(target["Input"]), {"site": "fx", "task": "big"})
        self.assertEqual(target["DeadLetterConfig"]["Arn"], {"Fn::GetAtt": "TrainDlq.Arn"})
        # and it is alarmed on as a scheduled task
        self.assertIn("ModelStaleAlarmFxBig", self.R)
        # the native task without a schedule gets nothing
        self.assertFalse([lid for lid in self.R if lid.endswith("FxExport")])

    def test_the_state_machine_runs_the_job_then_publishes_its_output(self):
        sm = self.R["SparkTrainStateMachine"]["Properties"]
        states = sm["Definition"]["States"]
        train, publish = states["Train"], states["Publish"]
        self.assertEqual(train["Resource"], "arn:aws:states:::emr-serverless:startJobRun.sync")
        self.assertEqual(train["Next"], "Publish")
        args = train["Parameters"]["JobDriver"]["SparkSubmit"]["EntryPointArguments.$"]
        for flag in ("--events", "--site", "--task", "--config", "--out"):
            self.assertIn(f"'{flag}'", args)
        out = re.search(r"States\.Format\('(s3://[^']*)'", args)[1]
        self.assertTrue(out.startswith("s3://${Bucket}/artifacts/"), out)
        self.assertEqual(publish["Resource"], "arn:aws:states:::lambda:invoke")
        self.assertEqual(publish["Parameters"]["FunctionName"], "${TrainFunctionArn}")
        payload = publish["Parameters"]["Payload"]
        self.assertEqual(payload["job"], "publish")
        self.assertIn(f"'{out}'", payload["artifacts.$"])
        self.assertEqual(sm["DefinitionSubstitutions"]["TrainFunctionArn"], {"Fn::GetAtt": "TrainFunction.Arn"})
        self.assertTrue(sm["TracingConfiguration"]["Enabled"])

    def test_the_job_role_reads_the_event_log_and_writes_artifacts_only(self):
        for has_key in (False, True):
            conds = {"HasKmsKey": has_key, "NoKmsKey": not has_key}
            role = resolve(self.R["SparkJobRole"], conds)
            granted = {}
            for _, st in statements(role):
                self.assertEqual(st["Effect"], "Allow")
                for a in actions(st):
                    granted.setdefault(a, []).append(st["Resource"])
            kms = {"kms:Decrypt", "kms:GenerateDataKey"} if has_key else set()
            self.assertEqual(set(granted), {"s3:ListBucket", "s3:GetObject", "s3:PutObject"} | kms)
            for a in kms:
                self.assertEqual(granted[a], [KMS_REF])
            subs = lambda res: sorted(r["Fn::Sub"] for r in (res if isinstance(res, list) else [res]))
            self.assertEqual(subs(granted["s3:PutObject"][0]), ["${EventBucket.Arn}/artifacts/*"])
            self.assertEqual(subs(granted["s3:GetObject"][0]), ["${EventBucket.Arn}/compacted/*",
                                                               "${EventBucket.Arn}/events/*",
                                                               "${EventBucket.Arn}/jobs/spark/*"])
        # the train function may read what it publishes, nothing more
        policy = self.R["SparkArtifactsReadPolicy"]["Properties"]
        self.assertEqual(policy["RoleName"], {"Ref": "TrainRole"})
        acts = {a for st in policy["PolicyDocument"]["Statement"] for a in actions(st)}
        self.assertEqual(acts, {"s3:ListBucket", "s3:GetObject"})

    def test_spark_roles_name_their_resources(self):
        for lid in ("SparkJobRole", "SparkStateMachineRole", "SparkSchedulerRole"):
            for _, st in statements(self.R[lid]):
                for a in actions(st):
                    self.assertNotIn("*", a, f"{lid}: {a}")
                if st["Resource"] == "*":
                    # X-Ray, and Step Functions' log delivery, which takes no resource
                    self.assertTrue(all(a.startswith(("xray:", "logs:")) for a in actions(st)), f"{lid}: {st}")
        passes = [st for _, st in statements(self.R["SparkStateMachineRole"]) if "iam:PassRole" in actions(st)]
        self.assertEqual(passes[0]["Resource"], {"Fn::GetAtt": "SparkJobRole.Arn"})
        self.assertEqual(passes[0]["Condition"]["StringEquals"]["iam:PassedToService"], "emr-serverless.amazonaws.com")

    def test_engine_is_checked(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            bad = Path(d) / "bad.toml"
            bad.write_text('[sites.s.tasks.t]\nalgorithm = "item_knn"\nengine = "spark"\n')
            with self.assertRaisesRegex(gen_schedules.ConfigError, "sites.s.tasks.t.engine"):
                gen_schedules.read_spark_tasks(bad)
            bad.write_text('[sites.s.tasks.t]\nalgorithm = "als"\nengine = "flink"\n')
            with self.assertRaisesRegex(gen_schedules.ConfigError, "native or spark"):
                gen_schedules.read_spark_tasks(bad)


if __name__ == "__main__":
    sys.exit(unittest.main())
