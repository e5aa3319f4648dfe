"""Deadlines and shedding: the admission queue, the request clock, and the transformer's promise
that a shed call computes nothing (no exposure, no exploration, no decision row) while a call
answered by the cheap path is logged like any fallback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from kserve.model import InferenceVerb

from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.inventory import MemoryInventoryStore
from checkout_recs.serving.recommender import Recommender, TableUserFeatures
from inference import metrics
from inference.deadline import (
    Admission,
    LoopLag,
    RequestClock,
    Shed,
    parse_budget_ms,
    reset_clock,
    set_clock,
)
from inference.transformer import CheckoutTransformer
from tests.fixtures_serving import make_serving_bundle


def test_clock_deadline_is_the_tighter_of_server_and_client():
    c = RequestClock(received=10.0, client_budget_s=0.2)
    assert c.deadline(1.0) == pytest.approx(10.2) and c.deadline(0.1) == pytest.approx(10.1)
    assert c.deadline(0.0) == pytest.approx(10.2)
    assert RequestClock(received=10.0).deadline(0.0) == float("inf")


@pytest.mark.parametrize(
    "value,ok",
    [
        ("150", 0.15),
        ("1", 0.001),
        ("60000", 60.0),
        (" 20 ", 0.02),
        ("1e3", 1.0),
        ("0.5", None),
        ("0", None),
        ("-1", None),
        ("abc", None),
        ("", None),
        ("60001", None),
        ("nan", None),
        ("inf", None),
        ("1.2.3", None),
        ("\u0661\u0662", None),
        ("1.17e-38", None),
    ],
)
def test_client_budget_header_is_strict(value, ok):
    if ok is None:
        with pytest.raises(ValueError, match="x-request-deadline-ms"):
            parse_budget_ms(value)
    else:
        assert parse_budget_ms(value) == pytest.approx(ok)


def test_admission_hands_slots_over_in_arrival_order():
    async def go() -> list[int]:
        adm = Admission(limit=1, initial_s=0.001)
        order: list[int] = []
        far = time.perf_counter() + 10

        async def one(i: int) -> None:
            assert await adm.enter(far)
            order.append(i)
            await asyncio.sleep(0.005)
            adm.leave()

        await asyncio.gather(*(one(i) for i in range(5)))
        assert adm.inflight == 0 and adm.waiting == 0
        return order

    assert asyncio.run(go()) == [0, 1, 2, 3, 4]


def test_admission_refuses_at_once_what_cannot_start_in_time_and_times_out_the_rest():
    async def go() -> None:
        adm = Admission(limit=1, initial_s=0.05)
        assert await adm.enter(time.perf_counter() + 10)  # holds the only slot
        t0 = time.perf_counter()
        assert not await adm.enter(
            t0 + 0.06
        )  # predicted wait 0.05 + service 0.1 > 0.06: no queueing
        assert time.perf_counter() - t0 < 0.01
        t0 = time.perf_counter()
        assert not await adm.enter(t0 + 0.3)  # queues, then its latest start (0.3 - 0.1) passes
        assert 0.15 < time.perf_counter() - t0 < 0.5
        assert adm.waiting == 0 and adm.inflight == 1
        adm.leave()
        assert adm.inflight == 0

    asyncio.run(go())


def test_a_cancelled_waiter_leaks_no_slot():
    async def go() -> None:
        adm = Admission(limit=1, initial_s=0.001)
        assert await adm.enter(time.perf_counter() + 10)
        waiter = asyncio.ensure_future(adm.enter(time.perf_counter() + 10))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        adm.leave()
        assert adm.inflight == 0 and adm.waiting == 0
        assert await adm.enter(time.perf_counter() + 10) and adm.inflight == 1

    asyncio.run(go())


def test_service_estimate_follows_observations():
    adm = Admission(limit=2, initial_s=0.02)
    for _ in range(200):
        adm.observe(0.004)
    assert adm.expected_s() == pytest.approx(0.004, abs=0.001)


class _Log:
    """DecisionLog stand-in: counts what the transformer submits."""

    dropped = 0

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def submit(self, row: Any) -> None:
        self.rows.append(row)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ServingBundle:
    return ServingBundle.load(
        make_serving_bundle(tmp_path_factory.mktemp("b") / "bundle", n_listings=1500)
    )


def _transformer(
    bundle: ServingBundle, overload: str, scorer_sleep_s: float = 0.0
) -> tuple[CheckoutTransformer, _Log]:
    def scorer(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(scorer_sleep_s)
        return np.full(len(m), 0.1), np.full(len(m), 0.2)

    rec = Recommender(bundle, TableUserFeatures(bundle.users), MemoryInventoryStore())
    log = _Log()
    t = CheckoutTransformer(rec, None, scorer, log)  # type: ignore[arg-type]
    t.configure_overload(overload, request_deadline_ms=1000, max_inflight=1)
    return t, log


def _state(t: CheckoutTransformer, log: _Log) -> tuple[int, int, float, int]:
    """(exposure slots recorded, ledger requests, ledger spend, decision rows)."""
    pol = t.recommender.policy
    return (
        pol.exposure.slots,
        pol.explorer.ledger.requests,
        pol.explorer.ledger.spent,
        len(log.rows),
    )


def _shed(point: str, answer: str) -> float:
    return metrics.SHED.labels(point=point, answer=answer)._value.get()


BODY = {"instances": [{"user_id": 3, "purchased_item_ids": [1000], "region": "north"}]}


async def _ask(t: CheckoutTransformer, clock: RequestClock) -> Any:
    token = set_clock(clock)
    try:
        response, _ = await t(BODY, headers={}, verb=InferenceVerb.PREDICT)
        return response
    finally:
        reset_clock(token)


def test_a_call_past_its_deadline_is_refused_and_counts_nowhere(bundle):
    t, log = _transformer(bundle, "refuse")
    asyncio.run(_ask(t, RequestClock(time.perf_counter())))  # one answer: state moves
    before, shed0 = _state(t, log), _shed("admission", "refused")
    t.admission.inflight = 1  # the stages are full
    with pytest.raises(Shed):
        asyncio.run(_ask(t, RequestClock(time.perf_counter(), client_budget_s=0.05)))
    t.admission.inflight = 0
    assert _state(t, log) == before and _shed("admission", "refused") == shed0 + 1


def test_a_deadline_passing_in_the_stages_computes_no_answer(bundle):
    t, log = _transformer(bundle, "refuse", scorer_sleep_s=0.08)
    # the 80 ms scorer outlives the 50 ms budget: the call is refused at the check before the policy,
    # or earlier when a loaded host already spent the budget (either way, nothing is computed)
    points = ("admission", "before_predict", "before_decide")
    before, shed0 = _state(t, log), sum(_shed(p, "refused") for p in points)
    with pytest.raises(Shed):
        asyncio.run(_ask(t, RequestClock(time.perf_counter(), client_budget_s=0.05)))
    assert _state(t, log) == before and sum(_shed(p, "refused") for p in points) == shed0 + 1
    assert t.admission.inflight == 0  # the slot came back


def test_a_client_gone_before_decide_computes_no_answer(bundle):
    t, log = _transformer(bundle, "fallback")
    before, shed0 = _state(t, log), _shed("disconnected", "refused")
    with pytest.raises(Shed, match="left"):
        asyncio.run(_ask(t, RequestClock(time.perf_counter(), gone=lambda: True)))
    assert _state(t, log) == before and _shed("disconnected", "refused") == shed0 + 1


def test_over_capacity_the_cheap_path_answers_six_and_is_logged_like_any_fallback(bundle):
    t, log = _transformer(bundle, "fallback")
    slots, requests, spent, rows = _state(t, log)
    shed0 = _shed("admission", "fallback")
    t.admission.inflight = 1  # the stages are full; the call cannot wait 1 s minus its service time
    t.admission.observe(5.0)
    out = asyncio.run(_ask(t, RequestClock(time.perf_counter(), client_budget_s=0.5)))
    t.admission.inflight = 0
    pred = out["predictions"][0]
    assert pred["policy"] == "fallback" and pred["fallback_reason"] == "overload"
    assert len({i["listing_id"] for i in pred["items"]}) == 6
    assert _shed("admission", "fallback") == shed0 + 1
    assert len(log.rows) == rows + 1 and log.rows[-1]["fallback_reason"] == "overload"
    assert t.recommender.policy.exposure.slots == slots + 6  # shown: counted as exposure
    assert t.recommender.policy.explorer.ledger.spent == spent  # the fallback never explores
    assert t._cheap_inflight == 0


def test_without_shedding_every_call_is_computed(bundle):
    t, log = _transformer(bundle, "off", scorer_sleep_s=0.03)
    out = asyncio.run(_ask(t, RequestClock(time.perf_counter() - 5, client_budget_s=0.001)))
    assert out["predictions"][0]["policy"] == "ranker" and len(log.rows) == 1


def test_loop_lag_keeps_the_recent_worst_and_decays():
    lag = LoopLag(period_s=0.01, decay=0.5)
    lag.observe(0.04)
    lag.observe(0.0)
    assert lag.recent_s == pytest.approx(0.02)
    lag.observe(0.05)
    assert lag.recent_s == pytest.approx(0.05)


def test_loop_lag_measures_a_blocked_loop():
    async def go() -> float:
        lag = LoopLag(period_s=0.005)
        task = asyncio.ensure_future(lag.run())
        await asyncio.sleep(0.02)
        time.sleep(0.05)  # the loop is blocked: the next tick is late
        await asyncio.sleep(0.02)
        task.cancel()
        return lag.recent_s

    assert asyncio.run(go()) > 0.02


def test_a_call_arriving_past_its_deadline_is_refused_before_any_stage(bundle):
    t, log = _transformer(bundle, "fallback")
    before, shed0 = _state(t, log), _shed("admission", "refused")
    with pytest.raises(Shed, match="had passed"):
        asyncio.run(_ask(t, RequestClock(time.perf_counter() - 2.0, client_budget_s=1.0)))
    assert _state(t, log) == before and _shed("admission", "refused") == shed0 + 1
    assert t.admission.inflight == 0 and t._cheap_inflight == 0
