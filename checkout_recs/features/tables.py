"""Reading the stage inputs and writing feature tables in their contract schema.

Pure pandas/pyarrow. Every feature table is cast to its ``contract`` schema on write, so a
column that drifts from the contract fails here rather than in a downstream join.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from checkout_recs import contract

DAY = pd.Timedelta(days=1)


def resolve_validated_dir(validated_dir: Path) -> Path:
    """Accept either ``ingested/`` or ``ingested/validated/``; return the folder of tables."""
    validated_dir = Path(validated_dir)
    inner = validated_dir / "validated"
    return inner if inner.is_dir() else validated_dir


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
    base = resolve_validated_dir(validated_dir)
    for path in (base / table, base / f"{table}.parquet"):
        if path.exists():
            if columns is not None:
                return pq.read_table(path, columns=names).to_pandas()[names]
            df = pq.read_table(path).to_pandas()
            return df[[c for c in names if c in df.columns]]
    return contract.empty_table(schema).select(names).to_pandas()


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
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = entities = 0
    writer: pq.ParquetWriter | None = None
    try:
        for df in parts:
            table = to_contract(df, schema)
            if writer is None:  # the first frame's pandas metadata, as ``write_contract`` keeps
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
            rows, entities = rows + table.num_rows, entities + int(df[key].nunique())
        if writer is None:
            pq.write_table(to_contract(pd.DataFrame(columns=schema.names), schema), path)
    finally:
        if writer is not None:
            writer.close()
    return rows, entities


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
    lam = np.log(2.0) / half_life_days
    t_ns = epoch_us(utc(ts))
    g_us = epoch_us(pd.Series(grid))
    day = np.searchsorted(g_us, t_ns, side="left")  # first snapshot at or after the event
    keep = day < n_days
    age_days = (g_us[day[keep]] - t_ns[keep]) / 86_400e6
    w = np.ones(len(entity_idx)) if weights is None else np.asarray(weights, dtype=np.float64)
    np.add.at(out, (np.asarray(entity_idx)[keep], day[keep]), w[keep] * np.exp(-lam * age_days))
    step = np.exp(-lam * (np.diff(g_us) / 86_400e6)) if n_days > 1 else np.array([])
    for d in range(1, n_days):
        out[:, d] += out[:, d - 1] * step[d - 1]
    return out


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
    lam = np.log(2.0) / half_life_days
    ent = np.asarray(entity_idx)
    vals, days = np.zeros(0), np.zeros(0, dtype=np.int64)
    if len(ent):
        t_ns = epoch_us(utc(ts))
        g_us = epoch_us(pd.Series(grid))
        day = np.searchsorted(g_us, t_ns, side="left")
        keep = day < n_days
        age_days = (g_us[day[keep]] - t_ns[keep]) / 86_400e6
        w = np.ones(len(ent)) if weights is None else np.asarray(weights, dtype=np.float64)
        vals, days, ent = w[keep] * np.exp(-lam * age_days), day[keep], ent[keep]
    g_us = epoch_us(pd.Series(grid))
    step = np.exp(-lam * (np.diff(g_us) / 86_400e6)) if n_days > 1 else np.array([])
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
