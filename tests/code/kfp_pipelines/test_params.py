"""Parameter files (kfp_pipelines/params/) validate and point each environment at the right
backends; the compiled pipelines carry the ConfigMap/Secret env of kfp_pipelines/cluster.py and
the manifests define what they reference."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.app import app
from kfp_pipelines import cluster
from kfp_pipelines.local import local_defaults
from kfp_pipelines.params import (
    ENVIRONMENTS,
    PARAMS_DIR,
    ParamsError,
    load_params,
    read_params_file,
    resolve_params,
)
from kfp_pipelines.registry import PIPELINES, get
from kfp_pipelines.submit import submit
from tests.fixtures_ops import MANIFESTS, find, rendered  # noqa: F401

CLUSTER_ENVS = ("staging", "production")
OVERLAY_NAMESPACE = {"staging": "checkout-recs-staging", "production": "checkout-recs"}


def _file(env: str) -> Path:
    return PARAMS_DIR / f"{env}.yaml"


def _platform(name: str) -> dict:
    """The kubernetes platform spec of a compiled pipeline (its second YAML document)."""
    docs = list(yaml.safe_load_all(get(name).compiled_path.read_text()))
    assert len(docs) == 2, f"{name}: no platform spec compiled"
    return docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_parameter_file_validates_for_every_pipeline(env):
    sections = read_params_file(_file(env))
    assert set(sections) == set(PIPELINES), env


@pytest.mark.parametrize("env", CLUSTER_ENVS)
def test_cluster_files_use_s3_the_mlflow_server_and_feast_production(env):
    train = load_params(_file(env), "training")
    assert train["source"].startswith("s3://") and train["artifact_root"].startswith("s3://")
    assert train["feature_env"] == "production" and train["training_join"] == "feast"
    assert train["mlflow_tracking_uri"].startswith("https://")
    assert train["feast_work_dir"].startswith(
        "/tmp/"
    )  # writable in the pod; registry and store are remote
    assert train["k8s_host"] == "in-cluster" and train["metrics_url"].startswith(
        "http://prometheus"
    )
    assert train["namespace"] == OVERLAY_NAMESPACE[env] and train["feature_freshness_at"] == ""
    overlay = (MANIFESTS / "overlays" / env / "kustomization.yaml").read_text()
    assert f"namespace: {OVERLAY_NAMESPACE[env]}" in overlay
    assert (
        f"{train['artifact_root']}/bundle/" in overlay
    )  # serving reads the bucket training publishes to
    for name in ("index_refresh", "monitoring"):
        assert load_params(_file(env), name)["artifact_root"] == train["artifact_root"], name
    assert load_params(_file(env), "index_refresh")["source"].startswith("s3://")
    values = [
        v
        for name in PIPELINES
        for v in load_params(_file(env), name).values()
        if isinstance(v, str)
    ]
    assert not [v for v in values if "@" in v]  # no credentials in URLs: they come from the Secret


def test_local_file_is_what_a_run_without_it_uses(tmp_path):
    """``--params local.yaml`` changes nothing for training: its values are the pipeline's own
    defaults or ``local_defaults``, and it leaves the paths under OUT to ``local_defaults``."""
    section = load_params(_file("local"), "training")
    signature = {
        p.name: p.default
        for p in inspect.signature(get("training").load().pipeline_func).parameters.values()
    }
    defaults = {**signature, **local_defaults("training", tmp_path)}
    assert {k: defaults[k] for k in section} == section
    assert not {"artifact_root", "mlflow_tracking_uri", "feast_work_dir"} & set(section)


def test_a_bad_file_fails_with_a_message_naming_file_section_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  seed: seven\n  sorce: s3://raw\n  ramp_hold_s: 600\n")
    with pytest.raises(ParamsError) as exc:
        read_params_file(bad)
    msg = str(exc.value)
    assert str(bad) in msg and "training.seed: Input should be a valid integer (got 'seven')" in msg
    assert "training.sorce: unknown parameter (known: artifact_root," in msg
    assert msg.count("training.") == 2  # 600 for a float is fine: one line per real problem
    bad.write_text("trainig:\n  seed: 3\n")
    with pytest.raises(
        ParamsError, match=r"unknown pipeline section\(s\) \['trainig'\]; known: index_refresh"
    ):
        read_params_file(bad)
    bad.write_text("monitoring:\n  set_flag: 'yes'\n")
    with pytest.raises(ParamsError, match="monitoring.set_flag: Input should be a valid boolean"):
        read_params_file(bad)
    bad.write_text("monitoring:\n  mode: table\n")
    with pytest.raises(ParamsError, match="no 'training' section"):
        load_params(bad, "training")
    bad.write_text("- training\n")
    with pytest.raises(ParamsError, match="expected a mapping of pipeline name"):
        read_params_file(bad)


def test_explicit_overrides_win_and_are_validated_too():
    got = resolve_params("training", _file("production"), {"seed": 3, "ramp_hold_s": 60})
    assert got["seed"] == 3 and got["ramp_hold_s"] == 60.0 and got["feature_env"] == "production"
    with pytest.raises(
        ParamsError, match=r"production.yaml \+ --param: training.seed: Input should be a valid"
    ):
        resolve_params("training", _file("production"), {"seed": "x"})
    raw = {
        "seed": "x",
        "anything": 1,
    }  # without a file: passed through unchanged (the old behaviour)
    assert resolve_params("training", None, raw) == raw


@pytest.mark.parametrize(
    "command",
    [
        ["run", "training", "--local", "--out", "OUT"],
        ["submit", "training", "--host", "http://127.0.0.1:9"],
    ],
)
def test_cli_refuses_a_bad_params_file_before_doing_anything(command, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  feature_env: 3\n")
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    r = CliRunner().invoke(app, ["pipeline", *args, "--params", str(bad)])
    assert r.exit_code == 2
    assert "training.feature_env: Input should be a valid string (got 3)" in r.output
    assert not (tmp_path / "out").exists()


def test_cli_help_says_explicit_options_override_the_file():
    for command in ("run", "submit"):
        r = CliRunner().invoke(app, ["pipeline", command, "--help"], env={"COLUMNS": "200"})
        assert "--params" in r.output and "override its values" in r.output, command


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_task_of_the_compiled_pipeline_gets_the_configmap_and_secret_env(name):
    spec = next(yaml.safe_load_all(get(name).compiled_path.read_text()))
    platform = _platform(name)
    assert set(platform) == set(spec["deploymentSpec"]["executors"]), name  # every task, one helper
    for executor, cfg in platform.items():
        maps = {
            (m["configMapName"], m["optional"]): {
                k["configMapKey"]: k["envVar"] for k in m["keyToEnv"]
            }
            for m in cfg["configMapAsEnv"]
        }
        secrets = {
            (s["secretName"], s["optional"]): {k["secretKey"]: k["envVar"] for k in s["keyToEnv"]}
            for s in cfg["secretAsEnv"]
        }
        assert maps == {
            (cluster.CONFIG_MAP, False): cluster.CONFIG_MAP_ENV,
            (cluster.CONFIG_MAP, True): cluster.CONFIG_MAP_ENV_OPTIONAL,
        }, executor
        assert secrets == {
            (cluster.SECRET, False): cluster.SECRET_ENV,
            (cluster.SECRET, True): cluster.SECRET_ENV_OPTIONAL,
        }, executor
        assert secrets[(cluster.SECRET, False)]["redis-url"] == "CHECKOUT_RECS_REDIS_URL"
        assert cfg["podMetadata"]["labels"] == cluster.POD_LABELS, executor


def test_the_service_account_is_the_runs_and_may_deploy():
    """KFP 2.17 has no per-task service account: ``submit`` sets it per run; the manifests define
    it and bind it to the deployer Role (the deploy step runs in-cluster as that account)."""
    default = inspect.signature(submit).parameters["service_account"].default
    assert default == "checkout-recs-pipeline"
    accounts = list(yaml.safe_load_all((MANIFESTS / "base" / "serviceaccounts.yaml").read_text()))
    assert default in {a["metadata"]["name"] for a in accounts}
    binding = next(
        d
        for d in yaml.safe_load_all((MANIFESTS / "base" / "rbac.yaml").read_text())
        if d["kind"] == "RoleBinding"
    )
    assert {"kind": "ServiceAccount", "name": default} in binding["subjects"]


def test_manifests_define_what_the_pipelines_reference(rendered):  # noqa: F811
    for target in ("overlays/local", "overlays/staging", "overlays/production"):
        data = find(rendered[target], "ConfigMap", cluster.CONFIG_MAP)["data"]
        assert set(cluster.CONFIG_MAP_ENV) <= set(data), target
        assert set(data) <= set(cluster.CONFIG_MAP_ENV) | set(cluster.CONFIG_MAP_ENV_OPTIONAL), (
            target
        )
        assert all(v for v in data.values()), target  # an empty endpoint would break boto3
    assert (
        "AWS_ENDPOINT_URL_S3"
        in find(rendered["overlays/local"], "ConfigMap", cluster.CONFIG_MAP)["data"]
    )
    assert (
        "AWS_ENDPOINT_URL_S3"
        not in find(rendered["overlays/production"], "ConfigMap", cluster.CONFIG_MAP)["data"]
    )
    external = yaml.safe_load(
        (MANIFESTS / "external-secrets" / "pipeline-secrets.yaml").read_text()
    )
    assert (
        external["kind"] == "ExternalSecret"
        and external["spec"]["target"]["name"] == cluster.SECRET
    )
    keys = {d["secretKey"] for d in external["spec"]["data"]}
    assert (
        set(cluster.SECRET_ENV)
        <= keys
        <= set(cluster.SECRET_ENV) | set(cluster.SECRET_ENV_OPTIONAL)
    )
    assert not [
        d for docs in rendered.values() for d in docs if d["kind"] == "Secret"
    ]  # no values in the repo
