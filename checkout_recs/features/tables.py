"""Reading the stage inputs and writing feature tables in their contract schema.

Pure pandas/pyarrow. Every feature table is cast to its ``contract`` schema on write, so a
column that drifts from the contract fails here rather than in a downstream join.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from checkout_recs import contract

DAY = pd.Timedelta(days=1)


def resolve_validated_dir(validated_dir: Path) -> Path:
    """Accept either ``ingested/`` or ``ingested/validated/``; return the folder of tables."""
    validated_dir = Path(validated_dir)
    inner = validated_dir / "validated"
    return inner if inner.is_dir() else validated_dir


def _raw_path(validated_dir: Path, table: str) -> Path | None:
    """Where validated table ``table`` lives (a folder of parts or one file); None if absent."""
    base = resolve_validated_dir(validated_dir)
    for path in (base / table, base / f"{table}.parquet"):
        if path.exists():
            return path
    return None


def read_raw(validated_dir: Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read validated table ``table`` (a folder of parts or one parquet file).

    ``columns``: only these contract columns (read from parquet, nothing else is loaded);
    default all.

    Returns
    -------
    pd.DataFrame
        The contract columns of ``contract.RAW_TABLES[table]`` (or ``columns``); an empty frame
        with those columns when the table is absent (a stage that legitimately produced nothing).
    """
    schema = contract.RAW_TABLES[table]
    names = contract.field_names(schema) if columns is None else list(columns)
    path = _raw_path(validated_dir, table)
    if path is None:
        return contract.empty_table(schema).select(names).to_pandas()
    if columns is not None:
        return to_frame(pq.read_table(path, columns=names))[names]
    df = to_frame(pq.read_table(path))
    return df[[c for c in names if c in df.columns]]


#: Columns of the validated listings and sellers that the feature views and the training set read.
SELLER_COLUMNS = ["seller_id", "joined_at", "rating", "linked_history"]
LISTING_COLUMNS = [
    "listing_id",
    "seller_id",
    "category_id",
    "region",
    "price",
    "take_rate",
    "listed_at",
]


#: String columns with a handful of distinct values (read as one Python string per value).
SHARED_STRINGS = frozenset({"region", "device", "policy"})


def to_frame(table: pa.Table) -> pd.DataFrame:
    """``table.to_pandas()``, the same values and dtypes, with each string column of
    :data:`SHARED_STRINGS` (without nulls) an object column of one Python string per distinct
    value instead of one per row (~60 bytes a row: 300 MB for 5M listings' regions)."""
    dtypes = table.slice(0, 0).to_pandas().dtypes  # what to_pandas gives (pandas metadata)
    shared = []
    for i, f in enumerate(table.schema):
        col = table.column(i)
        if f.name in SHARED_STRINGS and pa.types.is_string(f.type) and col.null_count == 0:
            table = table.set_column(i, f.name, pc.dictionary_encode(col))
            shared.append(f.name)
    df = table.to_pandas()
    for name in shared:  # a categorical's values in that dtype: its categories, shared
        df[name] = df[name].astype(dtypes[name])
    return df


def read_raw_rows(
    validated_dir: Path, table: str, columns: list[str], key: str, values: np.ndarray | pd.Series
) -> pd.DataFrame:
    """:func:`read_raw` of ``columns`` restricted to the rows whose ``key`` is in ``values``.

    The filter is applied while the parquet is scanned, so memory follows the rows kept (e.g. the
    listings of one chunk of impressions), not the table. Rows in file order, same dtypes as
    :func:`read_raw`; null ``values`` match nothing.
    """
    schema = contract.RAW_TABLES[table]
    path = _raw_path(validated_dir, table)
    if path is None:
        return contract.empty_table(schema).select(list(columns)).to_pandas()
    keys = pa.array(pd.Series(values).dropna().unique(), type=schema.field(key).type)
    return to_frame(scan(path, ds.field(key).isin(keys), list(columns)))[list(columns)]


def scan(path: Path, where: ds.Expression, columns: list[str] | None = None) -> pa.Table:
    """The rows of a parquet file or folder of parts matching ``where`` (``columns``, default
    all; file order), filtered while it is read, one batch read ahead: memory follows the rows
    kept and a row group or two, not the file (the default read-ahead, 16 batches, holds
    hundreds of MB of decoded row groups of a large file)."""
    data = ds.dataset(path, format="parquet", partitioning="hive")
    return data.to_table(columns=columns, filter=where, batch_readahead=1, fragment_readahead=1)


