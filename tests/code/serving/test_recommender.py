"""Request-path core: ranker input, transformer stages in-process, codec, decision log, switches."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from checkout_recs import contract
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.decisions import DecisionLog, decision_record, find_decision
from checkout_recs.serving.inventory import (
    InventoryStale,
    InventoryUnavailable,
    MemoryInventoryStore,
    RedisInventoryStore,
)
from checkout_recs.serving.recommender import (
    InventoryUnproven,
    Recommender,
    TableUserFeatures,
    TooFewInStock,
)
from checkout_recs.serving.switches import Switches
from inference import codec
from inference.predictor_client import PredictorClient
from inference.transformer import CheckoutTransformer
from tests.fixtures_serving import make_serving_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ServingBundle:
    return ServingBundle.load(
        make_serving_bundle(tmp_path_factory.mktemp("b") / "bundle", n_listings=1500)
    )


def _req(**kw) -> contract.PostCheckoutRequest:
    base = {"user_id": 3, "purchased_item_ids": [1000, 1003], "region": "north", "device": "ios"}
    return contract.PostCheckoutRequest(**{**base, **kw})


def test_fast_ranker_input_equals_ranker_matrix_on_the_full_frame(bundle):
    rec = Recommender(bundle, TableUserFeatures(bundle.users))
    for uid, dev in ((3, "ios"), (7, "web"), (11, "android")):
        p = asyncio.run(rec.prepare(_req(user_id=uid, device=dev)))
        ref = bundle.ranker_input_reference(p.request, p.user, p.cand_rows, p.basket_rows)
        assert p.matrix.shape == ref.shape and p.matrix.shape[0] > 6
        np.testing.assert_array_equal(p.matrix, ref)


def test_gauges_report_the_exploration_budget_and_new_seller_share(bundle):
    rec = Recommender(bundle, TableUserFeatures(bundle.users))
    for uid in (3, 7, 11):
        rec.recommend(
            _req(user_id=uid, timestamp="2026-11-22T12:00:00Z"),
            lambda m: (np.full(len(m), 0.1), np.full(len(m), 0.2)),
        )
    g = rec.gauges()
    pol = rec.policy
    assert g.exploration_budget == pol.explorer.ledger.cap(pol.cfg.exploration) > 0
    assert g.new_seller_share == pol.exposure.new_share()
    assert 0.0 <= g.new_seller_share <= 1.0


def _transformer(bundle, inventory=None, predictor_url="http://127.0.0.1:1", deadline_ms=200.0):
    rec = Recommender(bundle, TableUserFeatures(bundle.users), inventory or MemoryInventoryStore())
    return CheckoutTransformer(
        rec, PredictorClient(predictor_url, protocol="rest-json"), deadline_ms=deadline_ms
    )


def _call(t: CheckoutTransformer, payload) -> dict:
    async def go():
        job = await t.preprocess(payload)
        job = await t.predict(job)
        return await t.postprocess(job)

    return asyncio.run(go())


def test_predictor_down_degrades_to_the_fallback_with_six(bundle):
    out = _call(
        _transformer(bundle, deadline_ms=5000), {"instances": [_req().model_dump(mode="json")]}
    )
    pred = out["predictions"][0]
    assert pred["policy"] == "fallback" and pred["fallback_reason"] == "predictor_error"
    assert len({i["listing_id"] for i in pred["items"]}) == 6


def test_redis_down_degrades_to_inventory_unavailable(bundle):
    dead = RedisInventoryStore("redis://127.0.0.1:1/0", prefix="x", timeout_s=0.05)
    t = _transformer(bundle, inventory=dead)
    t.scorer = lambda x: (np.full(len(x), 0.1), np.full(len(x), 0.2))
    pred = _call(t, {"instances": [_req().model_dump(mode="json")]})["predictions"][0]
    assert pred["fallback_reason"] == "inventory_unavailable" and len(pred["items"]) == 6


def test_in_process_scorer_answers_with_the_ranker_and_sold_items_never_appear(bundle):
    inv = MemoryInventoryStore()
    t = _transformer(bundle, inventory=inv)
    from checkout_recs.models.ranker import RankerModel

    t.scorer = RankerModel.load(bundle.model_dir).predict
    first = _call(t, {"instances": [_req().model_dump(mode="json")]})["predictions"][0]
    assert first["policy"] == "ranker"
    gone = [i["listing_id"] for i in first["items"]]
    for lid in gone:
        inv.mark(lid, "sold")
    again = _call(t, {"instances": [_req().model_dump(mode="json")]})["predictions"][0]
    assert not set(gone) & {i["listing_id"] for i in again["items"]}


def test_every_stage_reports_wall_and_cpu_ms(bundle):
    from checkout_recs.models.ranker import RankerModel

    rec = Recommender(bundle, TableUserFeatures(bundle.users))
    p = asyncio.run(rec.prepare(_req()))
    assert p.matrix is not None and bundle.model_dir is not None
    d = rec.decide(p, RankerModel.load(bundle.model_dir).predict(p.matrix))
    stages = {"features", "retrieval", "inventory", "rank_input", "policy"}
    assert stages <= set(d.prepared.timings) and stages <= set(d.prepared.cpu_ms)
    assert all(v >= 0 for v in d.prepared.cpu_ms.values())
    # CPU of this thread cannot exceed the wall time of the same stage (plus clock granularity)
    assert all(d.prepared.cpu_ms[k] <= d.prepared.timings[k] + 1.0 for k in stages)


def test_v2_parse_reads_tensors_and_refuses_bad_ones():
    def req(*inputs: InferInput) -> InferRequest:
        return InferRequest(model_name="recommender", infer_inputs=list(inputs))

    uid = InferInput("user_id", [1], "INT64", [5])
    items = InferInput("purchased_item_ids", [2], "INT64", [10, 11])
    region = InferInput("region", [1], "BYTES", ["north"])
    ok = codec.parse_v2(req(uid, items, region))
    assert ok.user_id == 5 and ok.purchased_item_ids == [10, 11] and ok.region == "north"
    with pytest.raises(InvalidInput, match="required"):
        codec.parse_v2(req(items, region))
    with pytest.raises(InvalidInput, match="must be INT64"):
        codec.parse_v2(req(InferInput("user_id", [1], "FP32", [1.0]), region))
    with pytest.raises(InvalidInput, match="unexpected inputs"):
        codec.parse_v2(req(uid, region, InferInput("age", [1], "INT64", [3])))


@settings(max_examples=200, deadline=None)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "instances",
                        "user_id",
                        "region",
                        "purchased_item_ids",
                        "device",
                        "timestamp",
                        "request_id",
                        "x",
                    ]
                ),
                c,
                max_size=5,
            )
        ),
        max_leaves=15,
    )
)
def test_v1_parse_accepts_or_refuses_with_invalid_input_only(payload):
    try:
        reqs = codec.parse_v1(payload)
    except InvalidInput as exc:
        assert str(exc)
        return
    assert 1 <= len(reqs) <= codec.MAX_INSTANCES
    assert all(isinstance(r, contract.PostCheckoutRequest) for r in reqs)


def test_decision_log_writes_off_path_and_explain_finds_it(bundle, tmp_path):
    rec = Recommender(bundle, TableUserFeatures(bundle.users))
    log = DecisionLog(tmp_path / "store", rotate_rows=3, rotate_s=60)
    ids = []
    for k in range(7):
        d = rec.recommend(
            _req(request_id=f"req-{k}"), lambda x: (np.full(len(x), 0.1), np.full(len(x), 0.3))
        )
        assert log.submit(decision_record(d))
        ids.append(d.response)
    log.close()
    assert log.written == 7 and log.dropped == 0 and len(log.parts) == 3  # 3 + 3 + 1 on close
    rec5 = find_decision(tmp_path / "store", "req-5")
    assert rec5["item_ids"] == [i.listing_id for i in ids[5].items]
    assert json.loads(rec5["timings_json"])["policy"] >= 0
    assert find_decision(tmp_path / "store", "nope") is None


def test_switches_read_redis_keys_and_keep_last_value_when_redis_is_down():
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/11")
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip("Redis not reachable")
    key = "test_serving_core:drift_flag"

    async def flip() -> tuple:
        sw = Switches("redis://127.0.0.1:6379/11", ttl_s=0.0, drift_key=key, kill_key=key + "_kill")
        before = (await sw.state()).drift_flag
        r.set(key, json.dumps({"who": "t", "why": "test", "when": "now"}))
        return before, await sw.state()

    try:
        before, s = asyncio.run(flip())
        assert not before
        assert s.drift_flag and s.detail["drift_flag"]["why"] == "test"
    finally:
        r.delete(key)
    down = Switches("redis://127.0.0.1:1/0", ttl_s=0.0)
    down.set_local(kill_switch=True)
    s = asyncio.run(down.state())
    assert s.kill_switch and not s.read_ok


def test_fewer_than_six_in_stock_is_refused_never_a_short_list(bundle):
    """Every listing but five sold: ``decide`` raises ``TooFewInStock`` and the transformer refuses
    the call with ``Shed`` (HTTP 503 + Retry-After), not a validation error (a 500)."""
    from inference.deadline import Shed

    inv = MemoryInventoryStore()
    for lid in bundle.catalog.listing_id[5:].tolist():
        inv.mark(int(lid), "sold")
    rec = Recommender(bundle, TableUserFeatures(bundle.users), inventory=inv)
    prep = asyncio.run(rec.prepare(_req()))
    with pytest.raises(TooFewInStock) as err:
        rec.decide(prep, None)
    assert err.value.found < contract.SLATE_SIZE
    t = _transformer(bundle, inventory=inv)
    with pytest.raises(Shed, match="fewer than 6"):
        _call(t, {"instances": [_req().model_dump(mode="json")]})


class _UnprovenInventory(MemoryInventoryStore):
    """A store whose lookups cannot be proven current (``exc``), and whose last known state holds
    ``known_gone`` unavailable."""

    def __init__(self, exc: Exception, known_gone: set[int]) -> None:
        super().__init__()
        self.exc, self.known_gone = exc, known_gone

    async def unavailable_async(self, listing_ids):
        raise self.exc

    def last_known_unavailable(self, listing_ids, keep_at_least=0):
        return np.isin(np.asarray(listing_ids), list(self.known_gone))


@pytest.mark.parametrize(
    "exc", [InventoryStale("replica 3 s behind"), InventoryUnavailable("redis down")]
)
def test_unproven_inventory_answers_known_state_or_is_refused(bundle, exc, monkeypatch):
    """``unproven="known"``: the fallback from the last known state, with the store's reason;
    ``"refuse"``: ``InventoryUnproven`` from ``settle_inventory``, and the transformer sheds the
    whole call (503 + Retry-After) without scoring, deciding or counting exposure."""
    from prometheus_client import REGISTRY

    from inference.deadline import Shed

    gone = {int(x) for x in bundle.catalog.listing_id[:200].tolist()}
    body = {"instances": [_req().model_dump(mode="json"), _req(user_id=7).model_dump(mode="json")]}
    known = _transformer(bundle, inventory=_UnprovenInventory(exc, gone))
    preds = _call(known, body)["predictions"]
    for pred in preds:
        assert pred["policy"] == "fallback" and pred["fallback_reason"] == exc.reason
        assert len({i["listing_id"] for i in pred["items"]}) == 6
        assert not gone & {i["listing_id"] for i in pred["items"]}

    rec = Recommender(
        bundle,
        TableUserFeatures(bundle.users),
        _UnprovenInventory(exc, gone),
        unproven="refuse",
    )
    prep = asyncio.run(rec.prepare(_req(), defer_inventory=True))
    with pytest.raises(InventoryUnproven, match=exc.reason) as err:
        asyncio.run(rec.settle_inventory(prep))
    assert err.value.reason == exc.reason and prep.pending is None
    labels = {"point": "inventory_unproven", "answer": "refused"}
    before = REGISTRY.get_sample_value("checkout_recs_shed_total", labels) or 0.0
    decided: list = []
    monkeypatch.setattr(rec, "decide", lambda *a, **k: decided.append(a))
    t = CheckoutTransformer(rec, PredictorClient("http://127.0.0.1:1", protocol="rest-json"))
    with pytest.raises(Shed, match="cannot be proven"):
        _call(t, body)
    # one call refused, however many instances; nothing decided (no exposure, no decision row)
    assert REGISTRY.get_sample_value("checkout_recs_shed_total", labels) == before + 1
    assert decided == []
    with pytest.raises(ValueError, match="unproven"):
        Recommender(bundle, TableUserFeatures(bundle.users), unproven="maybe")
