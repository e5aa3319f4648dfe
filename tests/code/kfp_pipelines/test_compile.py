"""Pipelines: compiled YAML is current, components install nothing, the gate guards the deploy."""

from __future__ import annotations

import pytest
import yaml

from kfp_pipelines.registry import PIPELINES

EXPECTED = {"training", "index_refresh", "monitoring"}


def _compiled(name: str) -> dict:
    """The pipeline spec: the first YAML document (the second is the kubernetes platform spec)."""
    return next(yaml.safe_load_all(PIPELINES[name].compiled_path.read_text()))


def test_every_pipeline_is_registered_and_compiled():
    assert set(PIPELINES) == EXPECTED
    for name, entry in PIPELINES.items():
        assert entry.compiled_path.exists(), name
        assert _compiled(name)["pipelineInfo"]["name"].startswith("checkout-recs-")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_compiled_yaml_is_current(name):
    from kfp_pipelines.compile import stale

    assert stale(name) is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_components_install_nothing_and_use_the_pinned_image(name):
    for exec_name, ex in _compiled(name)["deploymentSpec"]["executors"].items():
        container = ex["container"]
        script = " ".join(container.get("command", []) + container.get("args", []))
        assert "pip install" not in script, exec_name  # use_venv=False would install into our venv
        image = container["image"]
        assert image.rsplit(":", 1)[-1] not in ("", "latest") and ":" in image.rsplit("/", 1)[-1], (
            image
        )


def test_deploy_runs_only_when_the_gate_promotes():
    root = _compiled("training")["root"]["dag"]["tasks"]
    gate = (
        root["condition-1"]
        if "condition-1" in root
        else next(t for t in root.values() if t.get("triggerPolicy"))
    )
    cond = gate["triggerPolicy"]["condition"]
    assert "register-op-Output" in cond and "!= ''" in cond  # the bundle URI is empty when refused
    assert gate["dependentTasks"] == ["register-op"]


def test_training_tasks_have_resources_and_the_side_effect_steps_no_cache():
    spec = _compiled("training")
    for name, ex in spec["deploymentSpec"]["executors"].items():
        res = ex["container"].get("resources", {})
        assert res.get("resourceCpuRequest") and res.get("resourceMemoryRequest"), name
    tasks = spec["root"]["dag"]["tasks"]
    for side_effect in ("materialize-features-op", "merge-models-op", "register-op"):
        assert tasks[side_effect]["cachingOptions"].get("enableCache") in (False, None), side_effect
    assert tasks["ingest-op"]["retryPolicy"]["maxRetryCount"] == 1
    assert tasks["ingest-op"]["cachingOptions"]["enableCache"] is True


def test_monitoring_flag_is_conditional_on_drift():
    text = PIPELINES["monitoring"].compiled_path.read_text()
    assert (
        "pipelinechannel--drift-report-op-Output']\n            != ''" in text
        and "set-drift-flag-op" in text
    )


def test_cli_param_parsing_keeps_json_documents_as_strings():
    from cli.ops import _parse_params

    got = _parse_params(['sim_config_json={"days": 2}', "seed=3", "source=s3://b/p", "flag=true"])
    assert got == {"sim_config_json": '{"days": 2}', "seed": 3, "source": "s3://b/p", "flag": True}
