"""The transformer's overlap of scoring with the inventory lookup, when the inventory answers at once
(memory, replica): the scorer still gets the unfiltered matrix, the answer is the ranker's, and
nothing sold is shown; every call stamps its arrival and deadline for the replica's read fence."""

from __future__ import annotations

import asyncio
import time

import pytest

from checkout_recs.models.ranker import RankerModel
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.inventory import MemoryInventoryStore
from checkout_recs.serving.inventory_fence import current_window
from checkout_recs.serving.recommender import Recommender, TableUserFeatures
from inference.deadline import RequestClock, reset_clock, set_clock
from inference.transformer import CheckoutTransformer
from tests.fixtures_serving import make_serving_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ServingBundle:
    return ServingBundle.load(
        make_serving_bundle(tmp_path_factory.mktemp("b") / "bundle", n_listings=1500)
    )


def test_instant_inventory_with_sold_candidates_keeps_the_ranker(bundle):
    inv = MemoryInventoryStore()
    rec = Recommender(bundle, TableUserFeatures(bundle.users), inv)
    t = CheckoutTransformer(rec, None, RankerModel.load(bundle.model_dir).predict)
    body = {"instances": [{"user_id": 3, "purchased_item_ids": [1000, 1003], "region": "north"}]}

    async def answer() -> dict:
        return (await t.postprocess(await t.predict(await t.preprocess(body))))["predictions"][0]

    first = asyncio.run(answer())
    shown = [i["listing_id"] for i in first["items"]]
    for lid in shown:
        inv.mark(lid, "sold")
    again = asyncio.run(answer())
    assert first["policy"] == again["policy"] == "ranker" and again["fallback_reason"] is None
    assert not set(shown) & {i["listing_id"] for i in again["items"]}


class WindowSpy(MemoryInventoryStore):
    """A memory store that records the fence window each lookup saw."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list = []

    async def unavailable_async(self, listing_ids):  # noqa: ANN001, ANN201
        self.windows.append(current_window())
        return self.unavailable(listing_ids)


@pytest.mark.parametrize("overload", ["refuse", "off"])
def test_every_call_stamps_its_arrival_and_deadline_for_the_inventory_fence(bundle, overload):
    inv = WindowSpy()
    rec = Recommender(bundle, TableUserFeatures(bundle.users), inv)
    t = CheckoutTransformer(rec, None, RankerModel.load(bundle.model_dir).predict)
    t.configure_overload(overload, 1000.0, 4, 50.0, 20.0)
    body = {"instances": [{"user_id": 3, "purchased_item_ids": [1000, 1003], "region": "north"}]}
    arrived = time.perf_counter() - 0.005

    async def call() -> dict:
        token = set_clock(RequestClock(arrived, client_budget_s=0.3))
        try:
            return (await t(body))[0]["predictions"][0]
        finally:
            reset_clock(token)

    assert len(asyncio.run(call())["items"]) == 6
    (win,) = inv.windows
    assert win.arrived == arrived  # the route's stamp, not when the lookup ran
    assert win.deadline == pytest.approx(arrived + 0.3 - 0.02)  # the client's budget less reserve
    assert current_window() is None  # nothing left behind in the caller's context
