#!/usr/bin/env python3
"""Tests of infra/grafana/nectar-dashboard.json: it parses as a Grafana dashboard with a Prometheus
input, and every metric its panels query is a name from shared/platform/src/observe/names.rs.

The other half of the issue's check ("each panel's metric appears in /metrics") needs a running
`nectar dev` that emits: `python3 infra/test_grafana.py --names` prints the series names the
panels query (histograms as `<name>_bucket`, as metrics-exporter-prometheus renders them), one per
line, for a test that scrapes GET /metrics and looks for each (`metric_names_in_grafana()` is the
same list for Python callers).
"""

import json
import re
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metric_names  # noqa: E402

DASHBOARD = Path(__file__).resolve().parent / "grafana" / "nectar-dashboard.json"
# Series suffixes metrics-exporter-prometheus adds to a histogram's name (with buckets configured).
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def series_in(expr: str) -> set[str]:
    """The series (metric) names a PromQL expression selects: identifiers left once strings, label
    matchers, range selectors, grouping clauses, function calls and keywords are taken out."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    # grouping and matching clauses go whole, so that `sum by (x) (...)` reads as the call `sum (...)`
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\b(\s*\([^)]*\))?", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", e):
        if m[2] is None and m[1].lower() not in PROMQL_WORDS:
            names.add(m[1])
    return names


def base_name(series: str) -> str:
    """The metric name behind a series name: `recommend_latency_ms_bucket` -> `recommend_latency_ms`."""
    for suffix in HISTOGRAM_SUFFIXES:
        if series.endswith(suffix) and series.removesuffix(suffix) in metric_names.METRICS:
            return series.removesuffix(suffix)
    return series


def load(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def panel_exprs(dashboard: dict):
    """(panel title, expr) of every query of every panel (rows' nested panels included)."""
    for panel in dashboard.get("panels", []):
        for p in [panel, *panel.get("panels", [])]:
            for t in p.get("targets", []):
                yield p.get("title"), t.get("expr", "")


def metric_names_in_grafana(dashboard: dict | None = None) -> list[str]:
    """The series names the dashboard's panels query, sorted: what GET /metrics must expose."""
    return sorted({s for _, expr in panel_exprs(dashboard or load()) for s in series_in(expr)})


class GrafanaDashboardTest(unittest.TestCase):
    def setUp(self):
        self.dash = load()

    def test_it_is_an_importable_dashboard_with_a_prometheus_input(self):
        self.assertEqual([i["name"] for i in self.dash["__inputs"]], ["DS_PROMETHEUS"])
        self.assertEqual(self.dash["__inputs"][0]["pluginId"], "prometheus")
        self.assertGreaterEqual(self.dash["schemaVersion"], 36)  # datasource refs as {type, uid}
        ids = [p["id"] for p in self.dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for p in self.dash["panels"]:
            self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"])
            self.assertTrue(p["targets"], p["title"])
            self.assertEqual(set(p["gridPos"]), {"h", "w", "x", "y"}, p["title"])

    def test_every_panel_queries_metrics_the_code_emits(self):
        for title, expr in panel_exprs(self.dash):
            series = series_in(expr)
            self.assertTrue(series, f"{title}: {expr}")
            for s in series:
                self.assertIn(base_name(s), metric_names.METRICS, f"{title}: {s} in {expr}")
            labels = re.findall(r"\b([a-z_]+)\s*=~?", expr) + [
                label.strip() for g in re.findall(r"\bby\s*\(([^)]*)\)", expr) for label in g.split(",")]
            for label in labels:
                self.assertIn(label, [*metric_names.DIMENSIONS, "le"], f"{title}: label {label}")

    def test_the_issue_panels_are_there(self):
        names = {base_name(s) for s in metric_names_in_grafana(self.dash)}
        for name in ("recommend_latency_ms", "recommend_fallbacks", "recommend_requests", "collect_events_accepted",
                     "archive_lag_seconds", "train_ndcg_at_10", "train_baseline_ndcg_at_10", "report_ctr"):
            self.assertIn(name, names)
        latency = [e for _, e in panel_exprs(self.dash) if "recommend_latency_ms" in e]
        self.assertTrue(any("histogram_quantile(0.99" in e and "recommend_latency_ms_bucket" in e for e in latency))

    def test_the_expression_reader(self):
        # GIVEN PromQL with functions, matchers, ranges, grouping and a typo'd name
        expr = ('histogram_quantile(0.99, sum by (le, endpoint) (rate(recommend_latency_ms_bucket{site=~"$site"}[5m])))'
                ' / ignoring (reason) group_left sum by (endpoint) (rate(recommend_fallback{code="x y"}[$__rate_interval]))')
        # THEN only the two series remain, and the typo is not a known metric
        self.assertEqual(series_in(expr), {"recommend_latency_ms_bucket", "recommend_fallback"})
        self.assertEqual(base_name("recommend_latency_ms_bucket"), "recommend_latency_ms")
        self.assertNotIn(base_name("recommend_fallback"), metric_names.METRICS)


if __name__ == "__main__":
    if sys.argv[1:] == ["--names"]:
        sys.stdout.write("".join(f"{n}\n" for n in metric_names_in_grafana()))
        sys.exit(0)
    sys.exit(unittest.main())
