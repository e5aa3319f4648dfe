"""The serving benchmark's ANN bundle (``benchmarks/serving_bundle_1m.py``) at a small scale.

Fast: the simulator-drawn catalogue carries the contract's listing + seller feature columns, and
the Feast tables written for it conform to the contract. Slow: the whole bundle (demo two-tower,
FAISS index, candidate tables, ranker, requests) loads as a serving bundle whose candidate source
is the models' generator, and requests of its users get six distinct items from the ranker with
ANN candidates among them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def test_scaled_snapshot_has_contract_feature_columns_and_sane_rates():
    from benchmarks import retrieval_scale
    from checkout_recs import contract
    from checkout_recs.simulate.taxonomy import build_taxonomy

    snap = retrieval_scale.scaled_snapshot(3000)
    need = set(contract.field_names(contract.LISTING_FEATURES)) | set(
        contract.field_names(contract.SELLER_FEATURES)
    )
    assert need - {"event_timestamp"} <= set(snap.columns)
    for c in ("ctr_smoothed", "cvr_smoothed"):
        assert snap[c].between(0, 1, inclusive="neither").all()
    # the smoothed CTR orders like the raw one where there is evidence
    busy = snap[snap["views_decayed"] >= 30]
    raw = busy["clicks_decayed"] / busy["views_decayed"]
    assert np.corrcoef(raw, busy["ctr_smoothed"])[0, 1] > 0.8
    tax = build_taxonomy()
    assert (snap["top_category_id"].to_numpy() == tax.top[snap["category_id"].to_numpy()]).all()
    assert (snap["seller_sales_velocity"] >= 0).all()


def test_feature_tables_conform_to_the_contract(tmp_path):
    from benchmarks import retrieval_scale
    from benchmarks.serving_bundle_1m import write_feature_tables
    from checkout_recs import contract
    from tests.fixtures_serving import make_pairs, make_users

    snap = retrieval_scale.scaled_snapshot(500)
    users = make_users(20).assign(recent_listing_ids=[[1, 2]] * 20)
    pairs, _ = make_pairs()
    write_feature_tables(snap, users, pairs, tmp_path)
    for name, schema in (
        ("listing", contract.LISTING_FEATURES),
        ("seller", contract.SELLER_FEATURES),
        ("user", contract.USER_FEATURES),
        ("category_pair", contract.CATEGORY_PAIR_FEATURES),
    ):
        frame = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert list(frame.columns) == contract.field_names(schema), name
        assert frame.notna().all().all(), name
    assert len(pd.read_parquet(tmp_path / "listing.parquet")) == len(snap)
    assert pd.read_parquet(tmp_path / "user.parquet")["recent_listing_ids"].map(list).tolist()[
        0
    ] == [1, 2]


@pytest.mark.slow
def test_ann_bundle_serves_six_from_the_ranker_with_ann_candidates(tmp_path):
    from benchmarks.serving_bundle_1m import build_ann_bundle, bundle_requests
    from checkout_recs import contract
    from checkout_recs.models.ranker import RankerModel
    from checkout_recs.serving.bundle import GeneratorCandidates, ServingBundle
    from checkout_recs.serving.inventory import MemoryInventoryStore
    from checkout_recs.serving.recommender import Recommender, TableUserFeatures

    bundle_dir = build_ann_bundle(tmp_path, 30_000, log=lambda m: None)
    assert build_ann_bundle(tmp_path, 30_000, log=lambda m: None) == bundle_dir  # cached
    bundle = ServingBundle.load(bundle_dir)
    assert isinstance(bundle.candidates, GeneratorCandidates)
    assert len(bundle.catalog.listing_id) == 30_000
    users = pd.read_parquet(bundle_dir / "features" / "user.parquet")
    rec = Recommender(bundle, TableUserFeatures(users), MemoryInventoryStore())
    assert bundle.model_dir is not None
    ranker = RankerModel.load(bundle.model_dir)
    bodies = bundle_requests(bundle_dir)
    assert bodies is not None and len(bodies) == 4000
    known = set(users["user_id"].tolist())
    sources: dict[str, int] = {}
    for body in bodies[:20]:
        inst = body["instances"][0]
        assert inst["user_id"] in known
        d = rec.recommend(contract.PostCheckoutRequest.model_validate(inst), ranker.predict)
        ids = [i.listing_id for i in d.response.items]
        assert d.response.policy == "ranker" and len(set(ids)) == 6
        assert not set(ids) & set(inst["purchased_item_ids"])
        for s in d.prepared.cand_sources.tolist():
            sources[s] = sources.get(s, 0) + 1
    assert sources.get("ann", 0) >= 20 * 100  # the tower's ANN fills most of its quota of 150
    assert sources.get("cf_residual", 0) > 0 and sources.get("complement", 0) > 0
