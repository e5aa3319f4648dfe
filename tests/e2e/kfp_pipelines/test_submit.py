"""``pipeline submit`` against a fake Kubeflow Pipelines API server on loopback."""

from __future__ import annotations

import pytest
import yaml

from kfp_pipelines.registry import get
from kfp_pipelines.submit import submit
from tests.fixtures_ops_servers import fake_kfp  # noqa: F401

pytestmark = pytest.mark.e2e


def test_one_run_carries_the_compiled_spec_and_parameters(fake_kfp):  # noqa: F811
    host, requests = fake_kfp
    result = submit("training", host, params={"source": "s3://raw/logs", "seed": 3}, token="t0k",
                    check_stale=False)
    assert result.kind == "run" and result.id == "run-1" and result.experiment_id == "exp-1"
    run = next(r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/runs")
    compiled = yaml.safe_load(get("training").compiled_path.read_text())
    assert run["body"]["pipeline_spec"]["pipelineInfo"]["name"] == compiled["pipelineInfo"]["name"]
    assert run["body"]["runtime_config"]["parameters"] == {"source": "s3://raw/logs", "seed": 3}
    assert run["body"]["experiment_id"] == "exp-1"
    assert run["body"]["service_account"] == "checkout-recs-pipeline"
    assert all(r["auth"] == "Bearer t0k" for r in requests)


def test_recurring_run_uses_cron_and_reuses_the_experiment(fake_kfp):  # noqa: F811
    host, requests = fake_kfp
    submit("monitoring", host, schedule="default", check_stale=False)
    result = submit("index_refresh", host, schedule="0 5 * * * *", check_stale=False)
    assert result.kind == "recurring_run" and result.schedule == "0 5 * * * *"
    created = [r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/recurringruns"]
    assert [c["body"]["trigger"]["cron_schedule"]["cron"] for c in created] == [get("monitoring").schedule,
                                                                                "0 5 * * * *"]
    assert all(str(c["body"]["max_concurrency"]) == "1" for c in created)
    assert all(c["body"]["no_catchup"] is True and c["body"]["mode"] == "ENABLE" for c in created)
    assert len([r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/experiments"]) == 1


def test_unknown_pipeline_is_refused_before_any_request(fake_kfp):  # noqa: F811
    host, requests = fake_kfp
    with pytest.raises(KeyError, match="unknown pipeline"):
        submit("nope", host)
    assert requests == []
