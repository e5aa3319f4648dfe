"""Category lists: the search restricted to one category (and region) of the retrieval index.

Every listing's 8-bit scalar-quantised code sits in the list of its (category, region) group: a
FAISS IVF whose lists are those groups (no k-means; ``by_residual=False``), searched with the
group's lists pre-assigned (``search_preassigned``). A category query scans only its group's
codes (d bytes a listing, SIMD) and hands the best ``candidates`` listing ids to an exact
re-rank from the row store. Memory: (d + 8) bytes a listing (0.72 GB at 18M, d = 32).

Groups get list numbers in sorted (category, region) order; the IVF has headroom for new groups
(a listing added in a category or region never seen), and is rebuilt when that runs out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from checkout_recs.retrieval.index_build import faiss_module


class CategoryLists:
    """(category, region) → FAISS inverted list of 8-bit codes (see module docstring)."""

    def __init__(
        self,
        vectors: np.ndarray,
        ids: np.ndarray,
        category: np.ndarray,
        region: np.ndarray,
        alive: np.ndarray | None = None,
        train_sample: int = 100_000,
    ) -> None:
        """``vectors`` (n, d) any float dtype, ``ids`` int64 (n,), ``category`` / ``region``
        int codes (n,), ``alive`` bool (n,) (None: all): only live rows are put in lists."""
        faiss = faiss_module()
        keep = np.flatnonzero(alive) if alive is not None else np.arange(len(ids))
        self._keys = np.unique(group_key(category[keep], region[keep]))  # sorted, list i = key i
        self.lists: dict[tuple[int, int], int] = {
            split_key(int(k)): i for i, k in enumerate(self._keys.tolist())
        }
        self.by_category: dict[int, list[int]] = {}
        for (c, _), i in self.lists.items():
            self.by_category.setdefault(c, []).append(i)
        self._list_of_key = np.arange(len(self._keys), dtype=np.int64)  # key order → list
        d = vectors.shape[1]
        nlist = 2 * len(self.lists) + 64
        quant = faiss.IndexFlatIP(d)
        quant.add(
            np.zeros((nlist, d), np.float32)
        )  # placeholders: lists are assigned, not searched
        self.index: Any = faiss.IndexIVFScalarQuantizer(
            quant, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, False
        )
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(len(keep), min(len(keep), train_sample), replace=False))
        self.index.train(  # trains the 8-bit ranges only: the quantiser already has nlist entries
            np.ascontiguousarray(vectors[keep[sample]], np.float32)
            if len(keep)
            else np.zeros((1, d), np.float32)
        )
        for a in range(0, len(keep), 1 << 20):
            rows = keep[a : a + (1 << 20)]
            self._add(vectors[rows], ids[rows], category[rows], region[rows])

    @classmethod
    def from_index(cls, index: Any, keys: np.ndarray) -> CategoryLists:
        """Lists read back from a file: the FAISS ``index`` and ``keys`` (int64, ``group_key`` of
        list i at position i, as ``keys_by_list`` returned them)."""
        self = cls.__new__(cls)
        self.index = index
        keys = np.asarray(keys, np.int64)
        order = np.argsort(keys, kind="stable")
        self._keys, self._list_of_key = keys[order], order.astype(np.int64)
        self.lists = {split_key(int(k)): i for i, k in enumerate(keys.tolist())}
        self.by_category = {}
        for (c, _), i in self.lists.items():
            self.by_category.setdefault(c, []).append(i)
        return self

    @property
    def keys_by_list(self) -> np.ndarray:
        """int64 (groups,): the ``group_key`` of list i at position i (what ``from_index`` reads)."""
        out = np.empty(len(self._keys), np.int64)
        out[self._list_of_key] = self._keys
        return out

    def _add(self, vectors: np.ndarray, ids: np.ndarray, cat: np.ndarray, reg: np.ndarray) -> bool:
        """Put rows in their groups' lists; False (nothing added) when new groups do not fit."""
        faiss = faiss_module()
        key = group_key(cat, reg)
        new = np.setdiff1d(key, self._keys)
        if len(self.lists) + len(new) > self.index.nlist:
            return False
        if len(new):
            lists = np.arange(len(self.lists), len(self.lists) + len(new), dtype=np.int64)
            for k, i in zip(new.tolist(), lists.tolist(), strict=True):
                self.lists[split_key(k)] = i
                self.by_category.setdefault(split_key(k)[0], []).append(i)
            merged = np.concatenate([self._keys, new])
            order = np.argsort(merged, kind="stable")
            self._keys = merged[order]
            self._list_of_key = np.concatenate([self._list_of_key, lists])[order]
        lst = np.ascontiguousarray(self._list_of_key[np.searchsorted(self._keys, key)])
        x = np.ascontiguousarray(vectors, np.float32)
        xid = np.ascontiguousarray(ids, np.int64)
        if len(x):
            self.index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(xid), faiss.swig_ptr(lst))
        return True

    def add(self, vectors: np.ndarray, ids: np.ndarray, cat: np.ndarray, reg: np.ndarray) -> bool:
        """Add listings (vectors (m, d), ids (m,), category / region codes (m,)); False when
        their new groups exceed the headroom (the caller rebuilds the lists)."""
        return self._add(vectors, np.asarray(ids, np.int64), np.asarray(cat), np.asarray(reg))

    def remove(self, ids: np.ndarray) -> None:
        """Drop listing ``ids`` (int64) from every list."""
        self.index.remove_ids(faiss_module().IDSelectorBatch(np.asarray(ids, np.int64)))

    def group_lists(self, category: int, region: int) -> list[int]:
        """Lists of (category, region code); region -1: the category's lists in every region."""
        if region < 0:
            return self.by_category.get(int(category), [])
        i = self.lists.get((int(category), int(region)))
        return [] if i is None else [i]

    def size(self, lists: list[int]) -> int:
        """Listings in ``lists``."""
        inv = self.index.invlists
        return int(sum(inv.list_size(i) for i in lists))

    def search(self, query: np.ndarray, lists: list[list[int]], n: int) -> np.ndarray:
        """The ``n`` best listing ids by 8-bit inner product inside each entry of ``lists``.

        Parameters
        ----------
        query : float32 (d,) one user vector.
        lists : per category searched, the list numbers to scan (``group_lists``).
        n : candidates per category.

        Returns
        -------
        int64 (len(lists), n) listing ids, best first, -1 where a group has fewer listings.
        """
        faiss = faiss_module()
        m = max(1, max((len(x) for x in lists), default=1))
        assign = np.full((len(lists), m), -1, np.int64)
        for i, x in enumerate(lists):
            assign[i, : len(x)] = x
        q = np.ascontiguousarray(np.repeat(np.asarray(query, np.float32)[None, :], len(lists), 0))
        dq = np.zeros(assign.shape, np.float32)
        dist = np.empty((len(lists), n), np.float32)
        out = np.empty((len(lists), n), np.int64)
        params = faiss.SearchParametersIVF()
        params.nprobe = m
        self.index.search_preassigned_c(
            len(lists),
            faiss.swig_ptr(q),
            n,
            faiss.swig_ptr(assign),
            faiss.swig_ptr(dq),
            faiss.swig_ptr(dist),
            faiss.swig_ptr(out),
            False,
            params,
        )
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the lists' codes and ids."""
        inv = self.index.invlists
        n = sum(inv.list_size(i) for i in range(inv.nlist))
        return int(n * (inv.code_size + 8))


def group_key(category: np.ndarray, region: np.ndarray) -> np.ndarray:
    """int64 key of (category, region code) pairs (region codes from -1 to 2**16 - 2)."""
    return np.asarray(category, np.int64) * 65536 + (np.asarray(region, np.int64) + 1)


def split_key(key: int) -> tuple[int, int]:
    """(category, region code) of a ``group_key``."""
    c, r = divmod(key, 65536)
    return int(c), int(r) - 1
