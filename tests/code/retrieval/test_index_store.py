"""Units of the row store: amortised appends, the id → row lookup (dense table, then sorted
arrays once ids outgrow it), float16 vectors."""

from __future__ import annotations

import numpy as np

from checkout_recs.retrieval.index_store import Grow, IdLookup, RowStore, best_first


def test_grow_appends_without_losing_rows_and_keeps_headroom():
    g = Grow(np.arange(3, dtype=np.int64))
    for i in range(5):
        g.append(np.array([10 + i, 20 + i]))
    assert g.a.tolist() == [0, 1, 2, 10, 20, 11, 21, 12, 22, 13, 23, 14, 24]
    assert len(g._buf) >= g.n


def test_id_lookup_newest_row_wins_and_goes_sorted_when_ids_outgrow_the_table():
    lk = IdLookup(np.array([5, 7, 9]))
    assert lk._table is not None and lk.rows(np.array([7, 8, -1, 10**6])).tolist() == [
        1,
        -1,
        -1,
        -1,
    ]
    lk.set(np.array([7, 11]), np.array([3, 4]))  # 7 added again: row 3 now
    assert lk.rows(np.array([5, 7, 11])).tolist() == [0, 3, 4]
    lk.set(np.array([10**12, 5]), np.array([5, 6]))  # far beyond the table: sorted arrays
    assert lk._table is None
    assert lk.rows(np.array([10**12, 5, 7, 9, 11, 12])).tolist() == [5, 6, 3, 2, 4, -1]


def test_row_store_keeps_float16_vectors_in_row_order_across_appends():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 4)).astype(np.float32)
    s = RowStore(np.arange(6) + 100, v, np.array([0, 1, 0, 1, 0, 1]), np.arange(6) % 2)
    w = rng.normal(size=(2, 4)).astype(np.float32)
    rows = s.append(np.array([200, 101]), w, np.array([1, 1]), np.array([0, 0]))
    assert rows.tolist() == [6, 7] and s.vec.a.dtype == np.float16
    np.testing.assert_array_equal(
        s.vectors(np.array([7, 2])), np.stack([w[1], v[2]]).astype(np.float16).astype(np.float32)
    )
    s.alive.a[1] = False  # what RetrievalIndex.remove does before the re-added 101 arrives
    assert s.live_rows(np.array([101, 200, 999])).tolist() == [7, 6]


def test_id_lookup_answers_the_same_whether_every_id_is_in_the_table_or_not():
    lk = IdLookup(np.array([5, 7, 9, 2]))
    inside = np.array([9, 2, 5, 7, 9])
    assert lk.rows(inside).tolist() == [2, 3, 0, 1, 2] and lk.rows(inside).dtype == np.int64
    assert lk.rows(np.array([9, 3, 2])).tolist() == [2, -1, 3]  # 3: inside, never added
    assert lk.rows(np.array([9, -1, 2, 10**6])).tolist() == [2, -1, 3, -1]
    assert lk.rows(np.array([], np.int64)).tolist() == []
    s = RowStore(np.array([5, 7, 9]), np.zeros((3, 2)), None, None)
    s.alive.a[1] = False
    assert s.live_rows(np.array([9, 7, 5])).tolist() == [2, 0]  # every id present, one dead
    assert s.live_rows(np.array([9, 8, 5])).tolist() == [2, 0]


def test_best_first_is_a_stable_sorts_first_k_with_ties_at_the_kth_score():
    rng = np.random.default_rng(1)
    assert best_first(np.ones(5, np.float32), 0).tolist() == []
    for n, k in ((10, 3), (500, 300), (1000, 40), (50, 50), (7, 20)):
        sc = rng.integers(0, 6, n).astype(np.float32)  # many ties, at the k-th score too
        ref = np.argsort(-sc, kind="stable")[:k]
        np.testing.assert_array_equal(best_first(sc, k), ref)
    s = RowStore(np.arange(4), np.array([[1, 0], [2, 0], [1, 0], [3, 0]]), None, None)
    rows, sc = s.best(np.array([0, 1, 2, 3]), np.array([1.0, 0.0], np.float32), 3)
    assert rows.tolist() == [3, 1, 0] and sc.tolist() == [3.0, 2.0, 1.0]
