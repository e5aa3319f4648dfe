"""Alert rules: well-formed, one per guarded figure, runbook anchors present, metrics exported."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "monitoring" / "alerts" / "prometheus-rules.yaml"


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_rules_are_well_formed_and_cover_the_guarded_figures() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for r in rules:
        assert r["expr"].strip() and re.fullmatch(r"\d+[smh]", r["for"])
        assert r["labels"]["severity"] in {"page", "ticket"}
        assert r["annotations"]["summary"] and r["annotations"]["runbook_url"].startswith(
            "docs/monitoring.md#"
        )
        assert r["expr"].count("(") == r["expr"].count(")")
    text = " ".join(r["expr"] for r in rules)
    for metric in ("revision_app_request_latencies_bucket", "checkout_recs_fallback_total",
                   'reason="drift_flag"', "checkout_recs_exploration_spend_total",
                   "checkout_recs_new_seller_exposure_share"):  # fmt: skip
        assert metric in text


def test_runbook_anchors_exist() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", doc, re.M)
    }
    for r in _rules():
        assert r["annotations"]["runbook_url"].split("#")[1] in anchors


def test_serving_exports_the_checkout_recs_metrics_the_rules_use() -> None:
    exported = set(re.findall(r'"(checkout_recs_[a-z_]+)"', (ROOT / "inference" / "metrics.py").read_text()))
    used = set(re.findall(r"(checkout_recs_[a-z_]+?)(?:_bucket)?\b", " ".join(r["expr"] for r in _rules())))
    assert used <= exported, used - exported
