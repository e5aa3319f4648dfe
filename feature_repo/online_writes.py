"""Materialization in bounded memory: the newest row of each entity, written a range at a time.

Feast's ``FeatureStore.materialize`` (local engine, file offline store) reads the whole window
of a view (every daily snapshot of every entity: ``n * D`` rows), keeps the newest row per
entity, and converts all of them to protos in one batch before the online write: 8.2 GB at 500k
listings. ``newest_rows`` scans the view's parquet one range of entity keys at a time (the
filter pushed into the scan; the views are sorted by key, so a range reads few row groups) and
yields, per range, each entity's newest row with ``start <= event_timestamp <= end`` (Feast's
window, both ends included); ``write_online`` hands each to ``FeatureStore.write_to_online_store``
in batches of ``batch_rows``. Same rows in the online store as Feast's ``materialize``
(``tests/e2e/feature_repo/test_online_writes.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from checkout_recs.features.view_latest import key_range_filters

#: Feature rows per range scanned (the range's newest rows are at most this many).
RANGE_ROWS = 2_000_000
#: Rows per ``write_to_online_store`` call.
BATCH_ROWS = 20_000


def _dataset(uri: str, filesystem: pafs.FileSystem | None) -> ds.Dataset:
    return ds.dataset(uri, format="parquet", filesystem=filesystem)


def newest_rows(
    uri: str,
    keys: list[str],
    start: dt.datetime,
    end: dt.datetime,
    range_rows: int = RANGE_ROWS,
    filesystem: pafs.FileSystem | None = None,
) -> Iterator[pd.DataFrame]:
    """Per entity, the row with the greatest ``event_timestamp`` in ``[start, end]``.

    Parameters
    ----------
    uri : a feature view's parquet file (a path, or a path on ``filesystem``).
    keys : its join keys; the first (an integer) is split into ranges of about ``range_rows``
        rows of the file each (evenly over its min..max: ids of similar density assumed).
    start, end : the window, aware datetimes, both included.

    Yields
    ------
    pd.DataFrame
        The file's columns, one row per entity of a range (no entity in two frames).
    """
    dataset = _dataset(uri, filesystem)
    ts = ds.field("event_timestamp")
    window = (ts >= pa.scalar(start, pa.timestamp("us", "UTC"))) & (
        ts <= pa.scalar(end, pa.timestamp("us", "UTC"))
    )
    ranges = key_range_filters(dataset, keys[0], range_rows)
    for where in (window if r is None else window & r for r in ranges):
        df = dataset.to_table(filter=where).to_pandas()
        if len(df):
            df = df.sort_values("event_timestamp", ascending=False, kind="stable")
            yield df.drop_duplicates(keys, keep="first")


def write_online(
    store,
    view: str,
    frames: Iterator[pd.DataFrame],
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Write ``frames`` to the online store of ``store`` (a ``feast.FeatureStore``) for feature
    view ``view``, ``batch_rows`` rows per ``write_to_online_store`` call; returns the rows."""
    written = 0
    for df in frames:
        for a in range(0, len(df), batch_rows):
            store.write_to_online_store(view, df.iloc[a : a + batch_rows])
        written += len(df)
    return written
