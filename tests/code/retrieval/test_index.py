"""Units of the retrieval index: 8-bit shards with exact re-rank, IVF-Flat, one shard per region,
exact in-category search, add/remove without a rebuild, format-1 folders, neighbour tables and
the item-kNN table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures_retrieval import brute_force, synthetic_catalogue, synthetic_index  # noqa: E402

from checkout_recs.retrieval.index import RetrievalIndex  # noqa: E402
from checkout_recs.retrieval.index_build import IndexConfig, shard_nlist  # noqa: E402
from checkout_recs.retrieval.neighbours import NeighbourTable, item_knn_table  # noqa: E402

IVF = IndexConfig(exact_below=1000, nlist=48, nprobe=16)
#: Every list probed: the 8-bit scan then sees every listing and the re-rank makes it exact.
ALL_LISTS = IndexConfig(exact_below=1000, nlist=24, nprobe=24, rerank=200)


def _recall(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(x, y)) / len(y) for x, y in zip(a, b, strict=True)]))


def test_sq8_with_exact_rerank_returns_the_exact_top_k_when_every_list_is_probed(tmp_path):
    idx, emb, snap = synthetic_index(6000, cfg=ALL_LISTS)
    assert idx.manifest.kind == "ivf_sq8" and all(idx._needs_rerank.values())
    ids_all, reg = snap["listing_id"].to_numpy(), snap["region"].to_numpy()
    q = emb[:20]
    ids, sc = idx.search(q, 50)
    np.testing.assert_array_equal(ids, brute_force(emb, ids_all, q, 50))
    # the scores are the exact inner products with the stored (float16) vectors
    e16 = emb.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(sc, np.einsum("qd,qkd->qk", q, e16[ids - 1000]), atol=1e-5)
    for r in ("eu", "us"):
        got, _ = idx.search(q, 50, region=r)
        np.testing.assert_array_equal(got, brute_force(emb[reg == r], ids_all[reg == r], q, 50))
    idx.save(tmp_path)
    loaded = RetrievalIndex.load(tmp_path)
    np.testing.assert_array_equal(loaded.search(q, 50)[0], ids)


def test_default_lists_are_nlist_factor_sqrt_n_per_shard_and_an_explicit_nlist_wins():
    cfg = IndexConfig(exact_below=1000)
    assert shard_nlist(6_051_920, cfg) == int(4 * np.sqrt(6_051_920)) == 9840
    assert shard_nlist(3, cfg.model_copy(update={"nlist_factor": 16.0})) == 3  # at most n
    assert shard_nlist(10**6, cfg.model_copy(update={"nlist": 77})) == 77
    idx, emb, snap = synthetic_index(6000, cfg=cfg)
    for key, shard in idx.indexes.items():
        assert shard.nlist == int(4 * np.sqrt(shard.ntotal)), key
    q = emb[:20]
    assert (
        _recall(idx.search(q, 50)[0], brute_force(emb, snap["listing_id"].to_numpy(), q, 50))
        >= 0.95
    )


def test_equal_scores_rank_the_lower_row_first_whether_the_rerank_sorts_or_partitions():
    """The re-rank sorts up to 2k candidates whole and partitions more: both give the exact
    top-k with equal scores in row order."""
    emb, snap = synthetic_catalogue(300)
    # multiples of 1/8: float16 holds them and every inner product is exact in float32, so
    # equal vectors score equal whatever order BLAS sums in
    emb = (np.round(emb * 8) / 8).astype(np.float32)
    emb[1::3] = emb[0::3]  # every vector three times: ties at every rank
    emb[2::3] = emb[0::3]
    ids_all, q = snap["listing_id"].to_numpy(), emb[:10]
    # one IVF shard, every list probed, every listing re-ranked
    cfg = IndexConfig(exact_below=100, nlist=8, nprobe=8, rerank=300, per_region=False)
    idx = RetrievalIndex.from_embeddings(ids_all, emb, snap, cfg)
    assert all(idx._needs_rerank.values())
    for k in (150, 40):  # 300 candidates: whole sort (<= 2k), partition (> 2k)
        ids, sc = idx.search(q, k)
        np.testing.assert_array_equal(ids, brute_force(emb, ids_all, q, k))
        for row_ids, row_sc in zip(ids, sc, strict=True):  # equal scores: ids (rows) increase
            for v in np.unique(row_sc):
                assert (np.diff(row_ids[row_sc == v]) > 0).all()
        assert (sc[:, :-1] == sc[:, 1:]).any()  # the test has ties to order


def test_ivf_flat_scores_exactly_and_finds_the_exact_neighbours():
    idx, emb, snap = synthetic_index(6000, cfg=IVF.model_copy(update={"kind": "ivf_flat"}))
    assert idx.manifest.kind == "ivf_flat" and not any(idx._needs_rerank.values())
    q = emb[:20]
    ids, sc = idx.search(q, 50)
    assert _recall(ids, brute_force(emb, snap["listing_id"].to_numpy(), q, 50)) >= 0.95
    np.testing.assert_allclose(sc, np.einsum("qd,qkd->qk", q, emb[ids - 1000]), atol=1e-5)


def test_one_shard_per_region_holds_each_listing_once_and_answers_in_region():
    idx, emb, snap = synthetic_index(6000, cfg=IVF)
    assert set(idx.indexes) == {"eu", "us"} and idx.manifest.shards == ["eu", "us"]
    assert sum(ix.ntotal for ix in idx.indexes.values()) == len(snap)
    for r in ("eu", "us"):
        ix = idx.indexes[r]
        assert ix.nlist == 48 and ix.ntotal == int((snap["region"] == r).sum())
        rows = np.flatnonzero(snap["region"].to_numpy() == r)
        ids, _ = idx.search(emb[rows[:10]], 40, region=r)
        assert np.isin(ids, snap["listing_id"].to_numpy()[rows]).all()
        exact = brute_force(emb[rows], snap["listing_id"].to_numpy()[rows], emb[rows[:10]], 40)
        assert _recall(ids, exact) >= 0.9


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
    batch = idx.search_categories(q[0], 25, [3, 2], region="us")
    np.testing.assert_array_equal(batch[0], idx.search(q[:1], 25, region="us", category=3)[0][0])


def test_add_and_remove_without_rebuild_answer_as_a_fresh_build_of_the_same_set(tmp_path):
    emb, snap = synthetic_catalogue(6000, seed=3)
    ids_all = snap["listing_id"].to_numpy()
    first = np.arange(6000) < 5000  # built from 5,000; 1,000 added later; 300 removed
    idx = RetrievalIndex.from_embeddings(ids_all[first], emb[first], snap[first], ALL_LISTS)
    idx.add(ids_all[~first], emb[~first], snap[~first])
    gone = ids_all[::20]
    assert idx.remove(gone) == len(gone) and idx.remove(gone) == 0
    keep = ~np.isin(ids_all, gone)
    fresh = RetrievalIndex.from_embeddings(ids_all[keep], emb[keep], snap[keep], ALL_LISTS)
    idx.save(tmp_path)
    loaded = RetrievalIndex.load(tmp_path)
    q = emb[1:40:3]
    for other in (idx, loaded):
        for region in (None, "eu", "us"):
            np.testing.assert_array_equal(
                other.search(q, 30, region=region)[0], fresh.search(q, 30, region=region)[0]
            )
        for c in (0, 5):
            np.testing.assert_array_equal(
                other.search(q, 20, region="eu", category=c)[0],
                fresh.search(q, 20, region="eu", category=c)[0],
            )
    assert not idx.is_live(gone).any() and idx.is_live(ids_all[keep]).all()
    assert sorted(loaded.live_ids.tolist()) == sorted(ids_all[keep].tolist())
    assert loaded.manifest.n_items == int(keep.sum())


def test_large_sparse_ids_add_and_remove_like_dense_ones():
    emb, snap = synthetic_catalogue(3000, seed=4)
    snap["listing_id"] += 10**12
    ids = snap["listing_id"].to_numpy()
    idx = RetrievalIndex.from_embeddings(ids[:2500], emb[:2500], snap[:2500], ALL_LISTS)
    idx.add(ids[2500:], emb[2500:], snap[2500:])
    idx.remove(ids[:100])
    got, _ = idx.search(emb[2600:2605], 5, region=None)
    assert (got[:, 0] == ids[2600:2605]).all()  # each added listing is its own nearest neighbour
    assert not idx.is_live(ids[:100]).any() and idx.is_live(ids[100:]).all()


def test_a_format_1_folder_loads_its_region_files_as_shards(tmp_path):
    idx, emb, _ = synthetic_index(3000, cfg=IVF)
    idx.save(tmp_path)
    man = json.loads((tmp_path / "manifest.json").read_text())
    for i, r in enumerate(man.pop("shards")):
        (tmp_path / f"shard.{i}.faiss").rename(tmp_path / f"index.{r}.faiss")
    man.pop("format")
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    loaded = RetrievalIndex.load(tmp_path)
    assert set(loaded.indexes) == {"eu", "us"}
    np.testing.assert_array_equal(
        loaded.search(emb[:3], 10, region="eu")[0], idx.search(emb[:3], 10, region="eu")[0]
    )


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


def test_a_folder_saved_before_nlist_factor_loads_with_its_own_nprobe_and_rerank(tmp_path):
    """A format-2 folder written before ``nlist_factor`` / ``train_per_list`` existed (its
    manifest config: sqrt(n) lists, nprobe 48, re-rank 500) loads and searches with its own
    settings, not the new defaults."""
    cfg = IndexConfig(exact_below=1000, nlist=40, nprobe=48, rerank=500)
    idx, emb, snap = synthetic_index(6000, cfg=cfg)
    idx.save(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for field in ("nlist_factor", "train_per_list"):
        manifest["config"].pop(field)
    manifest["config"]["nlist"] = None
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    loaded = RetrievalIndex.load(tmp_path)
    assert loaded.cfg.nprobe == 48 and loaded.cfg.rerank == 500
    assert all(ix.nprobe == 48 for ix in loaded.indexes.values())
    q = emb[:20]
    np.testing.assert_array_equal(loaded.search(q, 50)[0], idx.search(q, 50)[0])
