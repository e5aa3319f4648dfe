"""End to end over real HTTP and gRPC with both KServe servers running on 127.0.0.1.

Redis isolation: inventory keys under a private prefix in DB 11, kill switch and drift flag under
private key names in DB 11; all deleted at teardown.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import httpx
import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkout_recs.serving.decisions import find_decision
from checkout_recs.serving.inventory import RedisInventoryStore
from inference.launch import running_servers
from inference.predictor import bundle_version
from inference.transformer import TRANSFORMER_NAME
from tests.fixtures_serving import make_serving_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/11"
KNOWN_USER = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip("Redis not reachable")
    tag = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("serving")
    bundle = make_serving_bundle(root / "bundle")
    (root / "policy.json").write_text(json.dumps({"switch_cache_ttl_s": 0.0}))
    keys = {"kill": f"test_serving_{tag}:kill_switch", "drift": f"test_serving_{tag}:drift_flag"}
    targs = [
        "--inventory",
        "redis",
        "--redis_url",
        REDIS_URL,
        "--redis_prefix",
        f"test_serving_{tag}",
        "--kill_key",
        keys["kill"],
        "--drift_key",
        keys["drift"],
        "--policy_config",
        str(root / "policy.json"),
        "--deadline_ms",
        "2000",
        "--decision_log",
        str(root / "store"),
        "--decision_log_rotate_s",
        "0.3",
    ]
    inv = RedisInventoryStore(REDIS_URL, prefix=f"test_serving_{tag}", timeout_s=1.0)
    with running_servers(bundle, transformer_args=targs, log_dir=root / "logs") as servers:
        yield {"s": servers, "redis": r, "keys": keys, "inv": inv, "store": root / "store"}
    r.delete(*keys.values())
    inv.clear()


def ask(env, user=KNOWN_USER, items=(1000, 1001), region="north", **extra) -> dict:
    body = {
        "instances": [
            {"user_id": user, "purchased_item_ids": list(items), "region": region, **extra}
        ]
    }
    r = httpx.post(env["s"].v1_url, json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]


def six(pred: dict) -> list[int]:
    ids = [it["listing_id"] for it in pred["items"]]
    assert len(ids) == 6 and len(set(ids)) == 6
    return ids


def test_known_user_gets_six_distinct_ranked_items(env):
    pred = ask(env)
    six(pred)
    assert pred["policy"] == "ranker" and pred["fallback_reason"] is None
    assert all(0 < it["propensity"] <= 1 for it in pred["items"])
    assert all(it["reason"] for it in pred["items"])
    assert not {1000, 1001} & set(six(pred))  # the basket itself is never recommended


def test_sold_or_locked_listing_is_never_returned_from_the_next_request_on(env):
    first = six(ask(env, user=4))
    env["inv"].mark(first[0], "sold")
    env["inv"].mark(first[1], "locked", lock_ttl_s=60)
    for _ in range(3):
        again = six(ask(env, user=4))
        assert first[0] not in again and first[1] not in again


def test_unknown_user_gets_the_fallback_with_six(env):
    pred = ask(env, user=987654)
    six(pred)
    assert pred["policy"] == "fallback" and pred["fallback_reason"] == "unknown_user"


@pytest.mark.parametrize("switch,reason", [("drift", "drift_flag"), ("kill", "kill_switch")])
def test_switch_on_turns_serving_to_the_fallback(env, switch, reason):
    env["redis"].set(env["keys"][switch], json.dumps({"who": "test", "why": "e2e", "when": "now"}))
    try:
        pred = ask(env)
        six(pred)
        assert pred["policy"] == "fallback" and pred["fallback_reason"] == reason
    finally:
        env["redis"].delete(env["keys"][switch])
    assert ask(env)["policy"] == "ranker"


def test_v2_rest_json_answers_tensors(env):
    body = {
        "inputs": [
            {"name": "user_id", "datatype": "INT64", "shape": [1], "data": [KNOWN_USER]},
            {"name": "purchased_item_ids", "datatype": "INT64", "shape": [0], "data": []},
            {"name": "region", "datatype": "BYTES", "shape": [1], "data": ["south"]},
            {"name": "device", "datatype": "BYTES", "shape": [1], "data": ["ios"]},
        ]
    }
    r = httpx.post(env["s"].v2_url, json=body, timeout=10)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["item_ids"]["datatype"] == "INT64" and len(set(out["item_ids"]["data"])) == 6
    assert out["policy"]["data"] == ["ranker"]
    assert len(out["propensities"]["data"]) == 6


def _triton_inputs(mod):
    ins = [
        mod.InferInput("user_id", [1], "INT64"),
        mod.InferInput("purchased_item_ids", [2], "INT64"),
        mod.InferInput("region", [1], "BYTES"),
        mod.InferInput("device", [1], "BYTES"),
    ]
    ins[0].set_data_from_numpy(np.array([KNOWN_USER], np.int64))
    ins[1].set_data_from_numpy(np.array([1000, 1002], np.int64))
    ins[2].set_data_from_numpy(np.array([b"east"], dtype=object))
    ins[3].set_data_from_numpy(np.array([b"web"], dtype=object))
    return ins


def test_tritonclient_http_binary_works_unchanged(env):
    import tritonclient.http as th

    c = th.InferenceServerClient(url=env["s"].transformer_url.removeprefix("http://"))
    res = c.infer(
        TRANSFORMER_NAME,
        _triton_inputs(th),
        outputs=[
            th.InferRequestedOutput(n, binary_data=True)
            for n in ("item_ids", "propensities", "policy")
        ],
    )
    ids = res.as_numpy("item_ids")
    assert ids.dtype == np.int64 and len(set(ids.tolist())) == 6
    assert res.as_numpy("policy")[0] in (b"ranker", "ranker")


_TRITON_GRPC = """
import json, sys
import numpy as np
import tritonclient.grpc as tg
c = tg.InferenceServerClient(url=sys.argv[1])
ins = [tg.InferInput("user_id", [1], "INT64"), tg.InferInput("purchased_item_ids", [2], "INT64"),
       tg.InferInput("region", [1], "BYTES")]
