"""Feature view ``user``: daily end-of-day snapshots of each buyer's purchase history.

A purchase event is an order line (checkout) or a purchase of a recommended listing that is not
already an order line of the same user and listing. Each snapshot at ``t`` is an as-of join
(``merge_asof``) of the snapshot grid onto cumulative per-event aggregates, so it sees only
events with ``event_timestamp <= t``.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.features.tables import DAY, utc

#: Defaults of a user with no purchase yet (also used by the training set for missing rows).
USER_DEFAULTS: dict[str, object] = {
    "n_purchases": 0,
    "avg_price_paid": 0.0,
    "last_price_paid": 0.0,
    "days_since_last_purchase": 365.0,
    "top_category_id": -1,
    "recent_listing_ids": [],
    "recent_category_ids": [],
    "region": "unknown",
    "mobile_share": 0.0,
}
MOBILE_DEVICES = ("ios", "android")


def purchase_events(
    orders: pd.DataFrame, purchases: pd.DataFrame, listing_cats: pd.DataFrame
) -> pd.DataFrame:
    """Union of order lines and recommended purchases, with categories.

    Returns
    -------
    pd.DataFrame
        Columns ``user_id, listing_id, price, is_mobile (float, NaN for purchases),
        event_timestamp, category_id, top_category_id``, sorted by time.
    """
    o = orders.assign(is_mobile=orders["device"].isin(MOBILE_DEVICES).astype(float))
    o = o[["user_id", "listing_id", "price", "is_mobile", "event_timestamp"]]
    seen = pd.MultiIndex.from_frame(o[["user_id", "listing_id"]])
    p = purchases[~pd.MultiIndex.from_frame(purchases[["user_id", "listing_id"]]).isin(seen)]
    p = p.assign(is_mobile=np.nan)[
        ["user_id", "listing_id", "price", "is_mobile", "event_timestamp"]
    ]
    ev = pd.concat([o, p], ignore_index=True)
    ev["event_timestamp"] = utc(ev["event_timestamp"])
    ev = ev.merge(listing_cats, on="listing_id", how="left")
    ev["category_id"] = ev["category_id"].fillna(-1).astype(np.int32)
    ev["top_category_id"] = ev["top_category_id"].fillna(-1).astype(np.int32)
    return ev.sort_values(["event_timestamp", "user_id"], kind="stable").reset_index(drop=True)


def _running_state(ev: pd.DataFrame) -> pd.DataFrame:
    """Per event, the user's cumulative state right after it (count, sums, top category, recents)."""
    g = ev.groupby("user_id", sort=False)
    ev = ev.assign(
        n_purchases=g.cumcount() + 1,
        price_sum=g["price"].cumsum(),
        mobile_n=g["is_mobile"].cumsum(),  # NaN-skipping cumulative sum
        device_n=g["is_mobile"].transform(lambda s: s.notna().cumsum()),
    )
    cnt = ev.groupby(["user_id", "top_category_id"], sort=False).cumcount() + 1
    runmax = cnt.groupby(ev["user_id"], sort=False).cummax()
    top = ev["top_category_id"].where(cnt == runmax)
    ev["top_category_id"] = top.groupby(ev["user_id"], sort=False).ffill().astype(np.int32)
    rec_l, rec_c = [], []
    queues: dict[int, tuple[deque, deque]] = {}
    n = contract.RECENT_SEQUENCE_LEN
    for u, lid, cid in zip(
        ev["user_id"].to_numpy(),
        ev["listing_id"].to_numpy(),
        ev["category_id"].to_numpy(),
        strict=True,
    ):
        ql, qc = queues.setdefault(int(u), (deque(maxlen=n), deque(maxlen=n)))
        ql.append(int(lid))
        qc.append(int(cid))
        rec_l.append(list(ql))
        rec_c.append(list(qc))
    ev["recent_listing_ids"] = rec_l
    ev["recent_category_ids"] = rec_c
    return ev


