"""The RawDeployment conversion of the local overlay's InferenceService (``checkout_recs/deploy/raw_pods.py``).

The pods `make stack-up` plays with podman: the storage initializer, the args KServe appends, the
env, volumes, probes and security context copied as written, each pod a valid core ``v1/Pod``;
every field the conversion does not honour refused with its path (planted); the storage
initializer's download run against moto. No podman here (`make stack-smoke` runs the pods).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from checkout_recs.deploy.manifests import build, validate_core
from checkout_recs.deploy.raw_pods import (
    MODEL_DIR,
    PROVISION_VOLUME,
    STORAGE_INITIALIZER,
    STORAGE_INITIALIZER_SCRIPT,
    UnsupportedField,
    for_local_run,
    isvc_pods,
    raw_pods,
)

MANIFESTS = Path(__file__).resolve().parents[3] / "manifests"
IMAGE = "ghcr.io/checkout-recs/transformer:0.1.0"


@pytest.fixture(scope="module")
def local_docs() -> list[dict]:
    """``manifests/overlays/local`` rendered with the pinned kubectl."""
    return build(MANIFESTS / "overlays" / "local")


@pytest.fixture(scope="module")
def isvc(local_docs: list[dict]) -> dict:
    """The local overlay's InferenceService."""
    return next(d for d in local_docs if d["kind"] == "InferenceService")


def _pods(isvc: dict) -> dict[str, dict]:
    return {p["metadata"]["labels"]["component"]: p for p in isvc_pods(isvc, IMAGE)}


def _env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_each_component_becomes_a_valid_pod(local_docs: list[dict]) -> None:
    pods = raw_pods(local_docs, IMAGE)
    assert [p["metadata"]["name"] for p in pods] == [
        "checkout-recs-predictor",
        "checkout-recs-transformer",
    ]
    for pod in pods:
        assert validate_core(pod) == [], pod["metadata"]["name"]
        assert pod["metadata"]["labels"]["serving.kserve.io/inferenceservice"] == "checkout-recs"
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_storage_initializer_downloads_storage_uri_into_the_model_volume(isvc: dict) -> None:
    uri = _env(isvc["spec"]["transformer"]["containers"][0])["STORAGE_URI"]
    for component, pod in _pods(isvc).items():
        (init,) = pod["spec"]["initContainers"]
        assert init["name"] == STORAGE_INITIALIZER and init["image"] == IMAGE
        assert init["command"] == ["python", "-c", STORAGE_INITIALIZER_SCRIPT]
        assert init["args"] == [uri, MODEL_DIR]
        assert init["volumeMounts"] == [{"name": PROVISION_VOLUME, "mountPath": MODEL_DIR}]
        assert _env(init) == {"AWS_ENDPOINT_URL_S3": "http://minio.checkout-recs-local:9000"}, (
            component
        )
        assert init["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": PROVISION_VOLUME, "emptyDir": {}} in pod["spec"]["volumes"]
        main = pod["spec"]["containers"][0]
        assert {"name": PROVISION_VOLUME, "mountPath": MODEL_DIR, "readOnly": True} in main[
            "volumeMounts"
        ]


def test_transformer_gets_kserve_args_and_its_own_fields(isvc: dict) -> None:
    spec = isvc["spec"]["transformer"]
    source, pod = spec["containers"][0], _pods(isvc)["transformer"]
    main = pod["spec"]["containers"][0]
    assert main["args"] == [
        *source["args"],
        "--model_name",
        "checkout-recs",
        "--predictor_host",
        "checkout-recs-predictor.checkout-recs-local",
    ]
    assert main["env"] == source["env"]
    for key in (
        "image",
        "ports",
        "resources",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
        "securityContext",
    ):
        assert main[key] == source[key], key
    assert main["volumeMounts"][:-1] == source["volumeMounts"]
    assert pod["spec"]["securityContext"] == spec["securityContext"]
    assert pod["spec"]["volumes"][:-1] == spec["volumes"]
    assert pod["spec"]["serviceAccountName"] == "checkout-recs-serving"
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_predictor_gets_no_injected_args(isvc: dict) -> None:
    main = _pods(isvc)["predictor"]["spec"]["containers"][0]
    assert main["args"] == isvc["spec"]["predictor"]["containers"][0]["args"]


