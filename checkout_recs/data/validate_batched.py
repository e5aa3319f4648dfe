"""One raw table validated in two passes over its record batches, in memory bounded by a batch
plus the table's key columns.

Pass 1 (:func:`check_table`): each batch gets the row-level checks (``validate.validate_rows``:
type, null, range, time); the rows passing them are written, typed, to a spill file, and only
the key columns (``validate.key_columns``) and the rejected rows' reasons are kept. The
table-wide checks (``validate.validate_keys``: duplicates, foreign keys, inventory order) then
run on the key columns of the whole table.

Pass 2 (:func:`write_outputs`): the spill file, less the rows the table-wide checks rejected, is
the validated file; the rejected rows are read again, batch by batch, for their quarantine rows.

The result is the one validating the whole table at once gives: the same accepted rows and
types, the same quarantine rows (row order, reason, detail, ``row_json``), the same counts.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from checkout_recs import contract
from checkout_recs.data.raw_parts import RawPart, TableLayout, batch_frame, iter_batches
from checkout_recs.data.validate import (
    Verdict,
    key_columns,
    parent_columns,
    validate_keys,
    validate_rows,
)


@dataclass
class Checked:
    """The verdict of one table after both kinds of check.

    ``verdict`` is over the table's n rows (files in order, rows in file order); ``row_ok`` (n,)
    bool marks the rows that passed the row-level checks, which are the rows of ``spill`` in
    order (typed, ``contract.RAW_TABLES[table]``, with the pandas metadata the validated file has).
    """

    verdict: Verdict
    row_ok: np.ndarray
    spill: Path

    @property
    def rows(self) -> int:
        """Rows read (n)."""
        return len(self.row_ok)


def _to_contract(table: str, typed: pd.DataFrame) -> pa.Table:
    """Rows of ``typed`` as an Arrow table of exactly ``contract.RAW_TABLES[table]``."""
    return pa.Table.from_pandas(
        typed.reset_index(drop=True), schema=contract.RAW_TABLES[table], preserve_index=False
    )


def _empty_typed(table: str, layout: TableLayout, now: dt.datetime) -> pd.DataFrame:
    """The typed frame of a table without rows (its dtypes are those of any typed batch)."""
    empty = pd.DataFrame({c: pd.Series([], dtype=d) for c, d in layout.dtypes.items()})
    return validate_rows(table, empty, now)[0]


def check_table(
    table: str,
    parts: list[RawPart],
    layout: TableLayout,
    now: dt.datetime,
    accepted: dict[str, pd.DataFrame],
    spill: Path,
    batch_rows: int,
) -> Checked:
    """Pass 1: row-level checks batch by batch, then the table-wide checks on the key columns.

    Parameters
    ----------
    table : name in ``contract.RAW_TABLES``.
    parts : the table's readable files, in order (``raw_parts.probe_part``).
    layout : ``raw_parts.table_layout(table, parts)``.
    now : timestamps after it are rejected.
    accepted : {parent table: its accepted rows' ``validate.parent_columns``}; this table's are
        added.
    spill : path of the spill file to write (typed rows passing the row-level checks).
    batch_rows : rows per record batch.

    Returns
    -------
    Checked: the verdict over every row read and where the rows passing pass 1 are.
    """
    keys_of = key_columns(table)
    key_parts: list[pd.DataFrame] = []
    bad_rows: list[np.ndarray] = []
    bad_reasons: list[np.ndarray] = []
    bad_details: list[np.ndarray] = []
    ok_parts: list[np.ndarray] = []
    start = 0
    writer: pq.ParquetWriter | None = None
    try:
        for i, part in enumerate(parts):
            missing = ", ".join(part.missing)
            for batch in iter_batches(table, part, batch_rows):
                raw = batch_frame(table, batch, part, layout.fill[i], layout)
                pre = Verdict(len(raw))
                if missing:
                    pre.mark(np.ones(len(raw), bool), "schema", f"missing columns: {missing}")
                typed, v = validate_rows(table, raw, now, pre)
                ok = v.ok
                bad = np.flatnonzero(~ok)
                bad_rows.append(bad + start)
                bad_reasons.append(v.reason[bad])
                bad_details.append(v.detail[bad])
                ok_parts.append(ok)
                key_parts.append(typed[keys_of])
                good = _to_contract(table, typed.loc[ok])
                if writer is None:
                    writer = pq.ParquetWriter(spill, good.schema)
                writer.write_table(good)
                start += len(raw)
        if writer is None:
            empty = _empty_typed(table, layout, now)
            pq.write_table(_to_contract(table, empty), spill)
            key_parts.append(empty[keys_of])
    finally:
        if writer is not None:
            writer.close()
    keys = pd.concat(key_parts, ignore_index=True) if len(key_parts) > 1 else key_parts[0]
    del key_parts
    row_ok = np.concatenate(ok_parts) if ok_parts else np.zeros(0, bool)
    v = Verdict(start)
    if bad_rows:
        v.mark_rows(
            np.concatenate(bad_rows), np.concatenate(bad_reasons), np.concatenate(bad_details)
        )
    validate_keys(table, keys, accepted, v)
    pcols = parent_columns(table)
    if pcols:
        kept = keys.loc[v.ok, pcols]
        accepted[table] = (kept.drop_duplicates() if len(pcols) == 1 else kept).reset_index(
            drop=True
        )
    return Checked(verdict=v, row_ok=row_ok, spill=spill)


def write_validated(checked: Checked, path: Path, batch_rows: int) -> int:
    """Pass 2, accepted rows: the spill file less the rows the table-wide checks rejected, written
    to ``path`` ``batch_rows`` rows at a time (the spill file itself is moved there when they
    rejected none). Returns the rows written."""
    keep = checked.verdict.ok[checked.row_ok]  # (rows of the spill,) bool
    if keep.all():
        shutil.move(checked.spill, path)
        return len(keep)
    src = pq.ParquetFile(checked.spill)
    start = 0
    with pq.ParquetWriter(path, src.schema_arrow) as writer:
        for batch in src.iter_batches(batch_size=batch_rows, use_threads=False):
            n = batch.num_rows
            writer.write_table(
                pa.Table.from_batches([batch], schema=src.schema_arrow).filter(
                    pa.array(keep[start : start + n])
                )
            )
            start += n
    Path(checked.spill).unlink()
    return int(keep.sum())


def write_quarantine(
    table: str,
    parts: list[RawPart],
    layout: TableLayout,
    checked: Checked,
    run_id: str,
    path: Path,
    batch_rows: int,
) -> int:
    """Pass 2, rejected rows: ``contract.QUARANTINE`` rows (the raw row as JSON, the reason and
    detail) in row order, written to ``path``; only the batches holding a rejected row are
    decoded again. Returns the rows written."""
    v = checked.verdict
    bad = ~v.ok
    written = 0
    with pq.ParquetWriter(path, contract.QUARANTINE) as writer:
        start = 0
        for i, part in enumerate(parts):
            if not bad[start : start + part.rows].any():
                start += part.rows
                continue
            for batch in iter_batches(table, part, batch_rows):
                n = batch.num_rows
                sel = bad[start : start + n]
                if sel.any():
                    raw = batch_frame(table, batch, part, layout.fill[i], layout)
                    rows = raw.loc[sel].to_dict(orient="records")
                    idx = np.flatnonzero(sel) + start
                    writer.write_table(_quarantine_rows(table, rows, v, idx, run_id))
                    written += len(rows)
                start += n
        if written == 0:
            writer.write_table(_quarantine_rows(table, [], v, np.zeros(0, np.int64), run_id))
    return written


def _quarantine_rows(
    table: str, rows: list[dict], v: Verdict, idx: np.ndarray, run_id: str
) -> pa.Table:
    """``contract.QUARANTINE`` rows of the raw rows ``rows`` at table positions ``idx``."""
    return pa.table(
        {
            "table": [table] * len(rows),
            "reason": v.reason[idx].tolist(),
            "detail": v.detail[idx].tolist(),
            "row_json": [json.dumps(r, default=str, sort_keys=True) for r in rows],
            "ingest_run_id": [run_id] * len(rows),
        },
        schema=contract.QUARANTINE,
    )
