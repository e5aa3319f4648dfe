"""MLflow registry on a SQLite file: the gate sets ``challenger``; ``champion`` moves only when a
rollout reaches 100 %; a rollback leaves it where it is."""

from __future__ import annotations

import pytest

from tests.fixtures_ops_gmv import _mlflow_template, logged_run, mlflow_db  # noqa: F401

pytestmark = pytest.mark.slow

GOOD = {"ndcg@6": 0.12, "auc_click": 0.71, "auc_purchase": 0.69, "expected_revenue@6": 1.0}


def test_gate_sets_challenger_and_champion_moves_only_at_promotion(mlflow_db, tmp_path):  # noqa: F811
    from checkout_recs.tracking import (
        alias_metrics,
        alias_version,
        promote_bundle,
        promote_if_better,
    )

    run1 = logged_run(mlflow_db, GOOD, tmp_path / "1")
    assert promote_if_better(
        mlflow_db, run1, GOOD, bundle_uri="s3://b/bundle/1"
    ).promote  # first model
    assert alias_version(mlflow_db, "challenger")[0] == "1"
    assert alias_version(mlflow_db, "champion") is None  # the gate does not crown anyone
    assert "now champion" in promote_bundle(mlflow_db, "s3://b/bundle/1")
    assert alias_metrics(mlflow_db, "champion")["ndcg@6"] == pytest.approx(0.12)
    assert alias_version(mlflow_db, "challenger") is None  # consumed by the promotion

    worse = {**GOOD, "auc_click": 0.60}
    run2 = logged_run(mlflow_db, worse, tmp_path / "2")
    decision = promote_if_better(mlflow_db, run2, worse, bundle_uri="s3://b/bundle/2")
    assert not decision.promote and any("auc_click" in r for r in decision.reasons)
    assert alias_version(mlflow_db, "challenger") is None  # a refused model is no challenger
    assert alias_version(mlflow_db, "champion")[0] == "1"
    assert "no version" in promote_bundle(
        mlflow_db, "s3://b/bundle/2"
    )  # refused: never tagged, never crowned
    assert alias_version(mlflow_db, "champion")[0] == "1"


def test_rollback_tags_the_candidate_and_keeps_the_champion(mlflow_db, tmp_path):  # noqa: F811
    from mlflow import MlflowClient

    from checkout_recs.tracking import (
        MODEL_NAME,
        MlflowAliases,
        alias_version,
        promote_bundle,
        register_run,
        set_challenger,
    )

    v1 = register_run(mlflow_db, logged_run(mlflow_db, GOOD, tmp_path / "1"))
    set_challenger(mlflow_db, v1, True, "s3://b/bundle/1")
    promote_bundle(mlflow_db, "s3://b/bundle/1")
    v2 = register_run(mlflow_db, logged_run(mlflow_db, {**GOOD, "ndcg@6": 0.2}, tmp_path / "2"))
    set_challenger(mlflow_db, v2, True, "s3://b/bundle/2")
    note = MlflowAliases(mlflow_db).rolled_back("s3://b/bundle/2", "at 25%: error_rate 0.08 > 0.02")
    assert "champion unchanged" in note
    assert alias_version(mlflow_db, "champion")[0] == v1
    tags = MlflowClient(tracking_uri=mlflow_db).get_model_version(MODEL_NAME, v2).tags
    assert (
        tags["gate"] == "passed"
        and tags["rollout"] == "rolled_back"
        and "error_rate" in tags["rollback_reason"]
    )
