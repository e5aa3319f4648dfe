"""Feature views ``listing`` and ``seller``: daily end-of-day snapshots.

Counts are exponentially time-decayed (half-life ``HALF_LIFE_DAYS``) and evaluated at each
snapshot, so a snapshot at ``t`` contains only events at or before ``t``. Smoothed CTR and
conversion use a Beta prior fitted per snapshot (``priors.fit_beta_prior``), so a listing never
shown gets the population's rate rather than 0 or NaN.

``ctr_lift`` and ``cvr_lift`` are the listing's smoothed rates relative to their snapshot's
prior, ``log(rate / prior mean)``: with a few clicks per listing the prior dominates, so
``cvr_smoothed`` (and, once the CTR prior grows strong, ``ctr_smoothed``) is mostly the day's
pooled rate, which moves between days more than between listings; the lift keeps the listing's
own evidence and drops the day's level (0 = the prior, e.g. a listing never shown or clicked).
Same snapshot, same prior: no event after the snapshot enters.

Two listing columns describe the listing's *category* as of the snapshot:
``category_ctr_lift`` (log of the top category's recent smoothed CTR over the recent CTR of all
listings, half-life ``CATEGORY_HALF_LIFE_DAYS``: seasonal swings of a category's demand) and
``price_vs_category`` (log price minus the median log price of the listings of its leaf category
listed by then: cheap or dear for what it is).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.features.priors import (
    DEFAULT_CTR_PRIOR,
    DEFAULT_CVR_PRIOR,
    BetaPrior,
    fit_beta_prior,
    smoothed_rate,
)
from checkout_recs.features.tables import DAY, decayed_daily, epoch_us, utc

HALF_LIFE_DAYS = 14.0
#: Half-life of the category CTR behind ``category_ctr_lift``, days (short: it follows seasons).
CATEGORY_HALF_LIFE_DAYS = 2.0
#: Pseudo-impressions of the pooled CTR added to each category's recent counts.
CATEGORY_PRIOR_VIEWS = 20.0
#: (default prior, least trials of a listing in the fit) of the CTR and conversion priors.
CTR_PRIOR_FIT: tuple[BetaPrior, float] = (DEFAULT_CTR_PRIOR, 5.0)
CVR_PRIOR_FIT: tuple[BetaPrior, float] = (DEFAULT_CVR_PRIOR, 2.0)
#: A seller younger than this is "new" (``seller_is_new``).
NEW_SELLER_DAYS = 30.0
#: Rating of an unrated seller when no seller is rated at all.
DEFAULT_RATING = 4.5


def row_index(ids: pd.Series, keys: pd.Series) -> np.ndarray:
    """Row of each key in ``ids`` (-1 when absent); shape ``(len(keys),)``."""
    pos = pd.Index(ids).get_indexer(keys)
    return np.asarray(pos)


def _expand(
    entities: pd.DataFrame, key: str, since_col: str, grid: pd.DatetimeIndex
) -> pd.DataFrame:
    """One row per (entity, snapshot) for snapshots at or after the entity's ``since_col``."""
    e = entities.reset_index(drop=True).assign(_row=np.arange(len(entities)))
    d = pd.DataFrame({"event_timestamp": grid, "_day": np.arange(len(grid))})
    out = e.merge(d, how="cross")
    return out[out["event_timestamp"] >= out[since_col]].reset_index(drop=True)


