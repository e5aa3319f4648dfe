"""Units of the row store: amortised appends, the id → row lookup (dense table, then sorted
arrays once ids outgrow it), float16 vectors."""

from __future__ import annotations

import numpy as np

from checkout_recs.retrieval.index_store import Grow, IdLookup, RowStore


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
