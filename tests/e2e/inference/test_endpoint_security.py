"""Both servers on 127.0.0.1, configured as a pod is: the model repository is closed (REST 404,
gRPC UNIMPLEMENTED) and the model keeps serving; the transformer answers under the
InferenceService's name; health routes mean the model is ready; the policy ConfigMap folder is
re-read on change (a bad document keeps the last good config and says so on /metrics; its
kill_switch acts without Redis)."""

from __future__ import annotations

import json
import time

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from checkout_recs.serving.policy_source import KILL_SWITCH_FILE, POLICY_FILE
from inference.launch import running_servers
from inference.predictor import PREDICTOR_NAME
from inference.transformer import TRANSFORMER_NAME
from tests.fixtures_policy import publish_configmap
from tests.fixtures_serving import make_serving_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BODY = {"instances": [{"user_id": 3, "purchased_item_ids": [1000, 1001], "region": "north"}]}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure")
    bundle = make_serving_bundle(root / "bundle")
    policy = root / "policy"
    publish_configmap(
        policy, {POLICY_FILE: json.dumps({"max_per_seller": 1}), KILL_SWITCH_FILE: "false"}, 1
    )
    targs = [
        "--switches",
        "none",
        "--policy_dir",
        str(policy),
        "--policy_poll_s",
        "0.2",
        "--deadline_ms",
        "2000",
        "--model_name",
        TRANSFORMER_NAME,
        "--workers",
        "1",
    ]
    with running_servers(bundle, transformer_args=targs, log_dir=root / "logs") as s:
        yield {"s": s, "policy": policy}


def _predict(env) -> dict:  # noqa: ANN001
    r = httpx.post(env["s"].v1_url, json=BODY, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]


def _metric(env, name: str) -> list[str]:  # noqa: ANN001
    text = httpx.get(f"{env['s'].transformer_url}/metrics", timeout=5).text
    return [line for line in text.splitlines() if line.startswith(name)]


def _wait(cond, timeout_s: float = 10.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("verb", ["load", "unload"])
def test_model_repository_is_closed_on_both_servers_and_the_model_still_serves(env, verb):
    s = env["s"]
    for base, name in ((s.transformer_url, TRANSFORMER_NAME), (s.predictor_url, PREDICTOR_NAME)):
        r = httpx.post(f"{base}/v2/repository/models/{name}/{verb}", timeout=5)
        assert r.status_code == 404, (base, r.status_code, r.text)
        assert httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200
        assert httpx.get(f"{base}/v2/health/live", timeout=5).status_code == 200
        assert httpx.get(f"{base}/v2/models/{name}/ready", timeout=5).status_code == 200
    assert len({i["listing_id"] for i in _predict(env)["items"]}) == 6
    for target in (s.transformer_grpc, s.predictor_grpc):
        with grpc.insecure_channel(target) as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            call = stub.RepositoryModelUnload if verb == "unload" else stub.RepositoryModelLoad
            req = (
                pb.RepositoryModelUnloadRequest
                if verb == "unload"
                else pb.RepositoryModelLoadRequest
            )(model_name=TRANSFORMER_NAME)
            with pytest.raises(grpc.RpcError) as exc:
                call(req, timeout=5)
            assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_transformer_answers_under_the_inferenceservice_name_only(env):
    s = env["s"]
    assert (
        s.v1_url.endswith(f"/v1/models/{TRANSFORMER_NAME}:predict")
        and TRANSFORMER_NAME == "checkout-recs"
    )
    r = httpx.post(f"{s.transformer_url}/v1/models/recommender:predict", json=BODY, timeout=5)
    assert r.status_code == 404


def test_policy_configmap_changes_apply_and_a_bad_one_is_refused(env):
    assert _wait(
        lambda: (
            _metric(env, "checkout_recs_policy_config_valid")
            == ["checkout_recs_policy_config_valid 1.0"]
        )
    )
    (before,) = _metric(env, "checkout_recs_policy_config_info")
    publish_configmap(
        env["policy"],
        {POLICY_FILE: json.dumps({"max_per_seller": 2}), KILL_SWITCH_FILE: "false"},
        2,
    )
    assert _wait(lambda: _metric(env, "checkout_recs_policy_config_info") != [before])
    (good,) = _metric(env, "checkout_recs_policy_config_info")
    publish_configmap(
        env["policy"], {POLICY_FILE: '{"max_per_seller": 0}', KILL_SWITCH_FILE: "false"}, 3
    )
    assert _wait(
        lambda: (
            _metric(env, "checkout_recs_policy_config_valid")
            == ["checkout_recs_policy_config_valid 0.0"]
        )
    )
    assert _metric(env, "checkout_recs_policy_config_info") == [
        good
    ]  # the last good config still serves
    assert _predict(env)["policy"] == "ranker"
    log = (env["s"].log_dir / "transformer.log").read_text()
    assert "refused" in log and "max_per_seller" in log
    publish_configmap(
        env["policy"], {POLICY_FILE: json.dumps({"max_per_seller": 2}), KILL_SWITCH_FILE: "true"}, 4
    )
    assert _wait(lambda: _predict(env)["fallback_reason"] == "kill_switch")
    publish_configmap(
        env["policy"],
        {POLICY_FILE: json.dumps({"max_per_seller": 2}), KILL_SWITCH_FILE: "false"},
        5,
    )
    assert _wait(lambda: _predict(env)["policy"] == "ranker")
