"""Alert rules: well-formed, one per guarded figure, runbook anchors present and rendered absolute,
metrics exported."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from checkout_recs.deploy.alerts import (
    DEFAULT_RUNBOOK_BASE,
    RULE_SOURCES,
    render_source,
    runbook_base,
)

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "monitoring" / "alerts" / "prometheus-rules.yaml"


def _rules(path: Path = RULES) -> list[dict]:
    """The alerting rules of ``path`` (recording rules left out)."""
    doc = yaml.safe_load(path.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _all_alerts() -> list[dict]:
    return [r for src in RULE_SOURCES for r in _rules(ROOT / src.source)]


def test_rules_are_well_formed_and_cover_the_guarded_figures() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for r in rules:
        assert r["expr"].strip() and re.fullmatch(r"\d+[smh]", r["for"])
        assert r["labels"]["severity"] in {"page", "ticket"}
        assert r["annotations"]["summary"] and r["annotations"]["runbook_url"].startswith(
            "docs/monitoring.md#"
        )  # a repository path: rendering makes it absolute
        assert r["expr"].count("(") == r["expr"].count(")")
    text = " ".join(r["expr"] for r in rules)
    for metric in ("revision_app_request_latencies_bucket", "checkout_recs_fallback_total",
                   'reason="drift_flag"', "checkout_recs_exploration_spend_total",
                   "checkout_recs_new_seller_exposure_share"):  # fmt: skip
        assert metric in text


def test_runbook_anchors_exist() -> None:
    for r in _all_alerts():
        path, anchor = r["annotations"]["runbook_url"].split("#")
        doc = (ROOT / path).read_text()
        anchors = {
            re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", doc, re.M)
        }
        assert anchor in anchors, r["alert"]


def test_rendered_runbook_urls_are_absolute_under_one_configurable_base(monkeypatch) -> None:
    monkeypatch.delenv("CHECKOUT_RECS_RUNBOOK_BASE", raising=False)
    assert runbook_base() == DEFAULT_RUNBOOK_BASE
    monkeypatch.setenv("CHECKOUT_RECS_RUNBOOK_BASE", "https://runbooks.example.com/recs/")
    for src in RULE_SOURCES:
        doc = yaml.safe_load(render_source(ROOT, src))
        urls = [
            r["annotations"]["runbook_url"]
            for g in doc["spec"]["groups"]
            for r in g["rules"]
            if "alert" in r
        ]
        assert urls and all(
            re.fullmatch(r"https://runbooks\.example\.com/recs/docs/\w+\.md#[a-z0-9-]+", u)
            for u in urls
        ), urls


def test_serving_and_the_monitoring_job_export_the_checkout_recs_metrics_the_rules_use() -> None:
    exporters = (
        ROOT / "inference" / "metrics.py",
        ROOT / "inference" / "inventory_consumer.py",
        ROOT / "monitoring" / "drift_metrics.py",
    )
    exported = {
        m for f in exporters for m in re.findall(r'"(checkout_recs_[a-z_]+)"', f.read_text())
    }
    doc = yaml.safe_load(RULES.read_text())
    exprs = " ".join(r["expr"] for g in doc["groups"] for r in g["rules"])
    used = set(re.findall(r"(?<![:\w])(checkout_recs_[a-z_]+?)(?:_bucket)?\b", exprs))
    assert used <= exported, used - exported