ins[0].set_data_from_numpy(np.array([3], np.int64))
ins[1].set_data_from_numpy(np.array([1000, 1002], np.int64))
ins[2].set_data_from_numpy(np.array([b"east"], dtype=object))
res = c.infer("checkout-recs", ins)
print(json.dumps({"ids": res.as_numpy("item_ids").tolist(), "p": res.as_numpy("propensities").tolist()}))
"""


def test_tritonclient_grpc_works_unchanged(env):
    # tritonclient's and kserve's gRPC protos register the same symbols: a client process of its own
    out = subprocess.run(
        [sys.executable, "-c", _TRITON_GRPC, env["s"].transformer_grpc],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(set(res["ids"])) == 6
    assert all(p > 0 for p in res["p"])


def test_kserve_clients_rest_and_grpc_work_unchanged(env):
    from kserve import (
        InferenceGRPCClient,
        InferenceRESTClient,
        InferInput,
        InferRequest,
        RESTConfig,
    )

    def request() -> InferRequest:
        ins = [
            InferInput("user_id", [1], "INT64"),
            InferInput("purchased_item_ids", [1], "INT64"),
            InferInput("region", [1], "BYTES"),
        ]
        ins[0].set_data_from_numpy(np.array([KNOWN_USER], np.int64), binary_data=False)
        ins[1].set_data_from_numpy(np.array([1000], np.int64), binary_data=False)
        ins[2].set_data_from_numpy(np.array(["west"], dtype=object), binary_data=False)
        return InferRequest(model_name=TRANSFORMER_NAME, infer_inputs=ins)

    async def go():
        rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
        r1 = await rest.infer(env["s"].transformer_url, request(), model_name=TRANSFORMER_NAME)
        await rest.close()
        grpc_c = InferenceGRPCClient(env["s"].transformer_grpc, timeout=10)
        r2 = await grpc_c.infer(request())
        await grpc_c.close()
        return r1, r2

    r1, r2 = asyncio.run(go())
    for res in (r1, r2):
        out = {o.name: o for o in res.outputs}
        assert len(set(out["item_ids"].as_numpy().tolist())) == 6


@pytest.mark.parametrize(
    "body,fragment",
    [
        (b"{not json", "Unrecognized request format"),
        (b"", "Unrecognized request format"),
        (json.dumps({"instances": []}).encode(), "non-empty list"),
        (json.dumps({"instances": [{"user_id": "abc", "region": "north"}]}).encode(), "user_id"),
        (
            json.dumps({"instances": [{"user_id": 1, "region": "north", "typo": 1}]}).encode(),
            "typo",
        ),
        (
            json.dumps(
                {
                    "instances": [
                        {"user_id": 1, "region": "north", "purchased_item_ids": list(range(51))}
                    ]
                }
            ).encode(),
            "purchased_item_ids",
        ),
        (json.dumps([1, 2]).encode(), "JSON object"),
    ],
)
def test_malformed_requests_get_4xx_with_a_reason(env, body, fragment):
    r = httpx.post(
        env["s"].v1_url, content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert r.status_code == 400
    assert fragment in r.json()["error"]


def test_oversized_body_is_refused_with_413(env):
    r = httpx.post(env["s"].v1_url, content=b"x" * 200_000, timeout=10)
    assert r.status_code == 413 and "exceeds" in r.json()["error"]


def test_v2_wrongly_typed_tensor_is_a_400(env):
    body = {
        "inputs": [
            {"name": "user_id", "datatype": "FP32", "shape": [1], "data": [1.5]},
            {"name": "region", "datatype": "BYTES", "shape": [1], "data": ["north"]},
        ]
    }
    r = httpx.post(env["s"].v2_url, json=body, timeout=10)
    assert r.status_code == 400 and "INT64" in r.json()["error"]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
    max_leaves=12,
)
_instance = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.one_of(st.integers(-5, 2**64), st.text(max_size=5), st.none()),
        "purchased_item_ids": st.one_of(
            st.lists(st.integers(-3, 5000), max_size=60), st.text(max_size=3)
        ),
        "region": st.one_of(
            st.sampled_from(["north", "south", "x", "", "NORTH", "a" * 40]), st.integers()
        ),
        "device": st.one_of(st.sampled_from(["web", "ios", "android", "fax"]), st.none()),
        "timestamp": st.one_of(
            st.sampled_from(["2026-11-22T10:00:00Z", "yesterday", "2026-11-22"]), st.integers()
        ),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    payload=st.one_of(
        _json, st.fixed_dictionaries({"instances": st.lists(_instance, min_size=0, max_size=3)})
    )
)
def test_random_requests_never_get_a_5xx(env, payload):
    r = httpx.post(env["s"].v1_url, json=payload, timeout=10)
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        for pred in r.json()["predictions"]:
            six(pred)
    else:
        assert r.status_code in (400, 413) and r.json()["error"]


def test_explain_finds_the_logged_decision(env):
    pred = ask(env, request_id=f"dispute-{uuid.uuid4().hex[:6]}")
    deadline = time.monotonic() + 15
    rec = None
    while rec is None and time.monotonic() < deadline:
        time.sleep(0.3)
        rec = find_decision(env["store"], pred["request_id"])
    assert rec is not None
    assert rec["item_ids"] == six(pred)
    assert rec["propensities"] == [it["propensity"] for it in pred["items"]]
    assert rec["policy"] == pred["policy"] and len(rec["snapshot_ids"]) > 0
    if (
        rec["policy"] == "ranker"
    ):  # the ranker that scored it answered with this bundle's version: a served pair
        assert rec["predictor_version"] == rec["index_version"] and rec["index_version"]


def test_metrics_expose_stage_histograms_and_fallbacks(env):
    ask(env, user=555555)  # a fallback
    text = httpx.get(f"{env['s'].transformer_url}/metrics", timeout=10).text
    for stage in ("features", "retrieval", "inventory", "rank", "policy"):
        assert f'checkout_recs_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'checkout_recs_fallback_total{reason="unknown_user"}' in text
    assert "checkout_recs_new_seller_exposure_share" in text


def test_predictor_hop_protocols_agree(env):
    from inference.predictor_client import PredictorClient

    d = len(
        json.loads(
            (env["s"].log_dir.parent / "bundle" / "model" / "ranker" / "config.json").read_text()
        )["feature_names"]
    )
    x = np.random.default_rng(0).normal(size=(40, d)).astype(np.float32)

    async def score(proto: str):
        c = PredictorClient(env["s"].predictor_url, env["s"].predictor_grpc, protocol=proto)
        try:
            return await c.score_versioned(x, 10.0)
        finally:
            await c.close()

    outs = {p: asyncio.run(score(p)) for p in ("rest-json", "rest-binary", "grpc")}
    for p in ("rest-binary", "grpc"):
        np.testing.assert_allclose(outs[p][0], outs["rest-json"][0], rtol=1e-6)
        np.testing.assert_allclose(outs[p][1], outs["rest-json"][1], rtol=1e-6)
    assert outs["grpc"][0].shape == (40,)
    # every hop says which bundle's ranker answered
    assert {o.bundle_version for o in outs.values()} == {
        bundle_version(env["s"].log_dir.parent / "bundle")
    }


def test_tritonclient_http_binary_against_the_predictor_fast_route(env):
    """The predictor's fast route (``inference.fast_infer``) answers tritonclient's binary request
    as kserve would: binary outputs that decode to the scores of a JSON-tensor request."""
    import tritonclient.http as th

    from inference.predictor_client import PredictorClient

    d = len(
        json.loads(
            (env["s"].log_dir.parent / "bundle" / "model" / "ranker" / "config.json").read_text()
        )["feature_names"]
    )
    x = np.random.default_rng(1).normal(size=(25, d)).astype(np.float32)
    c = th.InferenceServerClient(url=env["s"].predictor_url.removeprefix("http://"))
    inp = th.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    res = c.infer(
        "ranker",
        [inp],
        outputs=[th.InferRequestedOutput(n, binary_data=True) for n in ("p_click", "p_purchase")],
    )
    assert [o["parameters"]["binary_data_size"] for o in res.get_response()["outputs"]] == [
        4 * len(x)
    ] * 2

    async def plain() -> tuple[np.ndarray, np.ndarray]:
        client = PredictorClient(
            env["s"].predictor_url, protocol="rest-json"
        )  # through kserve's own route
        try:
            return await client.score(x, 10.0)
        finally:
            await client.close()

    pc, pp = asyncio.run(plain())
    np.testing.assert_array_equal(res.as_numpy("p_click"), pc)
    np.testing.assert_array_equal(res.as_numpy("p_purchase"), pp)
