"""``ingest``: read raw tables (local folder or ``s3://bucket/prefix``), validate, quarantine, publish.

Output (``out_dir``, published atomically: built in a temporary sibling, then renamed)::

    validated/<table>/part-00000.parquet   accepted rows, cast to ``contract.RAW_TABLES[table]``
    quarantine/<table>.parquet             ``contract.QUARANTINE``: rejected rows with a reason
    ingest_report.json                     ``IngestReport``: read / accepted / quarantined per table

Re-running on the same input gives the same files: the run id is a hash of the input files, not
of the clock, and rows keep their input order (files sorted by name).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from checkout_recs import contract
from checkout_recs.data.publish import atomic_dir
from checkout_recs.data.validate import TABLE_ORDER, Verdict, validate_table


class TableReport(BaseModel):
    """Counts for one table; ``read == accepted + quarantined`` always."""

    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    by_reason: dict[str, int] = {}
    files: list[str] = []


class IngestReport(BaseModel):
    """What one ingest run read, accepted and quarantined."""

    run_id: str
    source: str
    now: dt.datetime
    tables: dict[str, TableReport]

    @property
    def quarantined(self) -> int:
        """Rows quarantined over all tables."""
        return sum(t.quarantined for t in self.tables.values())


def _list_sources(source: str, endpoint_url: str | None) -> dict[str, list[tuple[str, bytes]]]:
    """{table: [(file name, parquet bytes)]} sorted by name, for a folder or an s3:// prefix."""
    out: dict[str, list[tuple[str, bytes]]] = {t: [] for t in contract.RAW_TABLES}
    if source.startswith("s3://"):
        import boto3

        bucket, _, prefix = source[len("s3://") :].partition("/")
        client = boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3"))
        for table in contract.RAW_TABLES:
            pfx = "/".join(p for p in (prefix.strip("/"), table) if p) + "/"
            keys: list[str] = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=pfx):
                keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".parquet")]
            for key in sorted(keys):
                out[table].append((key, client.get_object(Bucket=bucket, Key=key)["Body"].read()))
        return out
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder not found: {source}")
    for table in contract.RAW_TABLES:
        for f in sorted((root / table).glob("*.parquet")):
            out[table].append((f"{table}/{f.name}", f.read_bytes()))
    return out


def _pandas_type(t: pa.DataType) -> object:
    """Nullable pandas dtype for an Arrow type (keeps ints exact with nulls, strings typed)."""
    if pa.types.is_integer(t):
        return pd.api.types.pandas_dtype(f"Int{t.bit_width}")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype("pyarrow")
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def _family(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return "timestamp" if pa.types.is_timestamp(t) else str(t)


def _safe_cast(col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    """``col`` cast losslessly within its family (int32 -> int64, naive/ns -> UTC us...), else None.

    Naive timestamps are taken as UTC. None sends the column to the value-by-value path.
    """
    if col.type == target:
        return col
    if _family(col.type) != _family(target):
        return None
    try:
        return col.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _read_table(table: str, files: list[tuple[str, bytes]]) -> tuple[pd.DataFrame, Verdict]:
    """Concatenate the files; rows of a file missing contract columns get ``schema``.

    Columns whose Arrow type is the contract's come through typed; any other column comes
    through as Python objects, to be cast value by value in ``validate.coerce``.
    """
    schema = contract.RAW_TABLES[table]
    names = contract.field_names(schema)
    frames: list[pd.DataFrame] = []
    missing_by_file: list[tuple[int, str]] = []  # (rows, missing columns) per file
    for _, data in files:
        t = pq.read_table(pa.BufferReader(data))
        missing = [c for c in names if c not in t.column_names]
        cols = {}
        for f in schema:
            if f.name in missing:
                cols[f.name] = pd.Series([None] * t.num_rows, dtype=object)
                continue
            col = _safe_cast(t[f.name], f.type)
            if col is not None:
                cols[f.name] = col.to_pandas(types_mapper=_pandas_type)
            else:
                cols[f.name] = pd.Series(t[f.name].to_pylist(), dtype=object)
        frames.append(pd.DataFrame(cols))
        missing_by_file.append((t.num_rows, ", ".join(missing)))
    with warnings.catch_warnings():  # all-null columns: either pandas behaviour gives a correct (maybe object) dtype
        warnings.simplefilter("ignore", FutureWarning)
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: pd.Series([], dtype=object) for c in names})
    v = Verdict(len(df))
    start = 0
    for n, missing_cols in missing_by_file:
        if missing_cols:
            bad = np.zeros(len(df), bool)
            bad[start : start + n] = True
            v.mark(bad, "schema", f"missing columns: {missing_cols}")
        start += n
    return df, v


