"""Behaviour of the candidate sources on a synthetic catalogue: the collaborative-filtering residual,
the complement source's exact in-category search, sold listings, and the fallback without a
user vector."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures_retrieval import brute_force, synthetic_index  # noqa: E402

from checkout_recs.retrieval.candidates import CandidateConfig, CandidateGenerator, CandidateRequest  # noqa: E402
from checkout_recs.retrieval.index_build import IndexConfig  # noqa: E402

CFG = IndexConfig(exact_below=1000, nlist=48, nprobe=16)


@pytest.fixture()
def setup():
    index, emb, snap = synthetic_index(4000, cfg=CFG)
    return index, emb, snap


def _far_items(emb: np.ndarray, snap: pd.DataFrame, vec: np.ndarray, n: int) -> np.ndarray:
    """Live ids of region 'eu' least similar to ``vec`` (never in the ANN's top)."""
    eu = np.flatnonzero(snap["region"].to_numpy() == "eu")
    return snap["listing_id"].to_numpy()[eu[np.argsort(emb[eu] @ vec)[:n]]]


def test_cf_residual_adds_what_the_tower_misses(setup):
    index, emb, snap = setup
    vec = emb[0]
    eu = (snap["region"] == "eu").to_numpy()
    ann_top = brute_force(emb[eu], snap["listing_id"].to_numpy()[eu], vec, 5)[0]
    far = _far_items(emb, snap, vec, 3)
    recent = [1500]
    # item-kNN says: after 1500 come three listings the tower ranks last, and one it ranks first
    knn = pd.DataFrame(
        {"listing_a": 1500, "listing_b": [*far, ann_top[0]], "similarity": [0.9, 0.8, 0.7, 0.95]}
    )
    gen = CandidateGenerator(index, item_knn=knn)
    c = gen.generate(CandidateRequest(region="eu", recent_listing_ids=recent, user_vector=vec))
    src = dict(zip(c.ids.tolist(), c.sources.tolist(), strict=True))
    assert [src.get(int(i)) for i in far] == ["cf_residual"] * 3
    assert src[int(ann_top[0])] == "ann"  # found by both: credited to the tower, not the residual
    assert c.counts()["cf_residual"] == 3


def test_complement_searches_complement_categories_with_the_user_vector(setup):
    index, emb, snap = setup
    basket = [1000 + 8 * 5 + 1]  # category 1, region 'us' (rows 40..47 are 'us')
    assert snap.set_index("listing_id").loc[basket[0], ["category_id", "region"]].tolist() == [
        1,
        "us",
    ]
    pairs = pd.DataFrame(
        {"category_a": [1, 1, 1], "category_b": [4, 6, 1], "co_purchase_strength": [0.9, 0.5, 1.0]}
    )
    cfg = CandidateConfig(ann=0, popular=0, cold_start=0, complement=30, complement_categories=2)
    gen = CandidateGenerator(index, category_pairs=pairs, cfg=cfg)
    vec = emb[7]
    c = gen.generate(CandidateRequest(region="us", basket=basket, user_vector=vec))
    assert set(c.sources) == {"complement"} and len(c) == 30
    rows = index.rows_of(c.ids)
    assert set(snap["category_id"].to_numpy()[rows]) == {4, 6}
    assert set(snap["region"].to_numpy()[rows]) == {"us"}
    # interleaved per category, each list the exact best of its category for this user vector
    ids = snap["listing_id"].to_numpy()
    for cat, got in ((4, c.ids[0::2]), (6, c.ids[1::2])):
        m = ((snap["category_id"] == cat) & (snap["region"] == "us")).to_numpy()
        np.testing.assert_array_equal(got, brute_force(emb[m], ids[m], vec, len(got))[0])


def test_without_user_vector_complement_falls_back_to_popular_in_category(setup):
    index, _, snap = setup
    pairs = pd.DataFrame({"category_a": [1], "category_b": [4], "co_purchase_strength": [0.9]})
    gen = CandidateGenerator(index, category_pairs=pairs, cfg=CandidateConfig(complement=10))
    c = gen.generate(CandidateRequest(region="us", basket=[1001]))
    comp = c.ids[c.sources == "complement"]
    assert len(comp) == 10 and "ann" not in set(c.sources)
    assert (snap["category_id"].to_numpy()[index.rows_of(comp)] == 4).all()


def test_no_source_returns_a_sold_listing_or_the_basket(setup):
    index, emb, snap = setup
    vec = emb[3]
    knn = pd.DataFrame(
        {"listing_a": 1200, "listing_b": _far_items(emb, snap, vec, 20), "similarity": 0.5}
    )
    co = pd.DataFrame({"listing_a": 1001, "listing_b": np.arange(1100, 1130), "strength": 1.0})
    pairs = pd.DataFrame({"category_a": [1], "category_b": [4], "co_purchase_strength": [0.9]})
    gen = CandidateGenerator(index, co_purchase=co, category_pairs=pairs, item_knn=knn)
    req = CandidateRequest(region="eu", basket=[1001], recent_listing_ids=[1200], user_vector=vec)
    first = gen.generate(req)
    assert set(first.counts()) == {
        "ann",
        "cf_residual",
        "co_purchase",
        "complement",
        "popular",
        "cold_start",
    }
    sold = np.concatenate([first.ids[first.sources == s][:5] for s in first.counts()])
    index.remove(sold)
    again = gen.generate(req)
    assert not np.isin(sold, again.ids).any() and 1001 not in again.ids
    assert len(np.unique(again.ids)) == len(again.ids)


def test_candidate_tables_include_item_knn_from_interactions(tmp_path):
    from checkout_recs.retrieval.candidates import candidate_tables

    labels = tmp_path / "labels"
    labels.mkdir()
    pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3],
            "listing_id": [10, 11, 10, 11, 12],
            "event_timestamp": pd.Timestamp("2026-10-01", tz="UTC"),
            "kind": "order",
        }
    ).to_parquet(labels / "interactions.parquet")
    tables = candidate_tables(labels, tmp_path / "no_features")
    knn = tables["item_knn"]
    assert len(knn) == 2  # 10 ↔ 11 (two shared users); 12 has no neighbour
    assert set(zip(knn["listing_a"], knn["listing_b"], strict=True)) == {(10, 11), (11, 10)}
    assert set(tables) == {"item_knn"}  # no co-purchase or category-pair input: no table
