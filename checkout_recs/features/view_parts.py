"""The daily feature views in bounded memory: each view as a sequence of frames (entity ranges).

``build_listing_view``, ``build_seller_view`` and ``build_user_view`` hold a view's whole table
(one row per entity and snapshot, ``n * D`` rows) several times over while they build it; at 1M
listings and 14 snapshots that is 8 GB. The ``*_view_parts`` functions here give the same rows
as frames of about ``per_chunk`` entities each, in the table's order (entity, then snapshot
time), so ``tables.write_contract_parts`` writes the same file holding one frame at a time.

* listing: the per-snapshot columns that need the whole catalogue of the day (the Beta priors,
  the category medians and CTRs) are computed one snapshot at a time over every listing
  (``tables.decayed_by_day``: the same arithmetic as ``decayed_daily``) and spilled to disk
  (``day_spill.DaySpill``); each range of listings then reads its block back. Memory: the
  listings' columns plus a few ``(n,)`` vectors, and one frame of ``per_chunk * D`` rows.
* seller: the sales velocity matrix is small (``n_sellers * D``); only the expansion to rows
  is chunked.
* user: each range of users is built from its own purchase events (every quantity of the view is
  per user).

Equal, value for value and row for row, to the whole-table functions
(``tests/code/features/test_view_parts.py``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.features.day_spill import DaySpill
from checkout_recs.features.item_views import (
    CTR_PRIOR_FIT,
    CVR_PRIOR_FIT,
    HALF_LIFE_DAYS,
    category_ctr_lift_by_top,
    listed_and_grid_us,
    listing_rates,
    minus_category_median,
    seller_inputs,
    seller_rows,
)
from checkout_recs.features.tables import DAY, decayed_by_day, utc
from checkout_recs.features.user_view import user_snapshots, user_spans

#: Entities per frame by default (x D rows: 350k rows at D = 14; a user row with its lists
#: is ~1 KB in pandas, a listing row ~0.3 KB).
PER_CHUNK = 25_000
#: Listing columns computed per snapshot and spilled (``contract.LISTING_FEATURES`` order).
_DAILY_LISTING = (
    "views_decayed",
    "clicks_decayed",
    "purchases_decayed",
    "ctr_smoothed",
    "cvr_smoothed",
    "ctr_lift",
    "cvr_lift",
    "category_ctr_lift",
    "price_vs_category",
)


def key_ranges(sorted_keys: np.ndarray, per_chunk: int) -> list[tuple[int, int]]:
    """Consecutive ranges ``[a, b)`` of ``sorted_keys`` (shape ``(n,)``, ascending) of about
    ``per_chunk`` rows each (at least one); equal keys are never split between two ranges."""
    n, cuts = len(sorted_keys), [0]
    while cuts[-1] < n:
        nxt = cuts[-1] + max(1, per_chunk)
        if nxt >= n:
            cuts.append(n)
            break
        cuts.append(int(np.searchsorted(sorted_keys, sorted_keys[nxt - 1], side="right")))
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _expand_rows(
    entities: pd.DataFrame, rows: np.ndarray, since_col: str, grid: pd.DatetimeIndex
) -> pd.DataFrame:
    """``item_views._expand`` of the entity rows ``rows`` (positions in ``entities``): one row per
    (entity, snapshot at or after ``since_col``); ``_row`` is the entity's position in
    ``entities``, ``_pos`` its position in ``rows``, ``_day`` the snapshot's index."""
    e = entities.iloc[rows].reset_index(drop=True)
    e = e.assign(_row=np.asarray(rows), _pos=np.arange(len(rows)))
    d = pd.DataFrame({"event_timestamp": grid, "_day": np.arange(len(grid))})
    out = e.merge(d, how="cross")
    return out[out["event_timestamp"] >= out[since_col]].reset_index(drop=True)


def sorted_rows_of(sorted_ids: np.ndarray, order: np.ndarray, keys: pd.Series) -> np.ndarray:
    """Row of each key among the entities, -1 when absent: ``item_views.row_index`` by a binary
    search in the sorted ids instead of a hash table of the catalogue. ``sorted_ids`` (n,) are
    the (unique) ids in ascending order, ``order`` (n,) their rows; int64 of shape
    ``(len(keys),)``."""
    k = keys.to_numpy()
    if not len(sorted_ids):
        return np.full(len(k), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, k).clip(max=len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == k, order[pos], -1).astype(np.int64)


def _decayed_days(
    rows: np.ndarray, events: pd.DataFrame, n: int, grid: pd.DatetimeIndex
) -> Iterator[np.ndarray]:
    """``item_views._decayed`` one snapshot at a time (``(n,)`` float64 per day) of the events
    whose entity rows are ``rows`` (-1: not an entity; :func:`sorted_rows_of`)."""
    ok = rows >= 0
    yield from decayed_by_day(rows[ok], events.loc[ok, "event_timestamp"], grid, n, HALF_LIFE_DAYS)


