"""Pipeline steps log JSON lines: every compiled component runs kfp's executor behind the logging
setup (``components._base``), and a component run by kfp.local writes JSON with the bundle version."""

import json  # no `from __future__ import annotations`: kfp reads the component's annotations as types

import pytest
import yaml

from components._base import KFP_EXECUTOR, LOGGED_EXECUTOR, component
from kfp_pipelines.registry import PIPELINES


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_compiled_component_configures_structured_logs(name: str) -> None:
    spec = next(
        yaml.safe_load_all(PIPELINES[name].compiled_path.read_text())
    )  # then the platform spec
    for exec_name, ex in spec["deploymentSpec"]["executors"].items():
        script = " ".join(ex["container"]["command"])
        assert LOGGED_EXECUTOR in script and KFP_EXECUTOR not in script, exec_name


@component
def _hello_op(x: str) -> str:
    import logging

    logging.getLogger("components.hello").info("hello %s", x, extra={"step": "test"})
    return x


def test_a_step_run_by_kfp_local_logs_json(tmp_path, monkeypatch, capsys) -> None:
    from kfp import local

    monkeypatch.setenv("CHECKOUT_RECS_BUNDLE_VERSION", "idx-7")
    monkeypatch.delenv("CHECKOUT_RECS_LOG_FORMAT", raising=False)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
    )
    assert _hello_op(x="world").output == "world"
    lines = [
        json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip().startswith('{"ts"')
    ]
    mine = [x for x in lines if x["logger"] == "components.hello"]
    assert mine and mine[0]["message"] == "hello world" and mine[0]["step"] == "test"
    assert all(x["bundle_version"] == "idx-7" and x["request_id"] is None for x in lines)
    assert any(x["logger"] == "root" for x in lines)  # kfp's executor lines too
