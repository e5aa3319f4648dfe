"""The retrieval index's row store: per-listing arrays and the float16 vectors that score exactly.

Rows are numbered in insertion order: the built (or loaded) catalogue's rows, then listings
added later. Per row (``RowStore``): id (int64), alive (bool), region code (int16), category
(int32) and the float16 vector (2·d bytes: 1.15 GB at 18M listings, d = 32) that re-ranks ANN
hits and category hits exactly (a few hundred rows per query are converted to float32; a whole
category block never is: converting float16 costs ~10x a copy, so scans read 8-bit codes).

Every array grows by amortised appends (``Grow``): adding m listings costs O(m), not a copy of
the store. ``IdLookup`` maps listing ids to rows (a dense int32 table when ids are small
non-negative integers, else sorted arrays).
"""

from __future__ import annotations

import numpy as np

from checkout_recs.retrieval.index_ops import MappedRows


class Grow:
    """A numpy array that grows along axis 0 with amortised O(appended) appends."""

    def __init__(self, data: np.ndarray, headroom: int = 0) -> None:
        """Wrap ``data`` (kept as is without ``headroom``, else copied into a buffer with
        ``headroom`` spare rows, so the first appends copy nothing)."""
        self.n = len(data)
        if headroom:
            buf = np.empty((self.n + headroom, *data.shape[1:]), data.dtype)
            buf[: self.n] = data
            data = buf
        self._buf = data

    @classmethod
    def filled(cls, buf: np.ndarray, n: int) -> Grow:
        """A ``Grow`` over a preallocated ``buf`` whose first ``n`` rows are filled."""
        g = cls(buf[:0])
        g._buf, g.n = buf, n
        return g

    @property
    def a(self) -> np.ndarray:
        """The filled part (a view: valid until the next append)."""
        return self._buf[: self.n]

    def append(self, x: np.ndarray) -> None:
        """Append rows ``x`` (m, ...) of the same trailing shape; the buffer grows by >= 1/4."""
        need = self.n + len(x)
        if need > len(self._buf):
            cap = max(need, len(self._buf) + len(self._buf) // 4 + 1024)
            buf = np.empty((cap, *self._buf.shape[1:]), self._buf.dtype)
            buf[: self.n] = self._buf[: self.n]
            self._buf = buf
        self._buf[self.n : need] = x
        self.n = need


class IdLookup:
    """Listing id → row (int64), the newest row when an id was added again; -1 when absent."""

    def __init__(self, ids: np.ndarray) -> None:
        self._table: np.ndarray | None = None
        self._sorted = np.empty(0, np.int64)
        self._rows = np.empty(0, np.int64)
        self.set(np.asarray(ids, np.int64), np.arange(len(ids), dtype=np.int64))

    def _dense_ok(self, ids: np.ndarray, n: int) -> bool:
        return bool(len(ids) == 0 or (ids.min() >= 0 and ids.max() < 4 * n + 1024))

    def set(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Map ``ids`` (m,) to ``rows`` (m,) (later entries win), keeping the existing entries."""
        n = int(rows.max()) + 1 if len(rows) else 0
        if self._table is not None or (len(self._sorted) == 0 and self._dense_ok(ids, n)):
            if self._dense_ok(ids, n):
                top = int(ids.max()) + 1 if len(ids) else 0
                table = self._table if self._table is not None else np.empty(0, np.int32)
                if top > len(table):
                    cap = max(top + top // 50 + 1024, len(table) + len(table) // 4)
                    grown = np.full(cap, -1, np.int32)
                    grown[: len(table)] = table
                    table = grown
                table[ids] = rows
                self._table = table
                return
            if self._table is not None:  # ids outgrow the table: go sorted
                old = np.flatnonzero(self._table >= 0)
                self._sorted, self._rows = old.astype(np.int64), self._table[old].astype(np.int64)
                self._table = None
        last = np.unique(ids[::-1], return_index=True)  # per id, its last entry
        new_ids, new_rows = last[0], rows[::-1][last[1]]
        at = np.searchsorted(self._sorted, new_ids)
        hit = np.zeros(len(new_ids), bool)
        if len(self._sorted):
            hit = (at < len(self._sorted)) & (
                self._sorted[np.minimum(at, len(self._sorted) - 1)] == new_ids
            )
        self._rows[at[hit]] = new_rows[hit]
        self._sorted = np.insert(self._sorted, at[~hit], new_ids[~hit])
        self._rows = np.insert(self._rows, at[~hit], new_rows[~hit])

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id (int64, same shape), -1 where absent."""
        ids = np.asarray(ids, np.int64)
        if self._table is not None:
            if ids.size and ids.min() >= 0 and ids.max() < len(self._table):
                return self._table[ids].astype(np.int64)  # every id inside: one gather
            inside = (ids >= 0) & (ids < len(self._table))
            return np.where(inside, self._table[np.where(inside, ids, 0)], -1).astype(np.int64)
        if len(self._sorted) == 0:
            return np.full(ids.shape, -1, np.int64)
        at = np.clip(np.searchsorted(self._sorted, ids), 0, len(self._sorted) - 1)
        return np.where(self._sorted[at] == ids, self._rows[at], -1)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        t = self._table.nbytes if self._table is not None else 0
        return int(t + self._sorted.nbytes + self._rows.nbytes)


class RowStore:
    """Per-row arrays + float16 vectors, in row order (see module docstring)."""

    def __init__(
        self,
        ids: np.ndarray,
        vectors: np.ndarray | MappedRows,
        region: np.ndarray | None,
        category: np.ndarray | None,
    ) -> None:
        """``ids`` int64 (n,), ``vectors`` (n, d) any float dtype (a memory map is copied in
        slices), ``region`` int codes (n,) or None, ``category`` int (n,) or None."""
        n = len(ids)
        spare = n // 50 + 1024  # 2% headroom: adding listings copies no array until it is used
        self.ids = Grow(np.asarray(ids, np.int64), spare)
        self.alive = Grow(np.ones(n, bool), spare)
        reg = region if region is not None else np.zeros(n)
        self.region = Grow(np.asarray(reg, np.int16), spare)
        self.has_category = category is not None
        cat = category if category is not None else np.zeros(n)
        self.category = Grow(np.asarray(cat, np.int32), spare)
        vec = np.empty((n + spare, vectors.shape[1]), np.float16)
        for a in range(0, n, 1 << 20):
            vec[a : min(n, a + (1 << 20))] = vectors[a : min(n, a + (1 << 20))]
        self.vec = Grow.filled(vec, n)
        self.lookup = IdLookup(self.ids.a)

    @property
    def n(self) -> int:
        """Rows (alive or not)."""
        return self.ids.n

    def append(
        self, ids: np.ndarray, vectors: np.ndarray, region: np.ndarray, cat: np.ndarray
    ) -> np.ndarray:
        """Add rows: ids (m,), vectors (m, d), region codes (m,), categories (m,); returns their
        row numbers (int64 (m,))."""
        rows = np.arange(self.n, self.n + len(ids), dtype=np.int64)
        self.ids.append(np.asarray(ids, np.int64))
        self.alive.append(np.ones(len(ids), bool))
        self.region.append(np.asarray(region, np.int16))
        self.category.append(np.asarray(cat, np.int32))
        self.vec.append(np.asarray(vectors, np.float16))
        self.lookup.set(np.asarray(ids, np.int64), rows)
        return rows

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """float32 (r, d) vectors of ``rows`` (int64)."""
        return self.vec.a[np.asarray(rows, np.int64)].astype(np.float32)

    def best(self, rows: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best of ``rows`` (int64 (r,), increasing) by exact inner product with ``q``
        (float32 (d,)) over the float16 vectors → (rows int64 (<= k,), scores float32 (<= k,)),
        best first, equal scores in row order."""
        sc = self.vectors(rows) @ q
        top = best_first(sc, k)
        return rows[top], sc[top]

    def live_rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows (int64) of the ids that are present and alive, in the order of ``ids``."""
        rows = self.lookup.rows(ids)
        if rows.size and rows.min() < 0:
            rows = rows[rows >= 0]
        return rows[self.alive.a[rows]]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (filled parts) and the id lookup."""
        arrays = (self.ids.a, self.alive.a, self.region.a, self.category.a, self.vec.a)
        return int(sum(x.nbytes for x in arrays) + self.lookup.nbytes)


def best_first(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest of ``scores`` (1-d), best first, equal scores by position
    (exactly a stable sort's first k, ties at the k-th score included). Up to 2k scores (the
    re-rank of a few hundred ANN hits): one stable sort; more: a partition finds the k-th score,
    then the positions above it and the first ones equal to it are sorted."""
    if k <= 0:
        return np.empty(0, np.int64)
    if len(scores) <= 2 * k:
        return np.argsort(-scores, kind="stable")[:k]
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = np.flatnonzero(scores > kth)
    sel = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    sel.sort()
    return sel[np.argsort(-scores[sel], kind="stable")]