def _decayed(
    entity_ids: pd.Series,
    events: pd.DataFrame,
    key: str,
    grid: pd.DatetimeIndex,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    idx = row_index(entity_ids, events[key])
    ok = idx >= 0
    w = None if weights is None else np.asarray(weights)[ok]
    return decayed_daily(
        idx[ok], events.loc[ok, "event_timestamp"], grid, len(entity_ids), HALF_LIFE_DAYS, w
    )


def build_listing_view(
    listings: pd.DataFrame,
    categories: pd.DataFrame,
    impressions: pd.DataFrame,
    clicks: pd.DataFrame,
    purchases: pd.DataFrame,
    grid: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Daily listing snapshots.

    Parameters
    ----------
    listings, categories, impressions, clicks, purchases : pd.DataFrame
        Validated tables in their ``contract`` schemas.
    grid : pd.DatetimeIndex
        Shape ``(D,)`` snapshot times.

    Returns
    -------
    pd.DataFrame
        ``contract.LISTING_FEATURES`` columns, one row per (listing, snapshot at or after
        ``listed_at``). ``views/clicks/purchases_decayed`` are decayed counts; ``ctr_smoothed =
        (clicks + a) / (views + a + b)``, ``cvr_smoothed = (purchases + a') / (clicks + a' + b')``,
        ``ctr_lift = log(ctr_smoothed / (a / (a + b)))`` and ``cvr_lift`` likewise
        (``listing_rates``), with the Beta priors fitted on the listings live at each snapshot.
    """
    lst = listings.assign(listed_at=utc(listings["listed_at"])).reset_index(drop=True)
    top = categories.set_index("category_id")["top_category_id"]
    lst["top_category_id"] = lst["category_id"].map(top).fillna(lst["category_id"]).astype(np.int32)
    views = _decayed(lst["listing_id"], impressions, "listing_id", grid)
    clk = _decayed(lst["listing_id"], clicks, "listing_id", grid)
    buy = _decayed(lst["listing_id"], purchases, "listing_id", grid)
    ctr, cvr, ctr_lift, cvr_lift = (np.zeros_like(views) for _ in range(4))
    for d in range(len(grid)):
        live = (lst["listed_at"] <= grid[d]).to_numpy()
        ctr[:, d], ctr_lift[:, d] = listing_rates(clk[:, d], views[:, d], *CTR_PRIOR_FIT, live)
        cvr[:, d], cvr_lift[:, d] = listing_rates(buy[:, d], clk[:, d], *CVR_PRIOR_FIT, live)
    out = _expand(lst, "listing_id", "listed_at", grid)
    r, d = out["_row"].to_numpy(), out["_day"].to_numpy()
    out["age_days"] = (out["event_timestamp"] - out["listed_at"]) / DAY
    for name, mat in (
        ("views_decayed", views),
        ("clicks_decayed", clk),
        ("purchases_decayed", buy),
        ("ctr_smoothed", ctr),
        ("cvr_smoothed", cvr),
        ("ctr_lift", ctr_lift),
        ("cvr_lift", cvr_lift),
        ("category_ctr_lift", category_ctr_lift(lst, impressions, clicks, grid)),
        ("price_vs_category", price_vs_category(lst, grid)),
    ):
        out[name] = mat[r, d]
    return out.sort_values(["listing_id", "event_timestamp"])[
        contract.field_names(contract.LISTING_FEATURES)
    ]


def listing_rates(
    successes: np.ndarray,
    trials: np.ndarray,
    default: BetaPrior,
    min_trials: float,
    live: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed rate and its log lift over the prior, for one snapshot.

    Parameters
    ----------
    successes, trials : (n,) decayed counts (clicks / views, or purchases / clicks).
    default, min_trials : ``fit_beta_prior``'s (``CTR_PRIOR_FIT``, ``CVR_PRIOR_FIT``).
    live : (n,) bool, listings the prior is fitted on (listed by the snapshot); all when None.

    Returns
    -------
    (rate, lift), float64 (n,) each: ``rate = (s + a) / (n + a + b)`` in (0, 1) and
    ``lift = log(rate / (a / (a + b)))`` (natural log; 0 for a listing without trials).
    """
    s, n = np.asarray(successes, np.float64), np.asarray(trials, np.float64)
    mask = np.ones(len(s), bool) if live is None else np.asarray(live, bool)
    prior = fit_beta_prior(s[mask], n[mask], default, min_trials=min_trials)
    rate = smoothed_rate(s, n, prior)
    return rate, np.log(rate / prior.mean)


def category_ctr_lift(
    lst: pd.DataFrame, impressions: pd.DataFrame, clicks: pd.DataFrame, grid: pd.DatetimeIndex
) -> np.ndarray:
    """log(recent CTR of the listing's top category / recent CTR of all listings), per snapshot.

    Parameters
    ----------
    lst : listings with ``listing_id, top_category_id`` (n rows).
    impressions, clicks : events with ``listing_id, event_timestamp``.
    grid : (D,) snapshot times.

    Returns
    -------
    float64 (n, D): counts decayed with half-life ``CATEGORY_HALF_LIFE_DAYS``; the category rate is
    smoothed towards the pooled one with ``CATEGORY_PRIOR_VIEWS`` pseudo-impressions, so a
    category never shown gets 0 (no lift).
    """
    codes, by_top = category_ctr_lift_by_top(lst, impressions, clicks, grid)
    if not len(by_top):
        return np.zeros((len(lst), len(grid)))
    return by_top[codes]


def category_ctr_lift_by_top(
    lst: pd.DataFrame,
    impressions: pd.DataFrame,
    clicks: pd.DataFrame,
    grid: pd.DatetimeIndex,
    rows_of: Callable[[pd.Series], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`category_ctr_lift` per top category: ``(codes, lift)``, ``codes`` int (n,) the row
    of each listing's top category in ``lift``, float64 (n_top, D); ``lift[codes]`` is
    ``category_ctr_lift``'s matrix. ``lift`` has no rows when there is no listing.
    ``rows_of(listing_ids)``: the row in ``lst`` of each id, -1 when absent (default
    :func:`row_index`, a hash table of ``lst``'s ids)."""
    codes, _ = pd.factorize(lst["top_category_id"])
    n_top = int(codes.max()) + 1 if len(codes) else 0
    rows_of = rows_of or (lambda keys: row_index(lst["listing_id"], keys))

    def decayed(events: pd.DataFrame) -> np.ndarray:
        rows = rows_of(events["listing_id"])
        ok = rows >= 0
        return decayed_daily(
            codes[rows[ok]].astype(np.int64),
            events.loc[ok, "event_timestamp"],
            grid,
            n_top,
            CATEGORY_HALF_LIFE_DAYS,
        )

    if not n_top:
        return codes, np.zeros((0, len(grid)))
    return codes, _ctr_lift(decayed(clicks), decayed(impressions))


def _ctr_lift(clicks: np.ndarray, views: np.ndarray) -> np.ndarray:
    """log(smoothed category CTR / pooled CTR) from (n_top, D) decayed clicks and views."""
    pooled = (clicks.sum(0) + 1.0) / (views.sum(0) + 1.0 / DEFAULT_CTR_PRIOR.mean)  # (D,)
    rate = (clicks + CATEGORY_PRIOR_VIEWS * pooled) / (views + CATEGORY_PRIOR_VIEWS)
    return np.log(rate / pooled)


def price_vs_category(lst: pd.DataFrame, grid: pd.DatetimeIndex) -> np.ndarray:
    """log(price) minus the median log price of the listings of the same leaf category listed at
    or before each snapshot; float64 (n, D) from listings (n rows: ``price`` currency units,
    ``category_id``, ``listed_at`` UTC) and snapshot times (D,). 0 where no listing of the
    category is listed yet."""
    lp = np.log(lst["price"].clip(lower=0.01).to_numpy(np.float64))
    cat = lst["category_id"].to_numpy()
    listed, grid_us = listed_and_grid_us(lst, grid)
    out = np.zeros((len(lst), len(grid)))
    for d, t in enumerate(grid_us):
        out[:, d] = minus_category_median(lp, cat, listed <= t)
    return out


def listed_and_grid_us(lst: pd.DataFrame, grid: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """``lst["listed_at"]`` (n,) and the snapshot times (D,) as int64 microseconds since the
    epoch, so ``listed <= grid_us[d]`` is ``lst["listed_at"] <= grid[d]`` (the listings live at
    snapshot ``d``) without the object arrays of Timestamps a tz-aware ``to_numpy()`` gives
    (~100 bytes a listing, compared one at a time)."""
    return epoch_us(lst["listed_at"]), epoch_us(pd.Series(grid))


def minus_category_median(lp: np.ndarray, cat: np.ndarray, live: np.ndarray) -> np.ndarray:
    """lp (n,) minus the median of ``lp[live]`` within each category (n,); 0 where none is live."""
    med = pd.Series(lp[live]).groupby(cat[live]).median()
    return lp - pd.Series(cat).map(med).fillna(pd.Series(lp)).to_numpy(np.float64)


def snapshot_category_columns(snap: pd.DataFrame) -> pd.DataFrame:
    """``category_ctr_lift`` and ``price_vs_category`` for a one-off snapshot frame (no history).

    For catalogues made as a single snapshot (the 1M-listing benchmark's ``scaled_snapshot``):
    ``snap`` (n rows) with ``price``, ``category_id``, ``top_category_id``, ``views_decayed``,
    ``clicks_decayed``. The same formulas as the daily view, on the snapshot's own decayed
    counts and every listing in it. Returns ``snap`` with the two float64 columns added.
    """
    codes, _ = pd.factorize(snap["top_category_id"])
    n_top = int(codes.max()) + 1 if len(codes) else 0
    c = np.bincount(codes, snap["clicks_decayed"].to_numpy(np.float64), n_top)[:, None]
    v = np.bincount(codes, snap["views_decayed"].to_numpy(np.float64), n_top)[:, None]
    lp = np.log(snap["price"].clip(lower=0.01).to_numpy(np.float64))
    return snap.assign(
        category_ctr_lift=_ctr_lift(c, v)[codes, 0] if n_top else 0.0,
        price_vs_category=minus_category_median(
            lp, snap["category_id"].to_numpy(), np.ones(len(snap), bool)
        ),
    )


def snapshot_rate_columns(snap: pd.DataFrame) -> pd.DataFrame:
    """``ctr_smoothed``, ``cvr_smoothed``, ``ctr_lift``, ``cvr_lift`` for a one-off snapshot frame.

    For catalogues made as a single snapshot (``snapshot_category_columns``' case): ``snap``
    (n rows) with ``views_decayed``, ``clicks_decayed``, ``purchases_decayed``. The daily view's
    formulas (``listing_rates``), the priors fitted on every listing of the snapshot. Returns
    ``snap`` with the four float64 columns added (replaced when present).
    """
    views, clicks, buys = (
        snap[c].to_numpy(np.float64)
        for c in ("views_decayed", "clicks_decayed", "purchases_decayed")
    )
    ctr, ctr_lift = listing_rates(clicks, views, *CTR_PRIOR_FIT)
    cvr, cvr_lift = listing_rates(buys, clicks, *CVR_PRIOR_FIT)
    return snap.assign(ctr_smoothed=ctr, cvr_smoothed=cvr, ctr_lift=ctr_lift, cvr_lift=cvr_lift)


def seller_sales(
    orders: pd.DataFrame, purchases: pd.DataFrame, listings: pd.DataFrame
) -> pd.DataFrame:
    """Sales events (order lines and recommended purchases) with the listing's seller."""
    ev = pd.concat(
        [orders[["listing_id", "event_timestamp"]], purchases[["listing_id", "event_timestamp"]]]
    )
    return ev.merge(listings[["listing_id", "seller_id"]], on="listing_id", how="inner")


def build_seller_view(
    sellers: pd.DataFrame, sales: pd.DataFrame, grid: pd.DatetimeIndex
) -> pd.DataFrame:
    """Daily seller snapshots.

    Returns
    -------
    pd.DataFrame
        ``contract.SELLER_FEATURES`` columns, one row per (seller, snapshot at or after
        ``joined_at``). ``seller_sales_velocity`` is sales/day: the decayed count times the decay
        rate ``ln 2 / HALF_LIFE_DAYS``. An unrated seller gets the mean rating of rated sellers.
    """
    s, prior, vel = seller_inputs(sellers, sales, grid)
    return seller_rows(_expand(s, "seller_id", "joined_at", grid), prior, vel)


def seller_inputs(
    sellers: pd.DataFrame, sales: pd.DataFrame, grid: pd.DatetimeIndex
) -> tuple[pd.DataFrame, float, np.ndarray]:
    """What every seller row needs: the sellers (``joined_at`` in UTC, index 0..n-1), the rating
    prior (mean rating of rated sellers) and the sales velocity, sales/day, float (n, D)."""
    s = sellers.assign(joined_at=utc(sellers["joined_at"])).reset_index(drop=True)
    rated = s["rating"].dropna()
    prior = float(rated.mean()) if len(rated) else DEFAULT_RATING
    vel = _decayed(s["seller_id"], sales, "seller_id", grid) * (np.log(2.0) / HALF_LIFE_DAYS)
    return s, prior, vel


def seller_rows(out: pd.DataFrame, prior: float, vel: np.ndarray) -> pd.DataFrame:
    """``contract.SELLER_FEATURES`` rows of expanded (seller, snapshot) rows ``out`` (with ``_row``
    into ``vel`` and ``_day``), sorted by seller then time; ``prior`` and ``vel`` from
    :func:`seller_inputs`."""
    out["seller_age_days"] = (out["event_timestamp"] - out["joined_at"]) / DAY
    out["seller_rating"] = out["rating"].fillna(prior).astype(float)
    out["seller_is_new"] = (out["seller_age_days"] < NEW_SELLER_DAYS).astype(np.int8)
    out["seller_linked_history"] = out["linked_history"].astype(np.int8)
    out["seller_sales_velocity"] = vel[out["_row"].to_numpy(), out["_day"].to_numpy()]
    return out.sort_values(["seller_id", "event_timestamp"])[
        contract.field_names(contract.SELLER_FEATURES)
    ]
