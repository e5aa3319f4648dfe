"""Units of the retrieval index: IVF-Flat kind, shared region lists, exact in-category blocks,
neighbour tables and the item-kNN table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures_retrieval import brute_force, synthetic_index  # noqa: E402

from checkout_recs.retrieval.index import RetrievalIndex  # noqa: E402
from checkout_recs.retrieval.index_build import IndexConfig  # noqa: E402
from checkout_recs.retrieval.neighbours import NeighbourTable, item_knn_table  # noqa: E402

IVF = IndexConfig(exact_below=1000, nlist=48, nprobe=16)


def _recall(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(x, y)) / len(y) for x, y in zip(a, b, strict=True)]))


def test_ivf_flat_is_default_scores_exactly_and_finds_the_exact_neighbours(tmp_path):
    idx, emb, snap = synthetic_index(6000, cfg=IVF)
    assert idx.manifest.kind == "ivf_flat" and not any(idx._needs_rerank.values())
    q = emb[:20]
    ids, sc = idx.search(q, 50)
    assert _recall(ids, brute_force(emb, snap["listing_id"].to_numpy(), q, 50)) >= 0.95
    # every returned score is the exact inner product of the returned listing
    np.testing.assert_allclose(sc, np.einsum("qd,qkd->qk", q, emb[ids - 1000]), atol=1e-5)
    idx.save(tmp_path)
    loaded = RetrievalIndex.load(tmp_path)
    np.testing.assert_array_equal(loaded.search(q, 50)[0], ids)


def test_region_indexes_reuse_the_global_lists_and_stay_in_region():
    idx, emb, snap = synthetic_index(6000, cfg=IVF)
    assert set(idx.indexes) == {"", "eu", "us"}
    for r in ("eu", "us"):
        ix = idx.indexes[r]
        assert ix.nlist == idx.indexes[""].nlist and ix.ntotal == int((snap["region"] == r).sum())
        rows = np.flatnonzero(snap["region"].to_numpy() == r)
        ids, _ = idx.search(emb[rows[:10]], 40, region=r)
        assert np.isin(ids, snap["listing_id"].to_numpy()[rows]).all()
        exact = brute_force(emb[rows], snap["listing_id"].to_numpy()[rows], emb[rows[:10]], 40)
        assert _recall(ids, exact) >= 0.9
    np.testing.assert_array_equal(
        idx.indexes["eu"].quantizer.reconstruct_n(0, 48),
        idx.indexes[""].quantizer.reconstruct_n(0, 48),
    )


def test_category_search_is_exact_inside_category_and_region_after_remove_and_add():
    idx, emb, snap = synthetic_index(6000, cfg=IVF)
    ids_all = snap["listing_id"].to_numpy()
    inside = ((snap["category_id"] == 3) & (snap["region"] == "us")).to_numpy()
    q = emb[:4]
    got, sc = idx.search(q, 25, region="us", category=3)
    np.testing.assert_array_equal(got, brute_force(emb[inside], ids_all[inside], q, 25))
    assert (np.diff(sc, axis=1) <= 1e-6).all()
    sold = got[:, :5].ravel()
    idx.remove(sold)
    after, _ = idx.search(q, 25, region="us", category=3)
    assert not np.isin(sold, after).any()
    live = inside & ~np.isin(ids_all, sold)
    np.testing.assert_array_equal(after, brute_force(emb[live], ids_all[live], q, 25))
    new = snap[inside].iloc[[0]].assign(listing_id=99_999)
    idx.add(np.array([99_999]), q[:1], new)
    assert idx.search(q[:1], 3, region="us", category=3)[0][0, 0] == 99_999
    assert idx.categories_of(np.array([99_999, 1003, -5])).tolist() == [3, 3, -1]


def test_unselective_category_falls_back_to_filtered_ann():
    idx, emb, snap = synthetic_index(6000, cfg=IVF.model_copy(update={"selective_below": 0}))
    got, _ = idx.search(emb[:3], 20, region="eu", category=2)
    valid = got[got >= 0]
    assert len(valid) > 0
    rows = idx.rows_of(valid)
    assert (snap["category_id"].to_numpy()[rows] == 2).all() and (
        snap["region"].to_numpy()[rows] == "eu"
    ).all()


def test_neighbour_table_keeps_strongest_distinct_and_scores_history():
    frame = pd.DataFrame(
        {"a": [1, 1, 1, 1, 2], "b": [10, 11, 10, 12, 10], "w": [0.2, 0.9, 0.5, 0.1, 1.0]}
    )
    t = NeighbourTable.from_frame(frame, "a", "b", "w", limit=2)
    (ids1, w1), (ids2, _), (ids9, _) = t.lookup(np.array([1, 2, 9]))
    assert ids1.tolist() == [11, 10] and w1.tolist() == [np.float32(0.9), np.float32(0.5)]
    assert ids2.tolist() == [10] and len(ids9) == 0
    # history [1, 2] (2 newest): 10 gets 0.5·decay + 1.0, 11 gets 0.9·decay
    assert t.scored(np.array([1, 2]), decay=0.5).tolist() == [10, 11]
    assert t.scored(np.array([7]), decay=0.5).tolist() == []
    assert len(NeighbourTable.from_frame(None, "a", "b", "w")) == 0


def test_item_knn_table_is_cosine_over_users_top_k():
    inter = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 3], "listing_id": [5, 6, 5, 6, 5, 7, 7]})
    t = item_knn_table(inter, k=1)
    got = {(int(a), int(b)): float(s) for a, b, s in t.itertuples(index=False)}
    # listing 5: users {1,2,3}; 6: {1,2}; 7: {3} → cos(5,6) = 2/√6, cos(5,7) = 1/√3; k=1 keeps 5→6
    assert set(got) == {(5, 6), (6, 5), (7, 5)}
    np.testing.assert_allclose(
        [got[(5, 6)], got[(6, 5)], got[(7, 5)]],
        [2 / np.sqrt(6), 2 / np.sqrt(6), 1 / np.sqrt(3)],
        rtol=1e-6,
    )
    assert item_knn_table(inter.iloc[0:0]).empty
