"""Reading the training stage's inputs from the working folders (labels/, features/, validated/).

Feature tables hold daily snapshots (``event_timestamp``); the models want the latest row per
entity. Listing content (title) lives in the validated ``listings`` table, so the listing
snapshot joins validated listings with the latest listing and seller features; it reads those
views a key range at a time (``features.view_latest.latest_rows``), never whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from checkout_recs.features.view_latest import (
    as_whole_file,
    iter_latest_rows,
    latest_rows,
    whole_file_dtypes,
)

#: The validated listings' columns the snapshot takes (listing content, not features).
_CONTENT = ("title", "quantity", "listed_at")


def read_table(path: Path) -> pd.DataFrame:
    """Read a parquet file or a folder of parquet parts; raises FileNotFoundError when absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing input table: {path}")
    return pd.read_parquet(path)


def read_columns(
    path: Path, columns: list[str], where: ds.Expression | None = None
) -> pd.DataFrame:
    """The ``columns`` a parquet file or folder of parts holds (in that order), not the others;
    with ``where``, only the rows it keeps (file order), with the dtypes the whole table's read
    gives them (``view_latest.whole_file_dtypes``). Raises FileNotFoundError when absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing input table: {path}")
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    keep = [c for c in columns if c in dataset.schema.names]
    if where is None:
        return pd.read_parquet(path, columns=keep)
    frame = dataset.to_table(columns=keep, filter=where).to_pandas()
    return as_whole_file(frame, whole_file_dtypes(dataset))


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
    view (``view_latest.RANGE_ROWS`` rows) plus the result, not the views' ``n * D`` rows; for
    a catalogue too large to hold, ``iter_listing_snapshot`` yields it a block at a time.
    """
    features_dir = Path(features_dir)
    feats = latest_rows(features_dir / "listing.parquet", "listing_id")
    # The time the features were taken: serving checks the snapshot's age against its SLA.
    snapshot_time = (
        pd.to_datetime(feats["event_timestamp"], utc=True).max() if len(feats) else pd.NaT
    )
    if listings is None:
        found = find_validated_listings(features_dir, *(p for p in [labels_dir] if p is not None))
        listings = read_columns(found, ["listing_id", *_CONTENT]) if found is not None else None
    content = None
    if listings is not None:
        extra = [c for c in _CONTENT if c in listings]
        content = listings[["listing_id", *extra]].drop_duplicates("listing_id")
        del listings
    feats = _join_snapshot_columns(feats, content, _latest_sellers(features_dir), snapshot_time)
    if feats["listing_id"].is_monotonic_increasing and feats.index.equals(
        pd.RangeIndex(len(feats))
    ):
        return feats  # latest_rows's order and index, kept by the in-place joins: no copy
    return feats.sort_values("listing_id").reset_index(drop=True)


def iter_listing_snapshot(
    features_dir: Path, labels_dir: Path | None = None, block_rows: int = 1 << 20
) -> Iterator[pd.DataFrame]:
    """``listing_snapshot(features_dir, labels_dir=labels_dir)``'s rows, ``block_rows`` at a time.

    Blocks follow one another by ``listing_id`` (every block but the last holds exactly
    ``block_rows`` rows, index ``0..m-1``), with the same columns and values; a column of a
    left join (content, seller features) turns to float64 / object only in a block where a
    listing misses its row, where ``listing_snapshot`` turns it for the whole frame
    (``retrieval.snapshot_file.SnapshotParts`` writes the blocks as the whole frame's file).
    Memory: one key range of the listing view, one block, its validated listings (read by
    ``listing_id`` range) and the sellers' latest rows; never the catalogue.
    """
    features_dir = Path(features_dir)
    view = features_dir / "listing.parquet"
    snapshot_time = _newest_time(view)
    found = find_validated_listings(features_dir, *(p for p in [labels_dir] if p is not None))
    sellers = _latest_sellers(features_dir)
    pending: list[pd.DataFrame] = []
    held = 0
    for part in iter_latest_rows(view, "listing_id"):
        pending.append(part)
        held += len(part)
        while held >= block_rows:
            feats = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
            rest = feats.iloc[block_rows:].reset_index(drop=True)
            pending, held = ([rest] if len(rest) else []), len(rest)
            yield _block(feats.iloc[:block_rows].copy(), found, sellers, snapshot_time)
    if held:
        feats = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
        yield _block(feats, found, sellers, snapshot_time)


def _block(
    feats: pd.DataFrame,
    found: Path | None,
    sellers: pd.DataFrame | None,
    snapshot_time: pd.Timestamp,
) -> pd.DataFrame:
    """One block of ``iter_listing_snapshot``: ``feats`` (latest listing rows, by key) joined
    with the content of its ``listing_id`` range and ``sellers``."""
    content = None
    if found is not None:
        ids = feats["listing_id"]
        content = read_columns(
            found,
            ["listing_id", *_CONTENT],
            (ds.field("listing_id") >= int(ids.iloc[0]))
            & (ds.field("listing_id") <= int(ids.iloc[-1])),
        ).drop_duplicates("listing_id")
    return _join_snapshot_columns(feats, content, sellers, snapshot_time)


def _latest_sellers(features_dir: Path) -> pd.DataFrame | None:
    """The sellers' latest feature rows (no ``event_timestamp``), or None without a seller view."""
    seller_path = features_dir / "seller.parquet"
    if not seller_path.exists():
        return None
    return latest_rows(seller_path, "seller_id").drop(columns=["event_timestamp"], errors="ignore")


def _newest_time(view: Path) -> pd.Timestamp:
    """The newest ``event_timestamp`` among the view's latest rows (``listing_snapshot``'s
    ``snapshot_time``): the column's maximum, read a record batch at a time, when it holds no
    null (the newest row then is each entity's latest); else from the latest rows themselves."""
    if not Path(view).exists():
        raise FileNotFoundError(f"missing input table: {view}")
    newest, nulls = pd.NaT, False
    for batch in ds.dataset(view, format="parquet").to_batches(columns=["event_timestamp"]):
        times = pd.to_datetime(batch.column(0).to_pandas(), utc=True)
        nulls = nulls or bool(times.isna().any())
        if len(times) and (newest is pd.NaT or times.max() > newest):
            newest = times.max()
    if not nulls:
        return newest
    newest = pd.NaT
    for part in iter_latest_rows(view, "listing_id"):
        top = pd.to_datetime(part["event_timestamp"], utc=True).max()
        if top is not pd.NaT and (newest is pd.NaT or top > newest):
            newest = top
    return newest


def _join_snapshot_columns(
    feats: pd.DataFrame,
    content: pd.DataFrame | None,
    sellers: pd.DataFrame | None,
    snapshot_time: pd.Timestamp,
) -> pd.DataFrame:
    """``feats`` (latest listing rows) with ``event_timestamp`` dropped, ``content``'s and
    ``sellers``' columns left-joined in place (``left_join_columns``), ``title`` filled with
    "" and ``snapshot_time`` set on every row; returns ``feats``."""
    if "event_timestamp" in feats:
        del feats["event_timestamp"]  # in place: no copy of the other columns
    if content is not None:
        left_join_columns(feats, content, "listing_id")
    if "title" not in feats:
        feats["title"] = ""
    feats["title"] = feats["title"].fillna("")
    if sellers is not None:
        left_join_columns(feats, sellers, "seller_id")
    feats["snapshot_time"] = snapshot_time
    return feats
