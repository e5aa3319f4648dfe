"""On-demand features: computed at request time, defined once for training and serving.

Two families:

* request features (``REQUEST_FEATURES``): describe the checkout itself (time, device, basket);
  one value each per request, from :func:`request_features`.
* interaction features (``INTERACTION_FEATURES``): one value per (request, candidate item),
  from :func:`interaction_features` with lookup tables prepared once in
  :class:`InteractionTables` (category-pair complement strengths, item co-purchase strengths).

The training set (``features.training``) calls exactly these functions per logged request, and
the serving transformer calls them per live request, so the two cannot drift apart. Times are
UTC: ``hour_of_day`` is the UTC hour.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

REQUEST_FEATURES: tuple[str, ...] = (
    "hour_of_day",  # 0..23, UTC
    "day_of_week",  # 0 = Monday .. 6
    "is_mobile",  # 1.0 on ios/android
    "basket_size",  # number of listings in the checkout
    "basket_price",  # sum of basket prices, currency units
    "basket_max_price",  # most expensive basket item, currency units (0 for an empty basket)
    "basket_n_categories",  # distinct leaf categories in the basket
)

INTERACTION_FEATURES: tuple[str, ...] = (
    "complement_strength",  # log1p(sum over basket categories of co-purchase strength(b -> item))
    "complement_max",  # log1p(max over basket categories of strength(b -> item))
    "co_purchase_strength",  # log1p(sum over basket listings of strength(listing -> item))
    "price_ratio",  # item price / mean basket price, clipped to [0, 100]; 1 for an empty basket
    "same_category",  # 1.0 when the item's leaf category is in the basket
    "same_top_category",  # 1.0 when the item's top category is in the basket
)

MOBILE_DEVICES = ("ios", "android")
PRICE_RATIO_CAP = 100.0
#: Category ids below this are looked up through a dense table (one gather per call).
LUT_MAX_ID = 1_000_000


def request_features(
    basket_prices: np.ndarray, basket_category_ids: np.ndarray, ts: dt.datetime, device: str
) -> dict[str, float]:
    """Features of one checkout request.

    Parameters
    ----------
    basket_prices : np.ndarray
        Shape ``(k,)``, currency units; ``k = 0`` for an empty basket.
    basket_category_ids : np.ndarray
        Shape ``(k,)``, leaf category ids.
    ts : datetime
        Checkout time (timezone-aware; naive is taken as UTC).
    device : str
        One of ``contract.DEVICES``.

    Returns
    -------
    dict[str, float]
        One float per name in ``REQUEST_FEATURES``.
    """
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    prices = np.asarray(basket_prices, dtype=np.float64)
    return {
        "hour_of_day": float(t.hour),
        "day_of_week": float(t.dayofweek),
        "is_mobile": float(device in MOBILE_DEVICES),
        "basket_size": float(prices.size),
        "basket_price": float(prices.sum()),
        "basket_max_price": float(prices.max()) if prices.size else 0.0,
        "basket_n_categories": float(np.unique(np.asarray(basket_category_ids)).size),
    }


@dataclass(frozen=True)
class Basket:
    """The checkout's listings; every array has shape ``(k,)``, ``k >= 0``."""

    listing_ids: np.ndarray
    category_ids: np.ndarray
    top_category_ids: np.ndarray
    prices: np.ndarray


