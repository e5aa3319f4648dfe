"""Reading the training stage's inputs from the working folders (labels/, features/, validated/).

Feature tables hold daily snapshots (``event_timestamp``); the models want the latest row per
entity. Listing content (title) lives in the validated ``listings`` table, so the listing
snapshot joins validated listings with the latest listing and seller features; it reads those
views a key range at a time (``features.view_latest.latest_rows``), never whole.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from checkout_recs.features.view_latest import latest_rows

#: The validated listings' columns the snapshot takes (listing content, not features).
_CONTENT = ("title", "quantity", "listed_at")


def read_table(path: Path) -> pd.DataFrame:
    """Read a parquet file or a folder of parquet parts; raises FileNotFoundError when absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing input table: {path}")
    return pd.read_parquet(path)


def read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """The ``columns`` a parquet file or folder of parts holds (in that order), not the others;
    raises FileNotFoundError when absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing input table: {path}")
    names = ds.dataset(path, format="parquet", partitioning="hive").schema.names
    return pd.read_parquet(path, columns=[c for c in columns if c in names])


def latest_per_entity(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """The newest row (by ``event_timestamp`` when present) of each ``key``."""
    if "event_timestamp" in frame:
        frame = frame.sort_values("event_timestamp", kind="stable")
    return frame.drop_duplicates(key, keep="last").reset_index(drop=True)


def left_join_columns(frame: pd.DataFrame, right: pd.DataFrame, key: str) -> None:
    """Append ``right``'s columns (but ``key``) to ``frame`` in place, row by row on ``key``:
    ``frame.merge(right, on=key, how="left")``'s values and dtypes (a key ``right`` lacks gets
    missing values, which turns integer columns to float64 and booleans to object, as the merge
    does) and its row order, without copying ``frame``'s columns. ``right``'s ``key`` must be
    unique (many-to-one); (n,) rows in, the same n rows out."""
    clash = sorted(set(right.columns).intersection(frame.columns) - {key})
    if clash:
        raise ValueError(f"both frames hold {clash}: a merge would suffix them, not join them")
    aligned = right.set_index(key).reindex(pd.Index(frame[key]))
    aligned.index = frame.index
    for col in aligned.columns:
        frame[col] = aligned[col]


def find_validated_listings(*roots: Path) -> Path | None:
    """Locate the validated ``listings`` table near the given working folders, or None."""
    for root in roots:
        root = Path(root)
        for cand in (
            root / "listing_snapshot.parquet",
            root / "validated" / "listings",
            root.parent / "ingested" / "validated" / "listings",
            root.parent / "validated" / "listings",
        ):
            if cand.exists():
                return cand
    return None


def listing_snapshot(
    features_dir: Path, listings: pd.DataFrame | None = None, labels_dir: Path | None = None
) -> pd.DataFrame:
    """One row per listing: content (title, category, price, region) + latest listing and seller
    features.

    Parameters
    ----------
    features_dir : folder with ``listing.parquet`` and ``seller.parquet`` (contract views).
    listings : validated listings frame (``contract.LISTINGS``), optional; located on disk
        next to ``features_dir`` / ``labels_dir`` when None. Without it titles are empty.

    Returns
    -------
    DataFrame with ``listing_id, seller_id, category_id, top_category_id, region, title, price,
    take_rate``, the listing/seller feature columns and ``snapshot_time`` (UTC, the newest
    feature time; the same on every row); sorted by ``listing_id``. Memory: one key range of a
    view (``view_latest.RANGE_ROWS`` rows) plus the result, not the views' ``n * D`` rows.
    """
    features_dir = Path(features_dir)
    feats = latest_rows(features_dir / "listing.parquet", "listing_id")
    # The time the features were taken: serving checks the snapshot's age against its SLA.
    snapshot_time = (
        pd.to_datetime(feats["event_timestamp"], utc=True).max() if len(feats) else pd.NaT
    )
    if "event_timestamp" in feats:
        del feats["event_timestamp"]  # in place: no copy of the other columns
    if listings is None:
        found = find_validated_listings(features_dir, *(p for p in [labels_dir] if p is not None))
        listings = read_columns(found, ["listing_id", *_CONTENT]) if found is not None else None
    if listings is not None:
        extra = [c for c in _CONTENT if c in listings]
        content = listings[["listing_id", *extra]].drop_duplicates("listing_id")
        del listings
        left_join_columns(feats, content, "listing_id")
        del content
    if "title" not in feats:
        feats["title"] = ""
    feats["title"] = feats["title"].fillna("")
    seller_path = features_dir / "seller.parquet"
    if seller_path.exists():
        sellers = latest_rows(seller_path, "seller_id").drop(
            columns=["event_timestamp"], errors="ignore"
        )
        left_join_columns(feats, sellers, "seller_id")
        del sellers
    feats["snapshot_time"] = snapshot_time
    if feats["listing_id"].is_monotonic_increasing and feats.index.equals(
        pd.RangeIndex(len(feats))
    ):
        return feats  # latest_rows's order and index, kept by the in-place joins: no copy
    return feats.sort_values("listing_id").reset_index(drop=True)
