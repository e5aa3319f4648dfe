"""The newest row of each entity of a feature view file, in bounded memory.

A view holds one row per entity and daily snapshot (``n * D`` rows); reading it whole to keep
each entity's newest row (``models.inputs.latest_per_entity``) holds all of it, several times
over, in pandas: 7.2 GB at 1M listings. ``latest_rows`` scans the file one range of entity keys
at a time (the filter pushed into the scan: the views are sorted by key, so a range reads only
its own row groups, see ``features.view_parts``), keeps each entity's newest row of the range in
Arrow, and converts the ``n`` kept rows to pandas once. Memory: one range (about ``range_rows``
rows) plus the ``n`` result rows.

The answer is ``latest_per_entity(pd.read_parquet(path), key)``'s rows, columns and dtypes (ties
on ``event_timestamp`` go to the row later in the file, a missing time counts as the newest);
only the row order differs: ``latest_rows`` returns them by key
(``tests/code/features/test_view_latest.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

#: View rows per scanned key range (a range's newest rows are at most this many).
RANGE_ROWS = 2_000_000


def key_bounds(dataset: ds.Dataset, key: str) -> tuple[int, int] | None:
    """Smallest and largest integer ``key`` from the parquet row-group statistics (no data
    read); None when the files have no rows or a row group lacks statistics."""
    lo, hi = None, None
    for frag in dataset.get_fragments():
        meta = frag.metadata
        col = meta.schema.to_arrow_schema().get_field_index(key)
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            if rg.num_rows == 0:
                continue
            stats = rg.column(col).statistics
            if stats is None or not stats.has_min_max:
                return None
            lo = stats.min if lo is None else min(lo, stats.min)
            hi = stats.max if hi is None else max(hi, stats.max)
    return None if lo is None or hi is None else (int(lo), int(hi))


def key_range_filters(dataset: ds.Dataset, key: str, range_rows: int) -> list[ds.Expression | None]:
    """Scan filters ``lo <= key < hi`` that together cover every row of ``dataset``, about
    ``range_rows`` rows each (the key's min..max from the statistics cut evenly: ids of similar
    density assumed); one filter that keeps every row when the statistics are missing or one
    range is enough (None: no filter). No two filters share a key."""
    rows = sum(f.metadata.num_rows for f in dataset.get_fragments())
    bounds = key_bounds(dataset, key) if rows else None
    n_ranges = max(1, math.ceil(rows / max(1, range_rows)))
    if bounds is None or n_ranges == 1:
        return [None]
    lo, hi = bounds
    step = max(1, math.ceil((hi - lo + 1) / n_ranges))
    k = ds.field(key)
    return [(k >= a) & (k < a + step) for a in range(lo, hi + 1, step)]


def _newest_in(table: pa.Table, key: str) -> pa.Table:
    """The last row of each ``key`` of ``table`` in (``event_timestamp``, file order), missing
    times last (pandas' stable ``sort_values`` then ``drop_duplicates(keep="last")``); by key."""
    n = table.num_rows
    if "event_timestamp" in table.column_names:
        ts = table["event_timestamp"].cast(pa.int64())
        ts = pc.fill_null(ts, np.iinfo(np.int64).max).to_numpy()
    else:
        ts = np.zeros(n, np.int64)
    keys = table[key].to_numpy(zero_copy_only=False)
    order = np.lexsort((np.arange(n), ts, keys))
    sorted_keys = keys[order]
    last = np.flatnonzero(np.append(sorted_keys[1:] != sorted_keys[:-1], True)) if n else order
    return table.take(pa.array(order[last]))


def _null_prone_columns(dataset: ds.Dataset) -> list[str]:
    """Integer and boolean columns with a null somewhere in the files (row-group statistics;
    a row group without them counts as having one): pandas converts such a column of the
    whole file to float64 / object (unless its metadata names a nullable dtype) even where the
    kept rows have no null."""
    prone: set[str] = set()
    for frag in dataset.get_fragments():
        meta = frag.metadata
        schema = meta.schema.to_arrow_schema()
        for i, field in enumerate(schema):
            if not (pa.types.is_integer(field.type) or pa.types.is_boolean(field.type)):
                continue
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(i).statistics
                if stats is None or not stats.has_null_count or stats.null_count > 0:
                    prone.add(field.name)
                    break
    return [n for n in dataset.schema.names if n in prone]


def whole_file_dtypes(dataset: ds.Dataset) -> dict[str, object]:
    """The pandas dtype of each integer or boolean column that holds a null somewhere in
    ``dataset``'s files (``_null_prone_columns``): the dtype ``pd.read_parquet`` of the whole
    file gives it (float64 / object unless the pandas metadata names a nullable dtype), which a
    frame of rows without that null must be cast to. Empty when no column is null-prone."""
    prone = _null_prone_columns(dataset)
    if not prone:
        return {}
    schema = dataset.schema
    with_null = pa.table([pa.nulls(1, schema.field(c).type) for c in prone], names=prone)
    return dict(with_null.replace_schema_metadata(schema.metadata).to_pandas().dtypes)


def as_whole_file(frame: pd.DataFrame, dtypes: dict[str, object]) -> pd.DataFrame:
    """``frame`` with its columns named in ``dtypes`` (``whole_file_dtypes``) whose dtype differs
    cast to it (the others not copied)."""
    changed = {c: t for c, t in dtypes.items() if c in frame and frame[c].dtype != t}
    return frame.astype(changed, copy=False) if changed else frame


def _open_view(path: Path | str, filesystem: pafs.FileSystem | None) -> ds.Dataset:
    """The view's parquet dataset; ``FileNotFoundError`` when a local ``path`` is absent."""
    if filesystem is None and not Path(path).exists():
        raise FileNotFoundError(f"missing input table: {path}")
    return ds.dataset(str(path), format="parquet", filesystem=filesystem)


def latest_rows(
    path: Path | str,
    key: str,
    range_rows: int | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> pd.DataFrame:
    """Each ``key``'s newest row (by ``event_timestamp``) of a feature view file, sorted by key.

    Parameters
    ----------
    path : a view's parquet file or folder of parquet files (on ``filesystem`` when given).
    key : the view's integer entity key (``listing_id``, ``seller_id``, ``user_id``).
    range_rows : file rows per scanned key range (bounds the memory besides the result);
        default ``RANGE_ROWS``.

    Returns
    -------
    pd.DataFrame
        One row per distinct ``key`` (``n`` rows), every column of the file, ascending ``key``,
        index ``0..n-1``; dtypes as ``pd.read_parquet`` of the whole file gives them. Raises
        ``FileNotFoundError`` when ``path`` does not exist.
    """
    dataset = _open_view(path, filesystem)
    parts = [
        _newest_in(dataset.to_table(filter=where), key)
        for where in key_range_filters(dataset, key, range_rows or RANGE_ROWS)
    ]
    table = pa.concat_tables(parts) if parts else dataset.schema.empty_table()
    del parts  # the table holds the kept rows' buffers; each is freed once converted
    frame = table.to_pandas(self_destruct=True)
    del table
    pa.default_memory_pool().release_unused()
    return as_whole_file(frame, whole_file_dtypes(dataset))


def iter_latest_rows(
    path: Path | str,
    key: str,
    range_rows: int | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> Iterator[pd.DataFrame]:
    """``latest_rows`` one scanned key range at a time: frames whose concatenation is
    ``latest_rows(path, key, range_rows)``'s rows (ascending ``key``, no key in two frames), each
    with that frame's dtypes and its own index ``0..m-1``; a range without rows yields nothing.
    Memory: one range of the file and its newest rows, never the ``n`` result rows."""
    dataset = _open_view(path, filesystem)
    dtypes = whole_file_dtypes(dataset)
    for where in key_range_filters(dataset, key, range_rows or RANGE_ROWS):
        part = _newest_in(dataset.to_table(filter=where), key)
        if part.num_rows == 0:
            continue
        frame = part.to_pandas(self_destruct=True)
        del part
        yield as_whole_file(frame, dtypes)
