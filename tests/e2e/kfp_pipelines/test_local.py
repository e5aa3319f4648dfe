"""The training and monitoring pipelines run end to end with kfp.local on a tiny simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkout_recs.serving.bundle_layout import read_bundle_info
from checkout_recs.storage import LocalArtifactStore
from tests.fixtures_e2e import TINY_SIM

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TINY = TINY_SIM  # the same tiny marketplace as the shared training run (tests/e2e/conftest.py)


def test_training_publishes_a_gated_bundle(training_run):
    out = Path(training_run["out"])
    store = LocalArtifactStore(out / "artifacts")
    assert training_run["output"] == str(store.path("bundle"))  # published and LATEST points at it
    bundle = Path(training_run["output"])
    for part in (
        "model/ranker",
        "model/two_tower",
        "index/manifest.json",
        "candidates",
        "features/user.parquet",
        "bundle.json",
    ):
        assert (bundle / part).exists(), part
    info = read_bundle_info(bundle)
    assert info.n_items and info.n_items > 0 and info.mlflow_run_id
    assert store.latest("features") is not None  # the views Feast reads were published too
    assert (out / "artifacts" / "feast" / "online_store.db").exists()  # materialized
    assert any(
        (out / "artifacts" / "mlruns").iterdir()
    )  # MLflow run artifacts stay in the run folder
    assert json.loads((out / "run.json").read_text())["arguments"]["training_join"] == "pandas"


def test_the_pipeline_bundle_has_the_layout_of_the_cli_bundle(training_run, tmp_path):
    """The KFP component and ``checkout-recs build-bundle`` write the same files (one writer,
    ``serving.bundle_writer.assemble_bundle``), on the pipeline's own model and working folders."""
    from typer.testing import CliRunner

    from checkout_recs.serving.bundle_layout import BundleLayout
    from cli.app import app

    root = next(Path(training_run["pipeline_root"]).glob("checkout-recs-training-*"))
    r = CliRunner().invoke(
        app,
        [
            "build-bundle",
            "--model",
            str(root / "merge-models-op" / "model"),
            "--labels",
            str(root / "label-op" / "labels"),
            "--features",
            str(root / "build-features-op" / "features"),
            "--out",
            str(tmp_path / "cli_bundle"),
        ],
    )
    assert r.exit_code == 0, r.output
    pipeline = BundleLayout(Path(training_run["output"]))
    assert pipeline.files() == BundleLayout(tmp_path / "cli_bundle").files()
    assert "features/user.parquet" in pipeline.files()  # the embedded user store travels with it


def test_the_published_bundle_ranks_known_users_as_checkout_recs_serve_runs_it(
    training_run, training_run_raw, tmp_path
):
    """``checkout-recs serve --bundle <the published bundle>`` (user features from the bundle, no
    Feast) answers the demo's real checkouts with the ranker, not the ``unknown_user`` fallback."""
    import httpx

    from cli.demo import sample_checkouts
    from inference.launch import running_servers

    bundle = Path(training_run["output"])
    checkouts = [
        c
        for c in sample_checkouts(training_run_raw, 30, seed=3, bundle=bundle)
        if c["note"] == "checkout"
    ]
    # `serve`'s own transformer flags; a generous predictor deadline: this checks which users the
    # bundle knows, not latency on a busy machine
    flags = [
        "--ranker_protocol",
        "rest-binary",
        "--scoring",
        "remote",
        "--inventory",
        "memory",
        "--deadline_ms",
        "2000",
    ]
    answers = []
    with (
        running_servers(
            bundle, transformer_args=flags, ready_timeout_s=300, log_dir=tmp_path / "logs"
        ) as servers,
        httpx.Client(timeout=30) as http,
    ):
        for c in checkouts:
            r = http.post(
                servers.v1_url, json={"instances": [{k: v for k, v in c.items() if k != "note"}]}
            )
            assert r.status_code == 200, r.text
            answers.append(r.json()["predictions"][0])
    ranked = sum(a["policy"] == "ranker" for a in answers)
    assert len(answers) >= 20 and ranked >= 0.9 * len(answers), [
        (a["policy"], a.get("fallback_reason")) for a in answers
    ]