def build_user_view(
    users: pd.DataFrame, events: pd.DataFrame, grid: pd.DatetimeIndex
) -> pd.DataFrame:
    """Daily user snapshots.

    Parameters
    ----------
    users : pd.DataFrame
        ``contract.USERS`` rows.
    events : pd.DataFrame
        From :func:`purchase_events`.
    grid : pd.DatetimeIndex
        Shape ``(D,)`` snapshot times.

    Returns
    -------
    pd.DataFrame
        ``contract.USER_FEATURES`` columns; one row per (user, snapshot) for every user signed
        up (or with a purchase) by the snapshot. Defaults (``USER_DEFAULTS``) where no purchase.
    """
    return user_snapshots(user_spans(users, events), events, grid)


def user_spans(users: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per user signed up or with a purchase: ``user_id, region, device, signup_at,
    first_ts`` (first purchase) and ``since`` (the earlier of the two: snapshots start there).
    ``users``: ``contract.USERS`` rows; ``events``: from :func:`purchase_events`."""
    users = users.assign(signup_at=utc(users["signup_at"]))
    known = pd.DataFrame({"user_id": pd.unique(events["user_id"])})
    first = events.groupby("user_id")["event_timestamp"].min().rename("first_ts").reset_index()
    u = users[["user_id", "region", "device", "signup_at"]].merge(known, on="user_id", how="outer")
    u = u.merge(first, on="user_id", how="left")
    u["since"] = u["signup_at"].fillna(u["first_ts"])
    u["since"] = u[["since", "first_ts"]].min(axis=1)
    return u


def user_snapshots(
    spans: pd.DataFrame, events: pd.DataFrame, grid: pd.DatetimeIndex
) -> pd.DataFrame:
    """``contract.USER_FEATURES`` rows of the users in ``spans`` (from :func:`user_spans`), one
    per user and snapshot time of ``grid`` (shape ``(D,)``) from their ``since`` on, built from
    ``events`` (:func:`purchase_events`, time order; events of other users may be left out:
    each user's columns depend on that user's events only)."""
    snap = spans.merge(pd.DataFrame({"event_timestamp": grid}), how="cross")
    snap = snap[snap["event_timestamp"] >= snap["since"]].sort_values(
        "event_timestamp", kind="stable"
    )
    state = _running_state(events.reset_index(drop=True)).rename(
        columns={"event_timestamp": "last_ts"}
    )
    state = state.drop(columns=["listing_id", "category_id", "is_mobile"]).rename(
        columns={"price": "last_price_paid"}
    )
    out = pd.merge_asof(
        snap,
        state,
        left_on="event_timestamp",
        right_on="last_ts",
        by="user_id",
        allow_exact_matches=True,
    )
    return _finish_user(out)


def _finish_user(out: pd.DataFrame) -> pd.DataFrame:
    has = out["n_purchases"].notna()
    out["n_purchases"] = out["n_purchases"].fillna(0).astype(np.int64)
    out["avg_price_paid"] = np.where(has, out["price_sum"] / out["n_purchases"].clip(lower=1), 0.0)
    out["last_price_paid"] = out["last_price_paid"].fillna(0.0)
    age = (out["event_timestamp"] - out["last_ts"]) / DAY
    out["days_since_last_purchase"] = age.fillna(365.0).clip(upper=365.0).astype(float)
    out["top_category_id"] = out["top_category_id"].fillna(-1).astype(np.int32)
    primary_mobile = out["device"].isin(MOBILE_DEVICES).astype(float)
    share = out["mobile_n"] / out["device_n"].where(out["device_n"] > 0)
    out["mobile_share"] = share.fillna(primary_mobile).astype(float)
    for col in ("recent_listing_ids", "recent_category_ids"):
        out[col] = [v if isinstance(v, list) else [] for v in out[col]]
    out["region"] = out["region"].fillna("unknown")
    cols = contract.field_names(contract.USER_FEATURES)
    return out.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)[cols]
