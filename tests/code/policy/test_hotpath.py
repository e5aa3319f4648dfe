"""Request-path fast paths give the same answers as the plain code they replace (issue #5):
the dense id -> row table of ``ItemCatalog``, the batched complement search of
``RetrievalIndex`` and the fallback pool computed from rows the caller already has."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures_retrieval import synthetic_index  # noqa: E402

from checkout_recs.policy.catalog import ItemCatalog  # noqa: E402
from checkout_recs.policy.fallback import ComplementMap, fallback_candidates  # noqa: E402
from checkout_recs.retrieval.index_build import IndexConfig  # noqa: E402
from tests.fixtures_serving import make_pairs, make_snapshot  # noqa: E402


def _sorted_rows(listing_id: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Reference lookup: first row of each id by binary search, -1 when absent."""
    order = np.argsort(listing_id, kind="stable")
    srt = listing_id[order]
    pos = np.clip(np.searchsorted(srt, ids), 0, len(srt) - 1)
    return np.where(srt[pos] == ids, order[pos], -1)


@pytest.mark.parametrize(
    "ids",
    [
        np.arange(1, 501, dtype=np.int64)[::-1],  # contiguous (the bundle's case), shuffled order
        np.array(
            [7, 3, 3, 9, -4, 12, 7], np.int64
        ),  # duplicates (first row wins) and a negative id
        np.array([5, 10**9, 17], np.int64),  # too sparse: the sorted lookup answers
    ],
)
def test_catalog_rows_dense_table_matches_the_sorted_lookup(ids):
    df = make_snapshot(len(ids), seed=2).assign(listing_id=ids)
    cat = ItemCatalog.from_frame(df)
    assert (cat._dense is None) == (ids.max() - ids.min() > 4 * len(ids) + 1024)
    probe = np.r_[ids, ids.min() - 1, ids.max() + 1, 0, -(10**12), 10**12, 8].astype(np.int64)
    got = cat.rows(probe)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _sorted_rows(ids, probe))
    assert cat.rows(np.empty(0, np.int64)).tolist() == []


def test_batched_complement_search_equals_one_search_per_category():
    cfg = IndexConfig(exact_below=1000, nlist=48, nprobe=16, selective_below=700)
    idx, emb, snap = synthetic_index(6000, n_cat=12, cfg=cfg)
    idx.remove(snap["listing_id"].to_numpy()[::7])  # dead rows inside the blocks
    big = snap.assign(category_id=5).iloc[:900]  # one category above selective_below: the ANN path
    idx.add(
        big["listing_id"].to_numpy() + 100_000,
        emb[:900],
        big.assign(listing_id=big["listing_id"] + 100_000),
    )
    cats = [3, 5, 11, 42, 0]  # 42: an empty block
    for region in ("us", "eu", None):
        for q in emb[:6]:
            got = idx.search_categories(q, 30, cats, region=region)
            for c, g in zip(cats, got, strict=True):
                ref, _ = idx.search(q[None, :], 30, region=region, category=c)
                np.testing.assert_array_equal(g, ref[0][ref[0] >= 0])
    assert len(got[0]) == 30 and len(got[3]) == 0


def test_fallback_with_the_basket_rows_given_is_the_same_answer():
    cat = ItemCatalog.from_frame(make_snapshot(1500, seed=4), top_k=40)
    comp = ComplementMap.from_frame(make_pairs(4)[0])
    for basket in (
        cat.listing_id[:3],
        np.array([cat.listing_id[10], 10**12]),
        np.empty(0, np.int64),
    ):
        rows = cat.rows(basket)
        for region in ("north", "atlantis"):
            a = fallback_candidates(cat, comp, basket, region)
            b = fallback_candidates(cat, comp, basket, region, basket_rows=rows[rows >= 0])
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)


def _fallback_reference(
    cat: ItemCatalog, comp: ComplementMap, basket: np.ndarray, region: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fallback as first written (no cache, basket dropped before ranking): the oracle."""
    rows_b = cat.rows(basket)
    rows_b = rows_b[rows_b >= 0]
    partner = comp.for_basket(cat.category_id[rows_b])
    rcode = cat.region_code_of(region)
    pools = [cat.by_category.get(c, np.empty(0, np.int64))[:25] for c in partner]
    pools += [cat.by_region.get(rcode, np.empty(0, np.int64)), cat.global_top]
    rows = np.unique(np.concatenate(pools).astype(np.int64))
    rows = rows[~np.isin(rows, rows_b)]
    strength = np.array([partner.get(int(c), 0.0) for c in cat.category_id[rows]])
    scores = (
        (1 + 2.0 * strength)
        * (cat.popularity[rows] + 1)
        * (1 + 0.5 * (cat.region_code[rows] == rcode))
    )
    order = np.lexsort((cat.listing_id[rows], -scores))
    return (
        rows[order],
        scores[order],
        np.where(strength[order] > 0, "complement", "popular").astype(object),
    )


def test_cached_fallback_pool_equals_the_uncached_answer_and_is_not_shared():
    cat = ItemCatalog.from_frame(make_snapshot(1500, seed=5), top_k=40)
    comp = ComplementMap.from_frame(make_pairs(5)[0])
    rng = np.random.default_rng(0)
    for _ in range(3):  # the second and third rounds are answered from the cache
        for size in (0, 1, 2, 4):
            basket = cat.listing_id[rng.integers(0, len(cat), size)]
            for region in ("north", "south", "atlantis"):
                got = fallback_candidates(cat, comp, basket, region)
                ref = _fallback_reference(cat, comp, basket, region)
                for x, y in zip(got, ref, strict=True):
                    np.testing.assert_array_equal(x, y)
    got = fallback_candidates(cat, comp, np.empty(0, np.int64), "north")
    got[0][:] = -1  # a caller writing into its answer leaves the cached pool intact
    again = fallback_candidates(cat, comp, np.empty(0, np.int64), "north")
    assert (again[0] >= 0).all()
    other = ItemCatalog.from_frame(make_snapshot(300, seed=6), top_k=40)
    np.testing.assert_array_equal(
        fallback_candidates(other, comp, np.empty(0, np.int64), "north")[0],
        _fallback_reference(other, comp, np.empty(0, np.int64), "north")[0],
    )
