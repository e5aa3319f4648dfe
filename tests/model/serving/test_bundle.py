"""The request path on the models engineer's real demo bundle (ANN candidates, trained ranker)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from checkout_recs import contract
from checkout_recs.serving.bundle import GeneratorCandidates, ServingBundle
from checkout_recs.serving.inventory import MemoryInventoryStore
from checkout_recs.serving.recommender import Recommender, TableUserFeatures

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from fixtures_models import make_demo_bundle

    root = tmp_path_factory.mktemp("demo")
    bundle = make_demo_bundle(root)
    users = pd.read_parquet(next(root.rglob("features/user.parquet")))
    return ServingBundle.load(bundle), users


def test_ranker_answers_six_with_ann_candidates_and_never_a_sold_item(demo):
    from checkout_recs.models.ranker import RankerModel

    bundle, users = demo
    assert isinstance(bundle.candidates, GeneratorCandidates)
    inv = MemoryInventoryStore()
    rec = Recommender(bundle, TableUserFeatures(users), inv)
    ranker = RankerModel.load(bundle.model_dir)
    region = bundle.catalog.regions[0]
    basket = bundle.catalog.listing_id[:2].tolist()
    seen_sources: set[str] = set()
    for uid in users["user_id"].head(8).tolist():
        d = rec.recommend(
            contract.PostCheckoutRequest(user_id=uid, purchased_item_ids=basket, region=region),
            ranker.predict,
        )
        ids = [i.listing_id for i in d.response.items]
        assert d.response.policy == "ranker" and len(set(ids)) == 6 and not set(ids) & set(basket)
        seen_sources |= set(d.prepared.cand_sources.tolist())
        for lid in ids[:2]:
            inv.mark(lid, "sold")
        sold = set(inv._state)
        nxt = rec.recommend(
            contract.PostCheckoutRequest(user_id=uid, purchased_item_ids=basket, region=region),
            ranker.predict,
        )
        assert not sold & {i.listing_id for i in nxt.response.items}
    assert "ann" in seen_sources
    fast = d.prepared.matrix
    ref = bundle.ranker_input_reference(
        d.prepared.request, d.prepared.user, d.prepared.cand_rows, d.prepared.basket_rows
    )
    np.testing.assert_array_equal(fast, ref)
