"""The transformer's overlap of scoring with the inventory lookup, when the inventory answers at once
(memory, replica): the scorer still gets the unfiltered matrix, the answer is the ranker's, and
nothing sold is shown."""

from __future__ import annotations

import asyncio

import pytest

from checkout_recs.models.ranker import RankerModel
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.inventory import MemoryInventoryStore
from checkout_recs.serving.recommender import Recommender, TableUserFeatures
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