def test_every_task_left_its_artifacts_in_the_pipeline_root(training_run):
    root = next(Path(training_run["pipeline_root"]).glob("checkout-recs-training-*"))
    tasks = {p.name for p in root.iterdir() if p.is_dir()}
    expected = {
        "simulate-op",
        "ingest-op",
        "label-op",
        "build-features-op",
        "materialize-features-op",
        "training-set-op",
        "train-ranker-op",
        "distil-op",
        "train-retrieval-op",
        "merge-models-op",
        "build-bundle-op",
        "evaluate-op",
        "register-op",
    }
    assert expected <= tasks
    assert "deploy-canary-op" in tasks  # ran under the gate's condition, skipped without a cluster
    report = json.loads((root / "ingest-op" / "ingested" / "ingest_report.json").read_text())
    for t in report["tables"].values():
        assert t["read"] == t["accepted"] + t["quarantined"]
    assert (root / "evaluate-op" / "report").read_text().lstrip().lower().startswith("<")
    mat = json.loads((root / "materialize-features-op" / "executor_output.json").read_text())
    assert (
        mat["artifacts"]["metrics"]["artifacts"][0]["metadata"]["freshness_ok"] == 1
    )  # SLAs checked


def test_monitoring_pipeline_reports_no_drift_on_identical_traffic(training_run):
    from kfp_pipelines.local import run_local

    out = Path(training_run["out"])
    store = LocalArtifactStore(out / "artifacts")
    assert store.latest("ingested") is not None  # the training run published its ingested tables
    summary = run_local(
        "monitoring",
        out,
        {
            "reference": "store:ingested/LATEST/",
            "current": "store:ingested/LATEST/",
            "mode": "traffic",
            "redis_url": "redis://127.0.0.1:6379/13",
        },
    )
    assert summary["output"] == ""  # no drift version returned
    report = store.path("drift")  # but the report is published
    assert (report / "index.html").exists() and (report / "features" / "drift_report.html").exists()
    verdict = json.loads((report / "drift_summary.json").read_text())
    assert verdict["drift_detected"] is False  # so the flag step did not run
    root = next(Path(summary["pipeline_root"]).glob("checkout-recs-monitoring-*"))
    assert not (root / "set-drift-flag-op").exists()


def test_index_refresh_pipeline_publishes_a_new_bundle_version(training_run):
    from kfp_pipelines.local import run_local

    out = Path(training_run["out"])
    store = LocalArtifactStore(out / "artifacts")
    before = store.latest("bundle")
    summary = run_local("index_refresh", out, {"source": "", "seed": 12, "sim_config_json": TINY})
    after = store.latest("bundle")
    assert after != before and summary["output"] == str(store.path("bundle", after))
    old, new = (
        json.loads((store.path("bundle", v) / "bundle.json").read_text()) for v in (before, after)
    )
    assert new["index_version"] != old["index_version"] and new["refreshed_from"]
    assert new["ranker_version"] == old["ranker_version"]  # same models, new index


def test_gate_marks_a_challenger_and_the_champion_is_scored_beside_the_next_one(
    training_run, tmp_path
):
    import shutil

    import pandas as pd
    from mlflow import MlflowClient

    from checkout_recs.deploy.challenge import challenger_gate, evaluate_side_by_side
    from checkout_recs.models.train import split_by_time
    from checkout_recs.tracking import MODEL_NAME, alias_version, champion_model_dir, promote_bundle

    out = Path(training_run["out"])
    root = next(Path(training_run["pipeline_root"]).glob("checkout-recs-training-*"))
    evaluation = json.loads(
        json.loads((root / "evaluate-op" / "executor_output.json").read_text())["parameterValues"][
            "Output"
        ]
    )
    assert (
        evaluation["champion"] is None and "logged policy" in evaluation["champion_note"]
    )  # first model
    shutil.copyfile(
        out / "artifacts" / "mlflow.db", tmp_path / "mlflow.db"
    )  # leave the shared run as it is
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version, _ = alias_version(uri, "challenger")
    assert alias_version(uri, "champion") is None  # the gate does not crown; no cluster ramped it
    tags = MlflowClient(tracking_uri=uri).get_model_version(MODEL_NAME, version).tags
    assert tags["gate"] == "passed" and tags["bundle_uri"] == training_run["output"]
    promote_bundle(
        uri, training_run["output"]
    )  # what `deploy promote` does once the ramp is at 100 %
    champ_dir = champion_model_dir(uri, tmp_path / "champion")
    assert champ_dir is not None and (champ_dir / "ranker").is_dir()
    frame = pd.read_parquet(
        next(root.glob("training-set-op/training_set")) / "training_set.parquet"
    )
    _, held_out = split_by_time(frame, 0.2)
    res = evaluate_side_by_side(
        Path(training_run["output"]) / "model", held_out, tmp_path / "eval", champ_dir, version
    )
    assert res["champion"]["auc_click"] == pytest.approx(
        res["challenger"]["auc_click"]
    )  # the same model twice
    assert challenger_gate(res).promote