def read_labels(labels_dir: Path, name: str) -> pd.DataFrame | None:
    """Read ``labels_dir/<name>.parquet``; None when the file does not exist."""
    path = Path(labels_dir) / f"{name}.parquet"
    return pq.read_table(path).to_pandas() if path.exists() else None


def to_contract(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Select and cast ``df``'s columns to ``schema`` (raises ``KeyError`` on a missing column)."""
    cols = contract.field_names(schema)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"missing columns for schema: {missing}")
    return pa.Table.from_pandas(df[cols], schema=schema, preserve_index=False)


def write_contract(df: pd.DataFrame, schema: pa.Schema, path: Path) -> int:
    """Write ``df`` as parquet in ``schema``; returns the number of rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = to_contract(df, schema)
    pq.write_table(table, path)
    return table.num_rows


def write_contract_parts(
    parts: Iterable[pd.DataFrame], schema: pa.Schema, path: Path, key: str
) -> tuple[int, int]:
    """Write consecutive frames as one parquet file in ``schema`` (one row group or more per
    frame), holding one frame at a time; the file's rows are the frames' rows in order.

    Returns
    -------
    (rows, entities)
        Rows written, and the sum over frames of the distinct ``key`` values of each frame
        (the distinct keys of the file when no key spans two frames).
    """
    counts = [0, 0]

    def tables() -> Iterator[pa.Table]:
        for df in parts:
            table = to_contract(df, schema)
            counts[0] += table.num_rows
            counts[1] += int(df[key].nunique())
            yield table

    _write_tables(tables(), path, lambda: to_contract(pd.DataFrame(columns=schema.names), schema))
    return counts[0], counts[1]


def write_frames(
    frames: Iterable[pd.DataFrame], path: Path, types: dict[str, pa.DataType] | None = None
) -> int:
    """Write consecutive frames (at least one) as one parquet file, holding one at a time.

    The file holds the table ``pd.concat(frames).to_parquet(path, index=False)`` would write: the
    arrow schema and pandas metadata inferred from the first frame, except the columns in
    ``types`` (a type a frame cannot tell, e.g. a list column whose lists are all empty in the
    first frame); the later frames are converted to that schema. Returns the rows written.
    """
    state: dict[str, pa.Schema | None] = {"schema": None}

    def tables() -> Iterator[pa.Table]:
        for df in frames:
            if state["schema"] is None:
                inferred = pa.Schema.from_pandas(df, preserve_index=False)
                for name, typ in (types or {}).items():
                    i = inferred.get_field_index(name)
                    inferred = inferred.set(i, inferred.field(i).with_type(typ))
                state["schema"] = inferred
            yield pa.Table.from_pandas(df, schema=state["schema"], preserve_index=False)

    def no_frames() -> pa.Table:
        raise ValueError(f"no frames to write to {path}")

    return _write_tables(tables(), path, no_frames)


def _write_tables(tables: Iterable[pa.Table], path: Path, empty: Callable[[], pa.Table]) -> int:
    """Write ``tables`` (same columns and types) to one parquet file with the first one's schema
    metadata; ``empty()`` is written when there is none. Returns the number of rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            if writer is None:  # the first table's pandas metadata, as ``write_contract`` keeps
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
            rows += table.num_rows
        if writer is None:
            pq.write_table(empty(), path)
    finally:
        if writer is not None:
            writer.close()
    return rows


def utc(series: pd.Series) -> pd.Series:
    """``series`` as ``datetime64[us, UTC]``."""
    out = pd.to_datetime(series, utc=True)
    return out.astype("datetime64[us, UTC]")