def _run_id(files: dict[str, list[tuple[str, bytes]]]) -> str:
    h = hashlib.sha256()
    for table in sorted(files):
        for name, data in files[table]:
            h.update(name.encode())
            h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def _quarantine(table: str, raw: pd.DataFrame, v: Verdict, run_id: str) -> pa.Table:
    bad = ~v.ok
    rows = raw.loc[bad].to_dict(orient="records")
    return pa.table(
        {"table": [table] * len(rows), "reason": v.reason[bad].tolist(), "detail": v.detail[bad].tolist(),
         "row_json": [json.dumps(r, default=str, sort_keys=True) for r in rows], "ingest_run_id": [run_id] * len(rows)},
        schema=contract.QUARANTINE,
    )


def _to_contract(table: str, typed: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(typed.reset_index(drop=True), schema=contract.RAW_TABLES[table], preserve_index=False)


def ingest(
    source: str, out_dir: Path, now: dt.datetime | None = None, endpoint_url: str | None = None, progress: bool = False
) -> IngestReport:
    """Validate every raw table of ``source`` and publish accepted rows, quarantine and report.

    Parameters
    ----------
    source : a local folder or ``s3://bucket/prefix`` holding ``<table>/*.parquet``.
    out_dir : the ingested folder to publish (replaced atomically).
    now : timestamps after it are quarantined as ``future_timestamp``; the wall clock when None.
    endpoint_url : S3-compatible endpoint for ``s3://`` sources (else ``AWS_ENDPOINT_URL_S3``).
    progress : show a progress bar over the tables.

    Returns
    -------
    IngestReport, also written as ``ingest_report.json``. Raises ``FileNotFoundError`` when the
    source folder does not exist. A table with no files is reported with zero rows.
    """
    now = now or dt.datetime.now(dt.UTC)
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    files = _list_sources(str(source), endpoint_url)
    run_id = _run_id(files)
    accepted: dict[str, pd.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    with atomic_dir(Path(out_dir)) as tmp:
        (tmp / "quarantine").mkdir()
        from tqdm import tqdm

        for table in tqdm(TABLE_ORDER, desc="ingest tables", disable=not progress):
            raw, pre = _read_table(table, files[table])
            typed, v = validate_table(table, raw, now, accepted, pre)
            accepted[table] = typed.loc[v.ok]
            folder = tmp / "validated" / table
            folder.mkdir(parents=True)
            pq.write_table(_to_contract(table, accepted[table]), folder / "part-00000.parquet")
            pq.write_table(_quarantine(table, raw, v, run_id), tmp / "quarantine" / f"{table}.parquet")
            reasons = pd.Series(v.reason[~v.ok]).value_counts().sort_index()
            reports[table] = TableReport(
                read=len(raw), accepted=int(v.ok.sum()), quarantined=int((~v.ok).sum()),
                by_reason={str(k): int(c) for k, c in reasons.items()}, files=[n for n, _ in files[table]],
            )
        report = IngestReport(run_id=run_id, source=str(source), now=now, tables=reports)
        (tmp / "ingest_report.json").write_text(report.model_dump_json(indent=2))
    return report


def read_validated(ingested_dir: Path, table: str) -> pd.DataFrame:
    """Accepted rows of ``table`` from an ingested folder (or its ``validated/`` child) as pandas."""
    d = Path(ingested_dir)
    d = d / "validated" if (d / "validated").is_dir() else d
    return pq.read_table(d / table, schema=contract.RAW_TABLES[table]).to_pandas()

