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
        for lid, res in R.items():
            if res["Type"] != "AWS::IAM::Role":
                continue
            for policy in res["Properties"].get("Policies", []):
                for st in policy["PolicyDocument"]["Statement"]:
                    actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                    for a in actions:
                        self.assertNotIn("*", a, f"{lid}: {a}")
                    if st["Resource"] == "*":
                        self.assertTrue(all(a.startswith(("xray:", "ec2:")) for a in actions), f"{lid}: {actions}")

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