def _plant(isvc: dict, where: str, value: object) -> dict:
    doc = copy.deepcopy(isvc)
    *path, key = where.split(".")
    node = doc
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[key] = value
    return doc


@pytest.mark.parametrize(
    ("where", "value", "path"),
    [
        (
            "spec.transformer.containers.0.lifecycle",
            {"preStop": {"exec": {"command": ["sleep", "5"]}}},
            "spec.transformer.containers[0].lifecycle",
        ),
        ("spec.predictor.nodeSelector", {"disk": "ssd"}, "spec.predictor.nodeSelector"),
        (
            "spec.transformer.containers.0.env.2.valueFrom",
            {"configMapKeyRef": {"name": "x", "key": "y"}},
            "spec.transformer.containers[0].env[2].valueFrom.configMapKeyRef",
        ),
        (
            "spec.transformer.volumes.0.secret",
            {"secretName": "x"},
            "spec.transformer.volumes[0].secret",
        ),
        (
            "metadata.annotations.serving.kserve.io/autoscalerClass",
            "hpa",
            "metadata.annotations.serving.kserve.io/autoscalerClass",
        ),
        ("spec.explainer", {"containers": []}, "spec.explainer"),
    ],
)
def test_a_field_not_honoured_is_refused_with_its_path(
    isvc: dict, where: str, value: object, path: str
) -> None:
    if where.startswith("metadata.annotations."):
        doc = copy.deepcopy(isvc)
        doc["metadata"]["annotations"][where.removeprefix("metadata.annotations.")] = value
    else:
        doc = _plant(isvc, where, value)
    with pytest.raises(UnsupportedField) as err:
        isvc_pods(doc, IMAGE)
    assert err.value.path == path


def test_a_storage_uri_from_a_secret_is_refused(isvc: dict) -> None:
    doc = copy.deepcopy(isvc)
    doc["spec"]["predictor"]["containers"][0]["env"][0] = {
        "name": "STORAGE_URI",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
    }
    with pytest.raises(UnsupportedField, match="STORAGE_URI must be a literal"):
        isvc_pods(doc, IMAGE)


def test_local_run_adds_only_what_podman_needs(isvc: dict) -> None:
    pod = _pods(isvc)["transformer"]
    local = for_local_run(
        pod, {"10.0.2.2": ["checkout-recs-redis"]}, {8080: 18080}, {"AWS_ACCESS_KEY_ID": "x"}
    )
    spec = local["spec"]
    assert spec["hostAliases"] == [{"ip": "10.0.2.2", "hostnames": ["checkout-recs-redis"]}]
    assert spec["restartPolicy"] == "OnFailure"
    main = spec["containers"][0]
    assert main["ports"] == [
        {"containerPort": 8080, "protocol": "TCP", "hostPort": 18080, "hostIP": "127.0.0.1"}
    ]
    volumes = {v["name"] for v in spec["volumes"]}
    assert volumes == {
        "policy",
        "checkout-recs-transformer-tmp",
        f"checkout-recs-transformer-{PROVISION_VOLUME}",
    }
    for c in [*spec["initContainers"], *spec["containers"]]:
        assert {m["name"] for m in c["volumeMounts"]} <= volumes
        assert c["env"][-1] == {"name": "AWS_ACCESS_KEY_ID", "value": "x"}
    assert main["args"] == pod["spec"]["containers"][0]["args"]
    assert validate_core(local) == []
    assert "hostAliases" not in pod["spec"]  # the converted pod is left as it was


@mock_aws
def test_storage_initializer_script_downloads_every_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bundles")
    for key in ("bundle/v1/bundle.json", "bundle/v1/model/ranker/config.json", "bundle/v2/other"):
        s3.put_object(Bucket="bundles", Key=key, Body=key.encode())
    monkeypatch.setattr(sys, "argv", ["-c", "s3://bundles/bundle/v1", str(tmp_path)])
    exec(compile(STORAGE_INITIALIZER_SCRIPT, "storage-initializer", "exec"), {})  # noqa: S102
    got = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert got == ["bundle.json", "model/ranker/config.json"]
    monkeypatch.setattr(sys, "argv", ["-c", "s3://bundles/bundle/none", str(tmp_path)])
    with pytest.raises(SystemExit, match="no objects"):
        exec(compile(STORAGE_INITIALIZER_SCRIPT, "storage-initializer", "exec"), {})  # noqa: S102
