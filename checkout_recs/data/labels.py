"""``build_labels``: click/purchase labels per impression, interactions, co-purchases, sequences.

Output (``out_dir``)::

    impressions_labelled.parquet  contract.LABELLED_IMPRESSIONS: clicked, purchased (a purchase of the
                                  same user and listing within ``purchase_window_s`` after the click),
                                  price and take rate of the listing, propensities carried through
    interactions.parquet          user_id, listing_id, event_timestamp, kind in {order, click, purchase}
    co_purchase_items.parquet     listing_a, listing_b, strength, event_timestamp (daily snapshots)
    category_pairs.parquet        contract.CATEGORY_PAIR_FEATURES (daily snapshots)
    user_sequences.parquet        user_id, listing_ids list<int64>, timestamps list<timestamp>
    negatives.parquet             user_id, listing_id (a positive: order, click or purchase),
                                  negative_listing_id, event_timestamp: ``negatives_per_positive``
                                  listings of the user's region already listed at the positive's time
                                  (uniform, seeded; never the positive itself) for retrieval training

Co-purchase events: one user buys ``a`` (an order line or a purchase) at ``ta`` and then ``b`` at
``tb`` with ``ta <= tb <= ta + co_purchase_window_days`` (``a != b``; lines of one basket count in
both directions). Each event, stamped ``tb``, adds ``2 ** (-(T - tb) / half_life)`` to the pair's
strength at a snapshot time ``T``. Snapshots are taken at the end of each day (``T`` = next
midnight, UTC) and use only events with ``tb <= T``: point-in-time correct by construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from checkout_recs import contract
from checkout_recs.data.ingest import read_validated

INTERACTIONS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("event_timestamp", contract.TS, nullable=False),
        pa.field("kind", pa.string(), nullable=False),
    ]
)
CO_PURCHASE_ITEMS = pa.schema(
    [
        pa.field("listing_a", pa.int64(), nullable=False),
        pa.field("listing_b", pa.int64(), nullable=False),
        pa.field("strength", pa.float64(), nullable=False),
        pa.field("event_timestamp", contract.TS, nullable=False),
    ]
)
NEGATIVES = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("negative_listing_id", pa.int64(), nullable=False),
        pa.field("event_timestamp", contract.TS, nullable=False),
    ]
)
USER_SEQUENCES = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("listing_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("timestamps", pa.list_(contract.TS), nullable=False),
    ]
)


class LabelConfig(BaseModel):
    """Label windows and decay."""

    purchase_window_s: int = Field(
        default=86_400, gt=0, description="Purchase attributed to a click within, s."
    )
    co_purchase_window_days: float = Field(
        default=7.0, gt=0, description="Max gap between a and b, days."
    )
    half_life_days: float = Field(
        default=7.0, gt=0, description="Half-life of co-purchase strength, days."
    )
    min_strength: float = Field(
        default=0.01, ge=0, description="Snapshot rows below this are dropped."
    )
    negatives_per_positive: int = Field(
        default=4, ge=0, description="Sampled negatives per positive interaction."
    )
    seed: int = Field(default=0, description="Seed of the negative sampling.")


class LabelSummary(BaseModel):
    """Rows written per output and the label rates."""

    rows: dict[str, int]
    click_rate: float
    purchase_rate: float
    out_dir: str


def label_impressions(
    imp: pd.DataFrame,
    clicks: pd.DataFrame,
    purchases: pd.DataFrame,
    listings: pd.DataFrame,
    window_s: int,
) -> pd.DataFrame:
    """Impressions (n rows) + ``clicked``, ``purchased``, ``price``, ``take_rate`` (n rows, same order)."""
    first_click = clicks.groupby(["request_id", "listing_id"], as_index=False)[
        "event_timestamp"
    ].min()
    df = imp.merge(
        first_click.rename(columns={"event_timestamp": "_click_ts"}),
        on=["request_id", "listing_id"],
        how="left",
    )
    cand = df.loc[
        df["_click_ts"].notna(), ["request_id", "slot", "user_id", "listing_id", "_click_ts"]
    ]
    cand = cand.merge(
        purchases[["user_id", "listing_id", "event_timestamp"]], on=["user_id", "listing_id"]
    )
    gap = (cand["event_timestamp"] - cand["_click_ts"]).dt.total_seconds()
    bought = cand.loc[(gap >= 0) & (gap <= window_s), ["request_id", "slot"]].drop_duplicates()
    bought["purchased"] = 1
    df = df.merge(bought, on=["request_id", "slot"], how="left")
    df["clicked"] = df["_click_ts"].notna().astype("int8")
    df["purchased"] = df["purchased"].fillna(0).astype("int8")
    df = df.merge(listings[["listing_id", "price", "take_rate"]], on="listing_id", how="left")
    return df[contract.field_names(contract.LABELLED_IMPRESSIONS)]


def interactions(
    orders: pd.DataFrame, clicks: pd.DataFrame, purchases: pd.DataFrame
) -> pd.DataFrame:
    """Orders, clicks and purchases as (user_id, listing_id, event_timestamp, kind), time-sorted."""
    cols = ["user_id", "listing_id", "event_timestamp"]
    parts = [
        orders[cols].assign(kind="order"),
        clicks[cols].assign(kind="click"),
        purchases[cols].assign(kind="purchase"),
    ]
    df = pd.concat(parts, ignore_index=True)
    return df.sort_values(
        ["event_timestamp", "user_id", "listing_id", "kind"], kind="stable"
    ).reset_index(drop=True)


def co_purchase_events(buys: pd.DataFrame, window_days: float) -> pd.DataFrame:
    """(a, b, event_timestamp) pairs from buys (user_id, listing_id, event_timestamp); see module doc."""
    b = buys[["user_id", "listing_id", "event_timestamp"]]
    pairs = b.merge(b, on="user_id", suffixes=("_a", "_b"))
    gap = pairs["event_timestamp_b"] - pairs["event_timestamp_a"]
    keep = (
        (gap >= pd.Timedelta(0))
        & (gap <= pd.Timedelta(days=window_days))
        & (pairs["listing_id_a"] != pairs["listing_id_b"])
    )
    out = pairs.loc[keep, ["listing_id_a", "listing_id_b", "event_timestamp_b"]]
    return out.set_axis(["a", "b", "event_timestamp"], axis=1).reset_index(drop=True)


def decayed_snapshots(
    events: pd.DataFrame, half_life_days: float, min_strength: float
) -> pd.DataFrame:
    """Daily decayed counts per (a, b): events (a, b, event_timestamp) -> (a, b, strength, event_timestamp).

    A row stamped ``T`` (a midnight, UTC) sums ``2 ** (-(T - t) / half_life)`` over events with ``t <= T``.
    Returns an empty frame (same columns) when there are no events.
    """
    cols = ["a", "b", "strength", "event_timestamp"]
    if events.empty:
        return pd.DataFrame({c: [] for c in cols})
    t = events["event_timestamp"]
    snaps = pd.date_range(
        t.min().floor("D") + pd.Timedelta(days=1),
        t.max().floor("D") + pd.Timedelta(days=1),
        freq="D",
    )
    codes, uniq = pd.factorize(pd.MultiIndex.from_frame(events[["a", "b"]]))
    age_days = (snaps.values[None, :] - t.values[:, None]) / np.timedelta64(1, "D")  # (E, D)
    w = np.where(age_days >= 0, np.exp2(-np.maximum(age_days, 0) / half_life_days), 0.0)
    strength = np.zeros((len(uniq), len(snaps)))
    np.add.at(strength, codes, w)
    pi, di = np.nonzero(strength >= max(min_strength, 1e-12))
    ab = uniq.to_frame(index=False).to_numpy()
    return pd.DataFrame(
        {"a": ab[pi, 0], "b": ab[pi, 1], "strength": strength[pi, di], "event_timestamp": snaps[di]}
    )


def _instants(times: pd.Series) -> np.ndarray:
    """datetime64[ns] (n,) of a datetime column, tz-aware (converted to UTC) or naive (taken as
    UTC): ordered as the timestamps are, without the object array of ``Timestamp``s that
    ``to_numpy()`` makes of a tz-aware column (~100 bytes a row)."""
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.to_numpy("datetime64[ns]")


def negative_samples(
    positives: pd.DataFrame, listings: pd.DataFrame, users: pd.DataFrame, k: int, seed: int
) -> pd.DataFrame:
    """``k`` negatives per positive, drawn among listings of the user's region listed at or before it.

    Parameters
    ----------
    positives : (n rows) user_id, listing_id, event_timestamp.
    listings : listing_id, region, listed_at.   users : user_id, region.
    k : negatives per positive.   seed : sampling seed.

    Returns
    -------
    (<= n * k rows) user_id, listing_id, negative_listing_id, event_timestamp; positives with no
    earlier listing in their region get none.
    """
    cols = ["user_id", "listing_id", "negative_listing_id", "event_timestamp"]
    rng = np.random.default_rng(seed)
    pos = positives.merge(users[["user_id", "region"]], on="user_id", how="inner")
    out = []
    for region, group in pos.groupby("region", sort=True):
        cand = listings[listings["region"] == region].sort_values(["listed_at", "listing_id"])
        ids, times = cand["listing_id"].to_numpy(), _instants(cand["listed_at"])
        n_ok = np.searchsorted(times, _instants(group["event_timestamp"]), side="right")
        idx = (rng.random((len(group), k)) * n_ok[:, None]).astype(np.int64)
        neg = (
            ids[np.minimum(idx, max(len(ids) - 1, 0))]
            if len(ids)
            else np.zeros((len(group), k), np.int64)
        )
        same = neg == group["listing_id"].to_numpy()[:, None]
        alt = (
            ids[np.where(idx + 1 < n_ok[:, None], idx + 1, np.maximum(idx - 1, 0))]
            if len(ids)
            else neg
        )
        neg = np.where(same, alt, neg)
        keep = (n_ok[:, None] > 0) & (neg != group["listing_id"].to_numpy()[:, None])
        r, c = np.nonzero(keep)
        out.append(
            pd.DataFrame(
                {
                    "user_id": group["user_id"].to_numpy()[r],
                    "listing_id": group["listing_id"].to_numpy()[r],
                    "negative_listing_id": neg[r, c],
                    "event_timestamp": group["event_timestamp"].to_numpy()[r],
                }
            )
        )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame({c: [] for c in cols})


def user_sequences(buys: pd.DataFrame) -> pd.DataFrame:
    """Per user, the listings bought (orders and purchases), oldest first, with their times."""
    b = buys.sort_values(["user_id", "event_timestamp", "listing_id"], kind="stable")
    g = b.groupby("user_id", sort=True)
    return pd.DataFrame(
        {
            "user_id": list(g.groups.keys()),
            "listing_ids": g["listing_id"].agg(list).to_list(),
            "timestamps": g["event_timestamp"].agg(list).to_list(),
        }
    )


#: The columns ``build_labels`` reads of the tables it does not read whole.
_LABEL_COLUMNS = {
    "listings": ["listing_id", "price", "take_rate", "category_id", "region", "listed_at"],
    "users": ["user_id", "region"],
}


def build_labels(
    validated_dir: Path, out_dir: Path, cfg: LabelConfig | None = None
) -> LabelSummary:
    """Write every label table of the module docstring from an ingested folder.

    Parameters
    ----------
    validated_dir : an ingested folder (or its ``validated/`` child).
    out_dir : folder for the label tables (created).
    cfg : windows and decay; defaults when None.

    Returns
    -------
    LabelSummary (rows per table, click rate and purchase rate of impressions; 0.0 when none).
    """
    cfg, out = cfg or LabelConfig(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = {  # of listings and users only the columns read below: not the titles of every listing
        n: read_validated(Path(validated_dir), n, _LABEL_COLUMNS.get(n))
        for n in ("listings", "users", "orders", "impressions", "clicks", "purchases")
    }
    rows: dict[str, int] = {}

    def emit(name: str, frame: pd.DataFrame, schema: pa.Schema) -> None:
        """Write one label table as soon as it is built (the others are not held beside it)."""
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        pq.write_table(table, out / f"{name}.parquet")
        rows[name] = table.num_rows

    lab = label_impressions(
        t.pop("impressions"), t["clicks"], t["purchases"], t["listings"], cfg.purchase_window_s
    )
    emit("impressions_labelled", lab, contract.LABELLED_IMPRESSIONS)
    n = max(len(lab), 1)
    click_rate, purchase_rate = float(lab["clicked"].sum() / n), float(lab["purchased"].sum() / n)
    del lab
    inter = interactions(t.pop("orders"), t.pop("clicks"), t.pop("purchases"))
    emit("interactions", inter, INTERACTIONS)
    buys = inter[inter["kind"] != "click"]
    events = co_purchase_events(buys, cfg.co_purchase_window_days)
    items = decayed_snapshots(events, cfg.half_life_days, cfg.min_strength)
    emit(
        "co_purchase_items",
        items.set_axis(["listing_a", "listing_b", "strength", "event_timestamp"], axis=1),
        CO_PURCHASE_ITEMS,
    )
    del items
    cat_of = t["listings"].set_index("listing_id")["category_id"]
    cat_events = pd.DataFrame(
        {
            "a": events["a"].map(cat_of).to_numpy(),
            "b": events["b"].map(cat_of).to_numpy(),
            "event_timestamp": events["event_timestamp"],
        }
    )
    del events, cat_of
    cats = decayed_snapshots(cat_events, cfg.half_life_days, cfg.min_strength)
    emit(
        "category_pairs",
        cats.set_axis(contract.field_names(contract.CATEGORY_PAIR_FEATURES), axis=1),
        contract.CATEGORY_PAIR_FEATURES,
    )
    del cats, cat_events
    emit("user_sequences", user_sequences(buys), USER_SEQUENCES)
    del buys
    emit(
        "negatives",
        negative_samples(inter, t["listings"], t["users"], cfg.negatives_per_positive, cfg.seed),
        NEGATIVES,
    )
    return LabelSummary(
        rows=rows,
        click_rate=click_rate,
        purchase_rate=purchase_rate,
        out_dir=str(out),
    )
