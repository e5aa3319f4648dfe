"""The Grafana dashboard: well-formed, covering what on-call watches, every query naming a metric
that serving, the monitoring job or a recording rule defines (statically here; against live
servers and Prometheus in tests/e2e/monitoring/test_prometheus_stack.py), and provisioned by a
ConfigMap the Grafana sidecar picks up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from checkout_recs.deploy.alerts import RULE_SOURCES, load_groups
from checkout_recs.deploy.dashboards import CONFIGMAP, TARGET_DIR, stale_dashboards
from monitoring.dashboard import DASHBOARD, load, metric_names, panel_queries, panels
from monitoring.drift_metrics import METRIC_NAMES as DRIFT_METRICS

ROOT = Path(__file__).resolve().parents[3]


def _recorded() -> set[str]:
    return {
        r["record"]
        for src in RULE_SOURCES
        for g in load_groups(ROOT / src.source)
        for r in g["rules"]
        if "record" in r
    }


def test_metric_names_parse_promql_roughly() -> None:
    expr = (
        'sum by (le) (rate(foo_bucket{a="b", c=~"$x"}[5m] offset 1h)) / on(job) group_left(y) bar:rec '
        "* 1e-9 > bool 0 and histogram_quantile(0.9, baz) unless ${var}"
    )
    assert metric_names(expr) == {"foo_bucket", "bar:rec", "baz"}


def test_the_dashboard_is_well_formed() -> None:
    d = load()
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)) and d["uid"] == "checkout-recs"
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p["description"] and p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]


def test_the_panels_cover_what_on_call_watches() -> None:
    names = {n for _, e in panel_queries(load()) for n in metric_names(e)}
    titles = " ".join(p["title"].lower() for p in panels(load()))
    for topic in (
        "latency p95 per stage",
        "fallback answers by reason",
        "exploration spend",
        "new-seller exposure",
        "drift flag",
        "per-feature drift score",
    ):
        assert topic in titles, topic
    assert {
        "checkout_recs:stage_seconds:p95_5m",
        "checkout_recs:fallback:rate5m",
        "checkout_recs_exploration_budget",
        "checkout_recs_new_seller_exposure_share",
        "checkout_recs_drift_score",
        "checkout_recs_drift_detected",
    } <= names


def test_every_query_names_a_defined_metric() -> None:
    exported = set(
        re.findall(r'"(checkout_recs_[a-z_]+)"', (ROOT / "inference" / "metrics.py").read_text())
    )
    known = exported | set(DRIFT_METRICS) | _recorded()
    for title, expr in panel_queries(load()):
        for name in metric_names(expr):
            ok = (
                name in known
                or name.startswith("process_")
                or name.removesuffix("_bucket") in exported
            )
            assert ok, f"{title}: {name} is neither exported nor recorded"


def test_the_dashboard_is_provisioned_by_a_labelled_configmap() -> None:
    assert not stale_dashboards(ROOT), "stale copy: run `checkout-recs manifests sync-alerts`"
    kust = yaml.safe_load((ROOT / "manifests" / "base" / "kustomization.yaml").read_text())
    gen = next(g for g in kust["configMapGenerator"] if g["name"] == CONFIGMAP)
    assert gen["options"]["labels"]["grafana_dashboard"] == "1"
    assert f"{TARGET_DIR.name}/{DASHBOARD.name}" in gen["files"]


@pytest.mark.parametrize("title", ["Fallback share of answers", "Drifted share of columns"])
def test_shares_are_drawn_as_percentages(title: str) -> None:
    p = next(p for p in panels(load()) if p["title"] == title)
    assert p["fieldConfig"]["defaults"]["unit"] == "percentunit"
