"""MLflow registry: champion / challenger aliases and the promotion gate, on a SQLite file."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_gate_promotes_first_then_refuses_worse_challenger(tmp_path):
    from checkout_recs.tracking import alias_metrics, log_training_run, promote_if_better

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "config.json").write_text("{}")
    good = {"ndcg@6": 0.12, "auc_click": 0.71, "auc_purchase": 0.69, "expected_revenue@6": 1.0}
    run1 = log_training_run(uri, "t", {"lr": 0.1}, good, tmp_path / "art")
    assert promote_if_better(uri, run1, good).promote
    assert alias_metrics(uri, "champion")["ndcg@6"] == pytest.approx(0.12)
    worse = {**good, "auc_click": 0.60}
    run2 = log_training_run(uri, "t", {"lr": 0.2}, worse, tmp_path / "art")
    decision = promote_if_better(uri, run2, worse)
    assert not decision.promote and any("auc_click" in r for r in decision.reasons)
    assert alias_metrics(uri, "champion")["auc_click"] == pytest.approx(0.71)  # champion unchanged
    assert alias_metrics(uri, "challenger")["auc_click"] == pytest.approx(0.60)