class InteractionTables:
    """Lookup tables for interaction features, built once (per bundle load or per training day).

    Parameters
    ----------
    category_pairs : pd.DataFrame
        ``category_a, category_b, co_purchase_strength`` (one row per pair; the caller picks the
        snapshot, see :meth:`from_frames`).
    co_purchase : pd.DataFrame
        ``listing_a, listing_b, strength`` (directed: basket listing ``a``, candidate ``b``).
    """

    def __init__(self, category_pairs: pd.DataFrame, co_purchase: pd.DataFrame) -> None:
        cats = np.union1d(
            category_pairs["category_a"].to_numpy(), category_pairs["category_b"].to_numpy()
        )
        self.cat_ids = cats.astype(np.int64)
        # one extra row/column (index n) for unknown categories: strength 0
        self.cat_matrix = np.zeros((cats.size + 1, cats.size + 1), dtype=np.float64)
        # dense id -> row table when ids are small non-negative ints (the usual taxonomy);
        # its last slot (also reached by id -1 and out-of-range ids) is the unknown row
        self._lut: np.ndarray | None = None
        if cats.size == 0 or (cats.min() >= 0 and cats.max() < LUT_MAX_ID):
            top = int(cats.max()) + 1 if cats.size else 0
            self._lut = np.full(top + 1, cats.size, dtype=np.int64)
            self._lut[self.cat_ids] = np.arange(cats.size)
        a = self.category_index(category_pairs["category_a"].to_numpy())
        b = self.category_index(category_pairs["category_b"].to_numpy())
        np.add.at(
            self.cat_matrix,
            (a, b),
            category_pairs["co_purchase_strength"].to_numpy(dtype=np.float64),
        )
        co = co_purchase.groupby(["listing_a", "listing_b"], as_index=False)["strength"].sum()
        co = co.sort_values(["listing_a", "listing_b"], kind="stable")
        heads, starts = np.unique(co["listing_a"].to_numpy(np.int64), return_index=True)
        ends = np.append(starts[1:], len(co)) if len(starts) else starts
        self.co_rows = {
            int(a): (int(lo), int(hi)) for a, lo, hi in zip(heads, starts, ends, strict=True)
        }
        self.co_b = co["listing_b"].to_numpy(np.int64)
        self.co_s = co["strength"].to_numpy(np.float64)

    @classmethod
    def from_frames(
        cls,
        category_pairs: pd.DataFrame,
        co_purchase: pd.DataFrame,
        as_of: pd.Timestamp | None = None,
    ) -> InteractionTables:
        """Tables from the labels' daily snapshots, as of ``as_of``.

        Parameters
        ----------
        category_pairs : pd.DataFrame
            ``contract.CATEGORY_PAIR_FEATURES`` rows (``features/category_pair.parquet``).
        co_purchase : pd.DataFrame
            ``listing_a, listing_b, strength, event_timestamp`` (``labels/co_purchase_items.parquet``).
        as_of : Timestamp, optional
            Each table is cut to its latest snapshot with ``event_timestamp <= as_of`` (the
            newest snapshot when None). A table without ``event_timestamp`` is used whole.

        Returns
        -------
        InteractionTables
            Empty lookups (all strengths 0) when no snapshot is old enough.
        """
        return cls(_latest_snapshot(category_pairs, as_of), _latest_snapshot(co_purchase, as_of))

    def category_index(self, ids: np.ndarray) -> np.ndarray:
        """Row of each category id in ``cat_matrix``; unknown ids map to the all-zero last row."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._lut is not None:
            return self._lut[np.clip(ids, -1, self._lut.size - 1)]
        n = self.cat_ids.size
        if n == 0:
            return np.zeros(ids.shape, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.cat_ids, ids), n - 1)
        return np.where(self.cat_ids[pos] == ids, pos, n)

    def co_purchase_sum(self, basket_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Sum over basket listings of strength(basket listing -> item); shape ``(n_items,)``."""
        out = np.zeros(len(item_ids), dtype=np.float64)
        for a in basket_ids:
            span = self.co_rows.get(int(a))
            if span is None:
                continue
            b, s = self.co_b[span[0] : span[1]], self.co_s[span[0] : span[1]]
            pos = np.minimum(np.searchsorted(b, item_ids), b.size - 1)
            out += np.where(b[pos] == item_ids, s[pos], 0.0)
        return out


def _latest_snapshot(df: pd.DataFrame, as_of: pd.Timestamp | None) -> pd.DataFrame:
    """Rows of the newest snapshot (``event_timestamp``) at or before ``as_of``."""
    if "event_timestamp" not in df.columns or df.empty:
        return df
    ts = pd.to_datetime(df["event_timestamp"], utc=True)
    eligible = ts if as_of is None else ts[ts <= pd.Timestamp(as_of)]
    if eligible.empty:
        return df.iloc[:0]
    return df[ts == eligible.max()]


def _member(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """1.0 where ``values[i]`` is in ``pool``; shape of ``values`` (pool: a basket, a few ids)."""
    values, pool = np.asarray(values), np.asarray(pool)
    if pool.size > 8:
        return np.isin(values, pool).astype(np.float64)
    out = np.zeros(values.shape, dtype=bool)
    for p in pool:
        out |= values == p
    return out.astype(np.float64)


def interaction_features(
    basket: Basket,
    item_listing_ids: np.ndarray,
    item_category_ids: np.ndarray,
    item_top_category_ids: np.ndarray,
    item_prices: np.ndarray,
    tables: InteractionTables,
) -> dict[str, np.ndarray]:
    """Request x item features for ``n`` candidate items.

    Parameters
    ----------
    basket : Basket
        The checkout (arrays of shape ``(k,)``, ``k >= 0``).
    item_listing_ids, item_category_ids, item_top_category_ids, item_prices : np.ndarray
        Shape ``(n,)`` each; prices in currency units.
    tables : InteractionTables
        Prepared lookups.

    Returns
    -------
    dict[str, np.ndarray]
        One float64 array of shape ``(n,)`` per name in ``INTERACTION_FEATURES``; unknown
        categories and listings contribute 0 strength.
    """
    item_ids = np.asarray(item_listing_ids, dtype=np.int64)
    n = item_ids.size
    ic = tables.category_index(item_category_ids)
    bc = tables.category_index(basket.category_ids)
    strength = tables.cat_matrix[bc][:, ic] if bc.size else np.zeros((1, n))  # (k, n)
    total, peak = strength.sum(axis=0), strength.max(axis=0)
    prices = np.asarray(item_prices, dtype=np.float64)
    mean_basket = float(np.mean(basket.prices)) if len(basket.prices) else 0.0
    ratio = prices / mean_basket if mean_basket > 0 else np.ones(n)
    return {
        "complement_strength": np.log1p(total),
        "complement_max": np.log1p(peak),
        "co_purchase_strength": np.log1p(tables.co_purchase_sum(basket.listing_ids, item_ids)),
        "price_ratio": np.clip(ratio, 0.0, PRICE_RATIO_CAP),
        "same_category": _member(item_category_ids, basket.category_ids),
        "same_top_category": _member(item_top_category_ids, basket.top_category_ids),
    }
