"""Listing feature snapshot that ships with the FAISS index (serving never reads 300 rows online).

The snapshot holds, per listing, the latest ``listing`` row and its seller's latest ``seller``
row at or before ``as_of``: the same feature views Feast serves, read from the same parquet.
Serving checks its age with ``sla.snapshot_age_ok`` at load and on every refresh; a stale
snapshot makes serving fall back with reason ``stale_features``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from checkout_recs import contract
from checkout_recs.features.sla import SNAPSHOT_SLA, snapshot_age_ok
from checkout_recs.features.tables import utc

__all__ = ["SNAPSHOT_COLUMNS", "export_listing_snapshot", "snapshot_age_ok", "SNAPSHOT_SLA"]

_SELLER_COLS = [
    c
    for c in contract.field_names(contract.SELLER_FEATURES)
    if c not in ("seller_id", "event_timestamp")
]
#: Columns of the snapshot, in order: listing features, seller features, timestamps.
SNAPSHOT_COLUMNS: tuple[str, ...] = (
    *[c for c in contract.field_names(contract.LISTING_FEATURES) if c != "event_timestamp"],
    *_SELLER_COLS,
    "listing_feature_time",
    "seller_feature_time",
    "snapshot_time",
)


def _latest(df: pd.DataFrame, key: str, as_of: pd.Timestamp) -> pd.DataFrame:
    df = df.assign(event_timestamp=utc(df["event_timestamp"]))
    df = df[df["event_timestamp"] <= as_of]
    return df.sort_values("event_timestamp", kind="stable").drop_duplicates(key, keep="last")


def export_listing_snapshot(features_dir: Path, as_of: dt.datetime) -> pd.DataFrame:
    """One row per listing: its latest listing and seller features at or before ``as_of``.

    Parameters
    ----------
    features_dir : Path
        Output of ``build_feature_tables`` (``listing.parquet``, ``seller.parquet``).
    as_of : datetime
        UTC; rows after it are never used.

    Returns
    -------
    pd.DataFrame
        ``SNAPSHOT_COLUMNS``: listing features (incl. ``seller_id``), seller features (NaN
        where the seller has no row yet), ``listing_feature_time`` / ``seller_feature_time``
        (the rows' ``event_timestamp``) and ``snapshot_time`` = the newest
        ``listing_feature_time`` (the data's time, which the SLA is checked against; also in
        ``df.attrs["snapshot_time"]``). Empty (same columns) when no listing row is old enough.
    """
    as_of_t = pd.Timestamp(as_of)
    as_of_t = as_of_t.tz_localize("UTC") if as_of_t.tzinfo is None else as_of_t.tz_convert("UTC")
    lst = _latest(pd.read_parquet(Path(features_dir) / "listing.parquet"), "listing_id", as_of_t)
    sel = _latest(pd.read_parquet(Path(features_dir) / "seller.parquet"), "seller_id", as_of_t)
    lst = lst.rename(columns={"event_timestamp": "listing_feature_time"})
    sel = sel.rename(columns={"event_timestamp": "seller_feature_time"})
    out = lst.merge(sel, on="seller_id", how="left")
    snap_time = out["listing_feature_time"].max() if len(out) else pd.NaT
    out["snapshot_time"] = snap_time
    out = out.sort_values("listing_id").reset_index(drop=True)[list(SNAPSHOT_COLUMNS)]
    out.attrs["snapshot_time"] = None if pd.isna(snap_time) else snap_time.isoformat()
    return out
