"""What the request path knows about listings: the item snapshot aligned with the index.

``ItemCatalog`` holds one numpy column per snapshot field (listing + seller features), an id ->
row lookup (O(1) through a dense int32 table while the ids are not too sparse, else a binary
search), and the precomputed short lists that the fallback and the built-in candidate
sources read in O(1): top listings per category and per region by popularity, and the best
cold-start listings per region. Built once at server start; ~64 bytes per listing (1M listings
~ 64 MB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ("listing_id", "seller_id", "category_id", "region", "price", "take_rate")
#: Listings younger than this (days) count as cold-start.
COLD_START_DAYS = 14.0
#: The dense id -> row table is used while (max_id - min_id + 1) <= this x listings + 1024
#: (int32: at most ~4 x 4 bytes per listing).
DENSE_SPAN_FACTOR = 4


@dataclass
class ItemCatalog:
    """Columns of the item snapshot, row-aligned.

    Attributes
    ----------
    listing_id, seller_id : int64 (n,)
    category_id, top_category_id : int32 (n,)
    region_code : int16 (n,) index into ``regions``
    price, take_rate : float64 (n,) currency units, share of price
    popularity : float64 (n,) decayed purchases + 0.1 clicks (0 when unknown)
    ctr, cvr : float64 (n,) smoothed click and purchase|click rates (priors when unknown)
    seller_is_new, cold : bool (n,)
    """

    listing_id: np.ndarray
    seller_id: np.ndarray
    category_id: np.ndarray
    top_category_id: np.ndarray
    region_code: np.ndarray
    regions: list[str]
    price: np.ndarray
    take_rate: np.ndarray
    popularity: np.ndarray
    ctr: np.ndarray
    cvr: np.ndarray
    seller_is_new: np.ndarray
    cold: np.ndarray
    frame: pd.DataFrame = field(repr=False)
    views: np.ndarray | None = (
        None  # float64 (n,) decayed views (exploration uncertainty), None if unknown
    )
    top_k: int = 50
    _order: np.ndarray = field(init=False, repr=False)
    _sorted_ids: np.ndarray = field(init=False, repr=False)
    _dense: np.ndarray | None = field(
        init=False, repr=False
    )  # int32 (max_id - min_id + 1,) row per id
    _min_id: int = field(init=False, repr=False)
    by_category: dict[int, np.ndarray] = field(init=False, repr=False)
    by_region: dict[int, np.ndarray] = field(init=False, repr=False)
    cold_by_region: dict[int, np.ndarray] = field(init=False, repr=False)
    global_top: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._order = np.argsort(self.listing_id, kind="stable")
        self._sorted_ids = self.listing_id[self._order]
        self._dense, self._min_id = _dense_lookup(self.listing_id)
        pop_rank = np.lexsort((self.listing_id, -self.popularity))  # most popular first
        self.by_category = _top_per_group(self.category_id[pop_rank], pop_rank, self.top_k)
        self.by_region = _top_per_group(self.region_code[pop_rank], pop_rank, self.top_k)
        self.global_top = pop_rank[: self.top_k].astype(np.int64)
        quality = self.ctr * self.cvr * self.price * self.take_rate
        cold_rank = np.lexsort((self.listing_id, -quality))
        cold_rank = cold_rank[self.cold[cold_rank] | self.seller_is_new[cold_rank]]
        self.cold_by_region = _top_per_group(self.region_code[cold_rank], cold_rank, self.top_k)

    def __len__(self) -> int:
        return len(self.listing_id)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, top_k: int = 50) -> ItemCatalog:
        """Build from a snapshot frame (``contract.LISTING_FEATURES`` + ``SELLER_FEATURES`` columns).

        Only ``REQUIRED`` columns must exist; the others default to neutral priors. Raises
        ``ValueError`` naming the missing columns.
        """
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            raise ValueError(f"item snapshot lacks columns {missing}")
        df = df.reset_index(drop=True)
        n = len(df)
        regions = sorted(df["region"].astype(str).unique().tolist())
        codes = pd.Categorical(df["region"].astype(str), categories=regions).codes.astype(np.int16)

        def col(name: str, default: float, dtype: type = np.float64) -> np.ndarray:
            if name in df.columns:
                return df[name].fillna(default).to_numpy(dtype=dtype)
            return np.full(n, default, dtype=dtype)

        pop = col("purchases_decayed", 0.0) + 0.1 * col("clicks_decayed", 0.0)
        age = col("age_days", 365.0)
        return cls(
            listing_id=df["listing_id"].to_numpy(np.int64),
            seller_id=df["seller_id"].to_numpy(np.int64),
            category_id=df["category_id"].to_numpy(np.int32),
            top_category_id=col("top_category_id", -1, np.int32)
            if "top_category_id" in df
            else df["category_id"].to_numpy(np.int32),
            region_code=codes,
            regions=regions,
            price=df["price"].to_numpy(np.float64),
            take_rate=df["take_rate"].to_numpy(np.float64),
            popularity=pop,
            ctr=col("ctr_smoothed", 0.05),
            cvr=col("cvr_smoothed", 0.1),
            seller_is_new=col("seller_is_new", 0, np.int8).astype(bool),
            cold=age < COLD_START_DAYS,
            frame=df,
            top_k=top_k,
            views=col("views_decayed", 0.0) if "views_decayed" in df.columns else None,
        )

    @classmethod
    def load(cls, path: Path, top_k: int = 50) -> ItemCatalog:
        """Read ``snapshot.parquet`` at ``path`` (see ``from_frame``)."""
        return cls.from_frame(pd.read_parquet(path), top_k=top_k)

    def rows(self, listing_ids: np.ndarray) -> np.ndarray:
        """Row index of each id, -1 where the id is not in the snapshot (int64 (n,))."""
        ids = np.asarray(listing_ids, dtype=np.int64)
        if self._dense is not None:
            off = ids - self._min_id
            inside = (off >= 0) & (off < len(self._dense))
            return np.where(inside, self._dense[np.where(inside, off, 0)], -1).astype(np.int64)
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.clip(pos, 0, max(len(self._sorted_ids) - 1, 0))
        if len(self._sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        found = self._sorted_ids[pos] == ids
        return np.where(found, self._order[pos], -1).astype(np.int64)

    def region_code_of(self, region: str) -> int:
        """Code of ``region``, -1 when the snapshot has no listing there."""
        try:
            return self.regions.index(region)
        except ValueError:
            return -1


def _dense_lookup(ids: np.ndarray) -> tuple[np.ndarray | None, int]:
    """An int32 id -> row table over ``[min_id, max_id]`` (-1 for gaps) and ``min_id``.

    ``(None, 0)`` when the ids are too sparse for it (span above ``DENSE_SPAN_FACTOR`` x their
    count + 1024: the table would outweigh the searchsorted arrays) or too many for int32 rows.
    A duplicated id maps to its first row, like the sorted lookup.
    """
    n = len(ids)
    if n == 0 or n >= 2**31 - 1:
        return None, 0
    lo, hi = int(ids.min()), int(ids.max())
    span = hi - lo + 1
    if span > DENSE_SPAN_FACTOR * n + 1024:
        return None, 0
    table = np.full(span, -1, np.int32)
    table[ids[::-1] - lo] = np.arange(n - 1, -1, -1, dtype=np.int32)  # reversed: the first row wins
    return table, lo


def _top_per_group(groups: np.ndarray, ranked_rows: np.ndarray, k: int) -> dict[int, np.ndarray]:
    """For rows already ranked best-first, the first ``k`` rows of each group value."""
    out: dict[int, np.ndarray] = {}
    if len(groups) == 0:
        return out
    order = np.argsort(groups, kind="stable")  # keeps the ranking inside each group
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    ends = np.r_[starts[1:], len(g_sorted)]
    for s, e in zip(starts, ends, strict=True):
        out[int(g_sorted[s])] = ranked_rows[order[s : min(e, s + k)]]
    return out
