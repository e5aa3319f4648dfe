"""``pipeline submit`` against a fake Kubeflow Pipelines API server on loopback."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from cli.app import app
from kfp_pipelines import cluster
from kfp_pipelines.params import PARAMS_DIR
from kfp_pipelines.registry import get
from kfp_pipelines.submit import submit
from tests.fixtures_ops_servers import fake_kfp  # noqa: F401

pytestmark = pytest.mark.e2e


def test_one_run_carries_the_compiled_spec_and_parameters(fake_kfp):  # noqa: F811
    host, requests = fake_kfp
    result = submit(
        "training",
        host,
        params={"source": "s3://raw/logs", "seed": 3},
        token="t0k",
        check_stale=False,
    )
    assert result.kind == "run" and result.id == "run-1" and result.experiment_id == "exp-1"
    run = next(r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/runs")
    compiled, platform = yaml.safe_load_all(get("training").compiled_path.read_text())
    sent = run["body"]["pipeline_spec"]  # with a platform spec, kfp.Client nests both documents
    assert sent["pipeline_spec"]["pipelineInfo"]["name"] == compiled["pipelineInfo"]["name"]
    assert sent["platform_spec"] == platform
    assert run["body"]["runtime_config"]["parameters"] == {"source": "s3://raw/logs", "seed": 3}
    assert run["body"]["experiment_id"] == "exp-1"
    assert run["body"]["service_account"] == "checkout-recs-pipeline"
    assert all(r["auth"] == "Bearer t0k" for r in requests)


def test_recurring_run_uses_cron_and_reuses_the_experiment(fake_kfp):  # noqa: F811
    host, requests = fake_kfp
    submit("monitoring", host, schedule="default", check_stale=False)
    result = submit("index_refresh", host, schedule="0 5 * * * *", check_stale=False)
    assert result.kind == "recurring_run" and result.schedule == "0 5 * * * *"
    created = [
        r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/recurringruns"
    ]
    assert [c["body"]["trigger"]["cron_schedule"]["cron"] for c in created] == [
        get("monitoring").schedule,
        "0 5 * * * *",
    ]
    assert all(str(c["body"]["max_concurrency"]) == "1" for c in created)
    assert all(c["body"]["no_catchup"] is True and c["body"]["mode"] == "ENABLE" for c in created)
    assert (
        len(
            [
                r
                for r in requests
                if r["method"] == "POST" and r["path"] == "/apis/v2beta1/experiments"
            ]
        )
        == 1
    )


def test_unknown_pipeline_is_refused_before_any_request(fake_kfp):  # noqa: F811
    host, requests = fake_kfp
    with pytest.raises(KeyError, match="unknown pipeline"):
        submit("nope", host)
    assert requests == []


def test_submit_with_the_production_parameter_file(fake_kfp, monkeypatch):  # noqa: F811
    """``pipeline submit --params production.yaml``: the run's parameters are the file's training
    section, an explicit ``--param`` wins, every task pod gets the ConfigMap/Secret env, and the
    run's service account is the pipeline's."""
    host, requests = fake_kfp
    monkeypatch.setenv("KFP_TOKEN", "t0k")
    production = PARAMS_DIR / "production.yaml"
    r = CliRunner().invoke(
        app,
        [
            "pipeline",
            "submit",
            "training",
            "--host",
            host,
            "--params",
            str(production),
            "--namespace",
            "checkout-recs",
        ],
    )
    assert r.exit_code == 0, r.output
    body = next(r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/runs")[
        "body"
    ]
    expected = yaml.safe_load(production.read_text())["training"]
    assert body["runtime_config"]["parameters"] == expected
    assert expected["source"].startswith("s3://") and expected["feature_env"] == "production"
    assert body["service_account"] == "checkout-recs-pipeline"
    executors = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"][
        "executors"
    ]
    assert set(executors) == set(
        body["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    )
    for cfg in executors.values():
        assert {m["configMapName"] for m in cfg["configMapAsEnv"]} == {cluster.CONFIG_MAP}
        assert {s["secretName"] for s in cfg["secretAsEnv"]} == {cluster.SECRET}

    r = CliRunner().invoke(
        app,
        [
            "pipeline",
            "submit",
            "training",
            "--host",
            host,
            "--params",
            str(production),
            "--param",
            "seed=11",
            "--schedule",
            "default",
        ],
    )
    assert r.exit_code == 0, r.output
    recurring = next(
        r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/recurringruns"
    )
    assert recurring["body"]["runtime_config"]["parameters"] == {**expected, "seed": 11}
    assert recurring["body"]["service_account"] == "checkout-recs-pipeline"
