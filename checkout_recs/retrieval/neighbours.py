"""Item → item neighbour tables for candidate generation: co-purchase and item-kNN (CF).

``NeighbourTable`` holds, per listing, its neighbours strongest first in CSR arrays, so one
request's look-up is a ``searchsorted`` and a few slices (no dict of a million keys, no pandas).
``item_knn_table`` computes the collaborative-filtering neighbours offline: cosine similarity of
listings over the users who interacted with them (sparse; top ``k`` per listing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class NeighbourTable:
    """key (int64, sorted, distinct) → neighbours ``ids[ptr[i]:ptr[i + 1]]`` with ``weights``.

    Shapes: ``keys`` (m,), ``ptr`` (m + 1,), ``ids`` (nnz,) int64, ``weights`` (nnz,) float32;
    within a key, neighbours are sorted by weight, strongest first.
    """

    keys: np.ndarray
    ptr: np.ndarray
    ids: np.ndarray
    weights: np.ndarray

    @classmethod
    def empty(cls) -> NeighbourTable:
        """A table without keys."""
        z = np.empty(0, np.int64)
        return cls(z, np.zeros(1, np.int64), z, np.empty(0, np.float32))

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame | None, key: str, neighbour: str, weight: str, limit: int = 100
    ) -> NeighbourTable:
        """From rows (key, neighbour, weight); keeps the ``limit`` strongest neighbours per key."""
        if frame is None or frame.empty:
            return cls.empty()
        df = frame[[key, neighbour, weight]].sort_values(
            [key, weight], ascending=[True, False], kind="stable"
        )
        df = df.drop_duplicates([key, neighbour])  # a pair seen on several days: its strongest row
        df = df[df.groupby(key, sort=False).cumcount() < limit]
        k = df[key].to_numpy(np.int64)
        keys, start = np.unique(k, return_index=True)
        return cls(
            keys,
            np.r_[start, len(k)].astype(np.int64),
            df[neighbour].to_numpy(np.int64),
            df[weight].to_numpy(np.float32),
        )

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, keys: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per key of ``keys`` (q,): its (neighbour ids, weights), empty arrays for unknown keys."""
        keys = np.asarray(keys, np.int64)
        pos = np.clip(np.searchsorted(self.keys, keys), 0, max(len(self.keys) - 1, 0))
        out = []
        for key, p in zip(keys.tolist(), pos.tolist(), strict=True):
            if len(self.keys) and self.keys[p] == key:
                a, b = self.ptr[p], self.ptr[p + 1]
                out.append((self.ids[a:b], self.weights[a:b]))
            else:
                out.append((self.ids[:0], self.weights[:0]))
        return out

    def scored(self, history: np.ndarray, decay: float) -> np.ndarray:
        """Neighbours of a history (q,) ids, newest last, best first (int64).

        score(j) = Σ_i decay^(steps of i from the end) · weight(i → j): the item-kNN scoring
        of the offline protocol's baseline, on a precomputed top-k table.
        """
        found = self.lookup(history)
        w = decay ** np.arange(len(found))[::-1]
        ids = [a for a, _ in found]
        if not any(len(a) for a in ids):
            return np.empty(0, np.int64)
        wts = np.concatenate([b * wi for (_, b), wi in zip(found, w, strict=True)])
        uniq, inv = np.unique(np.concatenate(ids), return_inverse=True)
        score = np.bincount(inv, weights=wts)
        return uniq[np.argsort(-score, kind="stable")]


def item_knn_table(interactions: pd.DataFrame, k: int = 50, min_users: int = 1) -> pd.DataFrame:
    """Cosine item-kNN over (user, listing) interactions, top ``k`` neighbours per listing.

    Parameters
    ----------
    interactions : rows with ``user_id, listing_id`` (orders, clicks; repeats count once).
    k : neighbours kept per listing.
    min_users : listings with fewer distinct users are left out (no reliable neighbours).

    Returns
    -------
    DataFrame ``listing_a, listing_b, similarity`` (int64, int64, float32; a ≠ b; similarity in
    (0, 1]), strongest first within each ``listing_a``. Empty when there are no interactions.
    """
    cols = {
        "listing_a": np.empty(0, np.int64),
        "listing_b": np.empty(0, np.int64),
        "similarity": np.empty(0, np.float32),
    }
    if interactions.empty:
        return pd.DataFrame(cols)
    pairs = interactions[["user_id", "listing_id"]].drop_duplicates()
    users, u = np.unique(pairs["user_id"].to_numpy(), return_inverse=True)
    items, i = np.unique(pairs["listing_id"].to_numpy(np.int64), return_inverse=True)
    x = sp.csr_matrix((np.ones(len(pairs), np.float32), (u, i)), shape=(len(users), len(items)))
    co = (x.T @ x).tocsr()  # (I, I) co-occurrence counts; diagonal = users per item
    n_users = co.diagonal().astype(np.float32)
    co.setdiag(0)
    co.eliminate_zeros()
    co = co.tocoo()
    sim = co.data / np.sqrt(n_users[co.row] * n_users[co.col])
    keep = (n_users[co.row] >= min_users) & (n_users[co.col] >= min_users)
    df = pd.DataFrame(
        {
            "listing_a": items[co.row[keep]],
            "listing_b": items[co.col[keep]],
            "similarity": sim[keep].astype(np.float32),
        }
    )
    df = df.sort_values(
        ["listing_a", "similarity", "listing_b"], ascending=[True, False, True], kind="stable"
    )
    return df[df.groupby("listing_a", sort=False).cumcount() < k].reset_index(drop=True)