def epoch_us(series: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 microseconds since the epoch; shape ``(n,)``."""
    return utc(series).dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)


def snapshot_grid(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """End-of-day snapshot times covering ``[start, end]``.

    Each snapshot is stamped at the last microsecond of its UTC day (``23:59:59.999999``), and
    a snapshot at ``t`` uses only events with ``event_timestamp <= t``.

    Returns
    -------
    pd.DatetimeIndex
        ``D`` timestamps (UTC, microseconds), ``D = days(end) - days(start) + 1``.
    """
    first = pd.Timestamp(start).tz_convert("UTC").floor("D")
    last = pd.Timestamp(end).tz_convert("UTC").floor("D")
    days = pd.date_range(first, last, freq="D", tz="UTC")
    return (days + DAY - pd.Timedelta(microseconds=1)).astype("datetime64[us, UTC]")


def decayed_daily(
    entity_idx: np.ndarray,
    ts: pd.Series,
    grid: pd.DatetimeIndex,
    n_entities: int,
    half_life_days: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Exponentially time-decayed sums of events, evaluated at each snapshot time.

    Parameters
    ----------
    entity_idx : np.ndarray
        Shape ``(n_events,)``, int: row of the entity of each event in ``[0, n_entities)``.
    ts : pd.Series
        Shape ``(n_events,)``, UTC event times.
    grid : pd.DatetimeIndex
        Shape ``(D,)``, snapshot times from :func:`snapshot_grid`.
    half_life_days : float
        Half-life of the decay, days.
    weights : np.ndarray, optional
        Shape ``(n_events,)``; 1 per event when omitted.

    Returns
    -------
    np.ndarray
        Shape ``(n_entities, D)``: ``S[e, d] = sum_{t_i <= grid[d]} w_i * 2^(-(grid[d]-t_i)/h)``.
        Events after the last snapshot or before the first day are ignored (earlier events are
        folded into day 0).
    """
    n_days = len(grid)
    out = np.zeros((n_entities, n_days), dtype=np.float64)
    if n_days == 0 or len(entity_idx) == 0:
        return out
    ent, day, vals, step = _decayed_events(entity_idx, ts, grid, half_life_days, weights)
    np.add.at(out, (ent, day), vals)
    for d in range(1, n_days):
        out[:, d] += out[:, d - 1] * step[d - 1]
    return out


def _decayed_events(
    entity_idx: np.ndarray,
    ts: pd.Series,
    grid: pd.DatetimeIndex,
    half_life_days: float,
    weights: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The events :func:`decayed_daily` counts, each at the first snapshot at or after it:
    entity rows (m,), snapshot index (m,), weight decayed to that snapshot (m,), in input order
    (events after the last snapshot dropped); and the decay factor between consecutive snapshots
    (D - 1,)."""
    n_days = len(grid)
    lam = np.log(2.0) / half_life_days
    g_us = epoch_us(pd.Series(grid))
    step = np.exp(-lam * (np.diff(g_us) / 86_400e6)) if n_days > 1 else np.array([])
    ent = np.asarray(entity_idx)
    if len(ent) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), step
    t_ns = epoch_us(utc(ts))
    day = np.searchsorted(g_us, t_ns, side="left")  # first snapshot at or after the event
    keep = day < n_days
    age_days = (g_us[day[keep]] - t_ns[keep]) / 86_400e6
    w = np.ones(len(ent)) if weights is None else np.asarray(weights, dtype=np.float64)
    return ent[keep], day[keep], w[keep] * np.exp(-lam * age_days), step


def decayed_by_day(
    entity_idx: np.ndarray,
    ts: pd.Series,
    grid: pd.DatetimeIndex,
    n_entities: int,
    half_life_days: float,
    weights: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """:func:`decayed_daily` one snapshot at a time: yields its columns ``S[:, 0]``, ``S[:, 1]``,
    ... (each float64 of shape ``(n_entities,)``), holding two of them at once instead of the
    ``(n_entities, D)`` matrix. The same additions in the same order, so the values are equal
    bit for bit."""
    n_days = len(grid)
    if n_days == 0:
        return
    ent, days, vals, step = _decayed_events(entity_idx, ts, grid, half_life_days, weights)
    order = np.argsort(days, kind="stable")  # each day's events in their input order
    bounds = np.searchsorted(days[order], np.arange(n_days + 1), side="left")
    prev = None
    for d in range(n_days):
        cur = np.zeros(n_entities, dtype=np.float64)
        sel = order[bounds[d] : bounds[d + 1]]
        np.add.at(cur, ent[sel], vals[sel])
        if prev is not None:
            cur += prev * step[d - 1]
        yield cur
        prev = cur