def _spill_listing_days(
    lst: pd.DataFrame,
    events: dict[str, pd.DataFrame],
    grid: pd.DatetimeIndex,
    spill: DaySpill,
    sorted_ids: np.ndarray,
) -> None:
    """Every ``_DAILY_LISTING`` column of every listing, snapshot by snapshot, into ``spill``
    (``sorted_ids``: ``lst``'s ids in ``spill.order``)."""

    def rows_of(keys: pd.Series) -> np.ndarray:
        return sorted_rows_of(sorted_ids, spill.order, keys)

    codes, by_top = category_ctr_lift_by_top(
        lst, events["impressions"], events["clicks"], grid, rows_of
    )
    lp = np.log(lst["price"].clip(lower=0.01).to_numpy(np.float64))
    cat = lst["category_id"].to_numpy()
    listed, grid_us = listed_and_grid_us(lst, grid)
    counts = (
        _decayed_days(rows_of(events[name]["listing_id"]), events[name], len(lst), grid)
        for name in ("impressions", "clicks", "purchases")
    )
    for d, (views, clk, buy) in enumerate(zip(*counts, strict=True)):
        # each column is spilled as soon as it is computed: a few (n,) vectors alive at once
        live = listed <= grid_us[d]
        for name, col in zip(_DAILY_LISTING[:3], (views, clk, buy), strict=True):
            spill.put(name, d, col)
        rate, lift = listing_rates(clk, views, *CTR_PRIOR_FIT, live)
        spill.put("ctr_smoothed", d, rate)
        spill.put("ctr_lift", d, lift)
        rate, lift = listing_rates(buy, clk, *CVR_PRIOR_FIT, live)
        spill.put("cvr_smoothed", d, rate)
        spill.put("cvr_lift", d, lift)
        del rate, lift, views, clk, buy
        cat_lift = by_top[codes, d] if len(by_top) else np.zeros(len(lst))
        spill.put("category_ctr_lift", d, cat_lift)
        del cat_lift
        spill.put("price_vs_category", d, minus_category_median(lp, cat, live))


def listing_view_parts(
    listings: pd.DataFrame,
    categories: pd.DataFrame,
    impressions: pd.DataFrame,
    clicks: pd.DataFrame,
    purchases: pd.DataFrame,
    grid: pd.DatetimeIndex,
    per_chunk: int = PER_CHUNK,
    spill_dir: Path | None = None,
) -> Iterator[pd.DataFrame]:
    """``build_listing_view``'s rows as frames of about ``per_chunk`` listings each, in its
    order (``listing_id``, then ``event_timestamp``), ``contract.LISTING_FEATURES`` columns.

    Parameters
    ----------
    listings, categories : validated tables (listings: at least ``listing_id, seller_id,
        category_id, region, price, take_rate, listed_at``).
    impressions, clicks, purchases : events with ``listing_id`` and ``event_timestamp`` (UTC).
    grid : (D,) snapshot times.
    spill_dir : where the per-snapshot columns are spilled (a temporary folder in it, removed
        at the end; ``8 * 9 * n * D`` bytes); default the system's temporary folder.
    """
    lst = listings.assign(listed_at=utc(listings["listed_at"])).reset_index(drop=True)
    del listings  # freed here when the caller handed it over (``build_feature_tables``)
    top = categories.set_index("category_id")["top_category_id"]
    lst["top_category_id"] = lst["category_id"].map(top).fillna(lst["category_id"]).astype(np.int32)
    order = np.argsort(lst["listing_id"].to_numpy(), kind="stable")
    events = {"impressions": impressions, "clicks": clicks, "purchases": purchases}
    cols = contract.field_names(contract.LISTING_FEATURES)
    with tempfile.TemporaryDirectory(prefix="listing-days-", dir=spill_dir) as tmp:
        spill = DaySpill(Path(tmp), order, len(grid))
        sorted_ids = lst["listing_id"].to_numpy()[order]
        _spill_listing_days(lst, events, grid, spill, sorted_ids)
        for a, b in key_ranges(sorted_ids, per_chunk):
            out = _expand_rows(lst, order[a:b], "listed_at", grid)
            p, d = out["_pos"].to_numpy(), out["_day"].to_numpy()
            out["age_days"] = (out["event_timestamp"] - out["listed_at"]) / DAY
            for name in _DAILY_LISTING:
                out[name] = spill.block(name, a, b)[p, d]
            yield out.sort_values(["listing_id", "event_timestamp"])[cols]


def seller_view_parts(
    sellers: pd.DataFrame,
    sales: pd.DataFrame,
    grid: pd.DatetimeIndex,
    per_chunk: int = PER_CHUNK,
) -> Iterator[pd.DataFrame]:
    """``build_seller_view``'s rows as frames of about ``per_chunk`` sellers each, in its order
    (``seller_id``, then ``event_timestamp``), ``contract.SELLER_FEATURES`` columns; ``sales``
    from ``item_views.seller_sales``."""
    s, prior, vel = seller_inputs(sellers, sales, grid)
    order = np.argsort(s["seller_id"].to_numpy(), kind="stable")
    for a, b in key_ranges(s["seller_id"].to_numpy()[order], per_chunk):
        yield seller_rows(_expand_rows(s, order[a:b], "joined_at", grid), prior, vel)


def user_view_parts(
    users: pd.DataFrame,
    events: pd.DataFrame,
    grid: pd.DatetimeIndex,
    per_chunk: int = PER_CHUNK,
) -> Iterator[pd.DataFrame]:
    """``build_user_view``'s rows as frames of about ``per_chunk`` users each, in its order
    (``user_id``, then ``event_timestamp``), ``contract.USER_FEATURES`` columns; ``events``
    from ``user_view.purchase_events`` (sorted by time). Each range of users is built from its
    users' events only: every column of the view is a function of one user's events."""
    u = user_spans(users, events).sort_values("user_id", kind="stable").reset_index(drop=True)
    ev_user = events["user_id"].to_numpy()
    for a, b in key_ranges(u["user_id"].to_numpy(), per_chunk):
        part = u.iloc[a:b]
        yield user_snapshots(part, events[np.isin(ev_user, part["user_id"].to_numpy())], grid)
