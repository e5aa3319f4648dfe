"""``ingest``: read raw tables (local folder or ``s3://bucket/prefix``), validate, quarantine, publish.

Output (``out_dir``, published atomically: built in a temporary sibling, then renamed)::

    validated/<table>/part-00000.parquet   accepted rows, cast to ``contract.RAW_TABLES[table]``
    quarantine/<table>.parquet             ``contract.QUARANTINE``: rejected rows with a reason
    quarantine/files.parquet               ``contract.QUARANTINE_FILES``: files set aside whole
    quarantine/files/<table>/<file>        a copy of each file set aside (when its bytes were read)
    ingest_report.json                     ``IngestReport``: files and rows in / accepted /
                                           quarantined per table, extra columns, ignored files

One bad file never stops a run: a file that is not readable parquet (truncated, corrupt, another
format) or whose column types cannot be cast to the contract (``_type_problem``) is quarantined
whole with its name and reason, and the other files are ingested. Only a source that cannot be
read at all (missing folder, empty or unreachable s3 prefix) raises ``SourceError``.

Source layout: ``<table>/**`` for each table of ``contract.RAW_TABLES``; every file below a table's
folder is read as parquet whatever its extension, except hidden ones (a path part starting with
``.`` or ``_``, e.g. ``_SUCCESS``, ``.part-0.crc``), which are listed as ``ignored``.

Re-running on the same input gives the same files: the run id is a hash of the input files, not
of the clock, and rows keep their input order (files sorted by name).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import botocore.exceptions
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel
from tqdm import tqdm

from checkout_recs import contract
from checkout_recs.data.publish import atomic_dir
from checkout_recs.data.validate import TABLE_ORDER, Verdict, validate_table


class SourceError(RuntimeError):
    """The source cannot be read at all: a missing folder, no object under an s3 prefix, a missing
    bucket, no credentials, an unreachable endpoint. (One bad file is never a ``SourceError``.)"""


class QuarantinedFile(BaseModel):
    """One file set aside whole (a row of ``quarantine/files.parquet``)."""

    name: str  # the source's name: "<table>/<path>" for a folder, the key for s3
    reason: str  # one of contract.FILE_REASONS
    detail: str
    size_bytes: int | None = None  # None when the file could not be fetched
    rows: int | None = None  # None when not even the parquet footer is readable
    copied_to: str | None = None  # path of the copy, relative to the ingested folder


class TableReport(BaseModel):
    """Counts for one table; ``read == accepted + quarantined`` (rows of the files read) and
    ``files_in == files_ok + files_quarantined`` always."""

    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    by_reason: dict[str, int] = {}
    files: list[str] = []  # every file read or quarantined, in read order
    files_in: int = 0
    files_ok: int = 0
    files_quarantined: int = 0
    quarantined_files: list[QuarantinedFile] = []
    extra_columns: dict[str, list[str]] = {}  # column not in the contract (not ingested) -> files
    ignored: list[str] = []  # hidden files below the table's folder, not read


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

    @property
    def files_quarantined(self) -> int:
        """Files quarantined whole over all tables."""
        return sum(t.files_quarantined for t in self.tables.values())


@dataclass(frozen=True)
class RawFile:
    """One source file of a table: ``data`` is None when fetching it failed (``error`` says why)."""

    name: str  # "<table>/<path>" for a folder, the key for s3
    rel: str  # path below the table's folder, "/"-separated
    data: bytes | None
    error: str | None = None


@dataclass
class Listing:
    """{table: files sorted by name} and {table: hidden names not read}."""

    files: dict[str, list[RawFile]]
    ignored: dict[str, list[str]]


def _hidden(rel: str) -> bool:
    """True for Hadoop/Spark markers and hidden files: any path part starting with "." or "_"."""
    return any(part.startswith((".", "_")) for part in PurePosixPath(rel).parts)


def _one_line(e: BaseException) -> str:
    """``"ArrowInvalid: <first line of the message>"`` (pyarrow's "<Buffer>" preamble dropped)."""
    first = (str(e).strip().splitlines() or [""])[0].replace(
        "Could not open Parquet input source '<Buffer>': ", ""
    )
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _list_folder(root: Path) -> Listing:
    """Files of each table below ``root``; raises ``SourceError`` when ``root`` is not a folder."""
    if not root.is_dir():
        raise SourceError(f"source folder not found: {root}")
    out = Listing({t: [] for t in contract.RAW_TABLES}, {t: [] for t in contract.RAW_TABLES})
    for table in contract.RAW_TABLES:
        folder = root / table
        rels = (
            sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            if folder.is_dir()
            else []
        )
        for rel in rels:  # sorted as strings, as s3 lists keys
            path = folder / rel
            if _hidden(rel):
                out.ignored[table].append(f"{table}/{rel}")
                continue
            try:
                out.files[table].append(RawFile(f"{table}/{rel}", rel, path.read_bytes()))
            except OSError as e:
                out.files[table].append(RawFile(f"{table}/{rel}", rel, None, _one_line(e)))
    return out


def _s3_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client; ``SourceError`` for a malformed endpoint or missing configuration."""
    try:
        return boto3.client(
            "s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
        )
    except (ValueError, botocore.exceptions.BotoCoreError) as e:
        raise SourceError(f"cannot open s3 client: {_one_line(e)}") from e


def _list_keys(client: Any, bucket: str, prefix: str, source: str) -> list[str]:
    """Every key under ``prefix``, sorted; ``SourceError`` when listing fails."""
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        raise SourceError(f"cannot list {source}: {_one_line(e)}") from e


def _fetch(client: Any, bucket: str, key: str, rel: str) -> RawFile:
    """One object's bytes; a failed read gives a ``RawFile`` without data (quarantined later)."""
    try:
        return RawFile(key, rel, client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as e:
        return RawFile(key, rel, None, _one_line(e))


def _list_s3(source: str, endpoint_url: str | None) -> Listing:
    """Files of each table under ``s3://bucket/prefix``; ``SourceError`` when nothing is there."""
    bucket, _, prefix = source[len("s3://") :].partition("/")
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    client = _s3_client(endpoint_url)
    out = Listing({t: [] for t in contract.RAW_TABLES}, {t: [] for t in contract.RAW_TABLES})
    keys = _list_keys(client, bucket, base, source)
    if not keys:
        raise SourceError(f"source not found: no object under {source}")
    for key in keys:
        table, _, rel = key[len(base) :].partition("/")
        if table not in out.files or not rel or key.endswith("/"):
            continue
        if _hidden(rel):
            out.ignored[table].append(key)
        else:
            out.files[table].append(_fetch(client, bucket, key, rel))
    return out


def _list_sources(source: str, endpoint_url: str | None) -> Listing:
    """The files of every table of ``source`` (a folder or an s3:// prefix), sorted by name."""
    return (
        _list_s3(source, endpoint_url) if source.startswith("s3://") else _list_folder(Path(source))
    )


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
    """Kind of an Arrow type (dictionaries by their values): number, string, bool, timestamp, null..."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_null(t):
        return "null"
    return "timestamp" if pa.types.is_timestamp(t) else str(t)


#: Kinds of column a contract kind is read from, value by value where the kind differs (a string
#: "12.5" is a price, 6.5 is no id: such values are row-level ``wrong_type``). Any other kind is a
#: mistyped file (``wrong_column_type``): every value would fail, so the file is quarantined whole.
_READ_FROM: dict[str, tuple[str, ...]] = {
    "number": ("number", "string", "null"),
    "string": ("string", "null"),
    "bool": ("bool", "null"),
    "timestamp": ("timestamp", "string", "null"),
}


def _type_problem(t: pa.Table, schema: pa.Schema) -> str | None:
    """``"sequence: timestamp[us] is not castable to int64; ..."`` for contract columns of ``t``
    whose type cannot hold the contract's values, or None when every column can be read."""
    bad = [
        f"{f.name}: {t.schema.field(f.name).type} is not castable to {f.type}"
        for f in schema
        if f.name in t.column_names
        and _family(t.schema.field(f.name).type) not in _READ_FROM[_family(f.type)]
    ]
    return "; ".join(bad) or None


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


def _footer_rows(data: bytes) -> int | None:
    """Rows a parquet footer announces, or None when the footer itself is unreadable."""
    try:
        return int(pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows)
    except Exception:  # noqa: BLE001 - any footer failure means "unknown"
        return None


@dataclass(frozen=True)
class Decoded:
    """One readable file: its name, its columns as written, its rows as a contract frame."""

    name: str
    columns: list[str]
    frame: pd.DataFrame  # (rows, contract columns), from ``_columns``


def _load(table: str, f: RawFile) -> Decoded | QuarantinedFile:
    """The file decoded, or why it is quarantined whole (``unreadable`` or ``wrong_column_type``)."""
    if f.data is None:
        return QuarantinedFile(
            name=f.name, reason="unreadable", detail=f.error or "could not be fetched"
        )
    schema = contract.RAW_TABLES[table]
    try:
        t = pq.read_table(pa.BufferReader(f.data))
        problem = _type_problem(t, schema)
        if problem:
            return QuarantinedFile(
                name=f.name,
                reason="wrong_column_type",
                detail=problem,
                size_bytes=len(f.data),
                rows=t.num_rows,
            )
        return Decoded(f.name, t.column_names, _columns(t, schema))
    except Exception as e:  # noqa: BLE001 - whatever fails to decode one file quarantines that file, not the run
        return QuarantinedFile(
            name=f.name,
            reason="unreadable",
            detail=_one_line(e),
            size_bytes=len(f.data),
            rows=_footer_rows(f.data),
        )


def _columns(t: pa.Table, schema: pa.Schema) -> pd.DataFrame:
    """(rows, contract columns) frame of one file; missing columns are all None.

    Columns whose Arrow type is the contract's (or casts to it losslessly) come through typed;
    any other column comes through as Python objects, to be cast value by value in
    ``validate.coerce``.
    """
    cols = {}
    for f in schema:
        if f.name not in t.column_names:
            cols[f.name] = pd.Series([None] * t.num_rows, dtype=object)
            continue
        col = _safe_cast(t[f.name], f.type)
        if col is not None:
            cols[f.name] = col.to_pandas(types_mapper=_pandas_type)
        else:
            cols[f.name] = pd.Series(t[f.name].to_pylist(), dtype=object)
    return pd.DataFrame(cols)


def _frame(table: str, files: list[Decoded]) -> tuple[pd.DataFrame, Verdict]:
    """Rows of the decoded files of ``table`` concatenated; rows of a file missing contract
    columns are pre-marked ``schema`` in the verdict."""
    names = contract.field_names(contract.RAW_TABLES[table])
    with (
        warnings.catch_warnings()
    ):  # all-null columns: either pandas behaviour gives a correct (maybe object) dtype
        warnings.simplefilter("ignore", FutureWarning)
        df = (
            pd.concat([d.frame for d in files], ignore_index=True)
            if files
            else pd.DataFrame({c: pd.Series([], dtype=object) for c in names})
        )
    v = Verdict(len(df))
    start = 0
    for d in files:
        missing = ", ".join(c for c in names if c not in d.columns)
        if missing:
            bad = np.zeros(len(df), bool)
            bad[start : start + len(d.frame)] = True
            v.mark(bad, "schema", f"missing columns: {missing}")
        start += len(d.frame)
    return df, v


def _extra_columns(table: str, files: list[Decoded]) -> dict[str, list[str]]:
    """{column not in the contract: names of the files carrying it}, columns sorted."""
    known = set(contract.field_names(contract.RAW_TABLES[table]))
    out: dict[str, list[str]] = {}
    for d in files:
        for c in d.columns:
            if c not in known:
                out.setdefault(c, []).append(d.name)
    return dict(sorted(out.items()))


def _run_id(files: dict[str, list[RawFile]]) -> str:
    """16 hex digits: a hash of every file's name and bytes (the same input, the same id)."""
    h = hashlib.sha256()
    for table in sorted(files):
        for f in files[table]:
            h.update(f.name.encode())
            h.update(
                hashlib.sha256(f.data if f.data is not None else (f.error or "").encode()).digest()
            )
    return h.hexdigest()[:16]


def _quarantine(table: str, raw: pd.DataFrame, v: Verdict, run_id: str) -> pa.Table:
    """``contract.QUARANTINE`` rows of the rejected rows of ``raw``."""
    bad = ~v.ok
    rows = raw.loc[bad].to_dict(orient="records")
    return pa.table(
        {
            "table": [table] * len(rows),
            "reason": v.reason[bad].tolist(),
            "detail": v.detail[bad].tolist(),
            "row_json": [json.dumps(r, default=str, sort_keys=True) for r in rows],
            "ingest_run_id": [run_id] * len(rows),
        },
        schema=contract.QUARANTINE,
    )


def _set_aside(table: str, f: RawFile, q: QuarantinedFile, tmp: Path) -> QuarantinedFile:
    """Copy a quarantined file's bytes to ``quarantine/files/<table>/<rel>`` under ``tmp``."""
    if f.data is None:
        return q
    parts = [p for p in PurePosixPath(f.rel).parts if p not in ("", ".", "..", "/")] or ["unnamed"]
    rel = PurePosixPath("quarantine", "files", table, *parts)
    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp / rel).write_bytes(f.data)
    return q.model_copy(update={"copied_to": rel.as_posix()})


def _files_manifest(reports: dict[str, TableReport], run_id: str) -> pa.Table:
    """``contract.QUARANTINE_FILES`` rows of every quarantined file."""
    rows = [
        {
            "table": table,
            "file": q.name,
            "copied_to": q.copied_to,
            "reason": q.reason,
            "detail": q.detail,
            "size_bytes": q.size_bytes,
            "rows": q.rows,
            "ingest_run_id": run_id,
        }
        for table, r in reports.items()
        for q in r.quarantined_files
    ]
    return pa.Table.from_pylist(rows, schema=contract.QUARANTINE_FILES)


def _to_contract(table: str, typed: pd.DataFrame) -> pa.Table:
    """Accepted rows as an Arrow table of exactly ``contract.RAW_TABLES[table]``."""
    return pa.Table.from_pandas(
        typed.reset_index(drop=True), schema=contract.RAW_TABLES[table], preserve_index=False
    )


def _ingest_table(
    table: str,
    listing: Listing,
    now: dt.datetime,
    accepted: dict[str, pd.DataFrame],
    run_id: str,
    tmp: Path,
) -> TableReport:
    """Decode, validate and write one table under ``tmp``; adds its accepted rows to ``accepted``."""
    decoded: list[Decoded] = []
    set_aside: list[QuarantinedFile] = []
    for f in listing.files[table]:
        got = _load(table, f)
        if isinstance(got, QuarantinedFile):
            set_aside.append(_set_aside(table, f, got, tmp))
        else:
            decoded.append(got)
    raw, pre = _frame(table, decoded)
    typed, v = validate_table(table, raw, now, accepted, pre)
    accepted[table] = typed.loc[v.ok]
    folder = tmp / "validated" / table
    folder.mkdir(parents=True)
    pq.write_table(_to_contract(table, accepted[table]), folder / "part-00000.parquet")
    pq.write_table(_quarantine(table, raw, v, run_id), tmp / "quarantine" / f"{table}.parquet")
    reasons = pd.Series(v.reason[~v.ok]).value_counts().sort_index()
    return TableReport(
        read=len(raw),
        accepted=int(v.ok.sum()),
        quarantined=int((~v.ok).sum()),
        by_reason={str(k): int(c) for k, c in reasons.items()},
        files=[f.name for f in listing.files[table]],
        files_in=len(listing.files[table]),
        files_ok=len(decoded),
        files_quarantined=len(set_aside),
        quarantined_files=set_aside,
        extra_columns=_extra_columns(table, decoded),
        ignored=listing.ignored[table],
    )


def ingest(
    source: str,
    out_dir: Path,
    now: dt.datetime | None = None,
    endpoint_url: str | None = None,
    progress: bool = False,
) -> IngestReport:
    """Validate every raw table of ``source`` and publish accepted rows, quarantine and report.

    Parameters
    ----------
    source : a local folder or ``s3://bucket/prefix`` holding ``<table>/**`` parquet files.
    out_dir : the ingested folder to publish (replaced atomically).
    now : timestamps after it are quarantined as ``future_timestamp``; the wall clock when None.
    endpoint_url : S3-compatible endpoint for ``s3://`` sources (else ``AWS_ENDPOINT_URL_S3``).
    progress : show a progress bar over the tables.

    Returns
    -------
    IngestReport, also written as ``ingest_report.json``. A file that cannot be read, or whose
    column types cannot be cast, is quarantined whole and the run goes on; a table with no files
    is reported with zero rows. Raises ``SourceError`` when the source cannot be read at all
    (missing folder, nothing under the s3 prefix, unreachable endpoint, missing bucket).
    """
    now = now or dt.datetime.now(dt.UTC)
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    listing = _list_sources(str(source), endpoint_url)
    run_id = _run_id(listing.files)
    accepted: dict[str, pd.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    with atomic_dir(Path(out_dir)) as tmp:
        (tmp / "quarantine").mkdir()
        for table in tqdm(TABLE_ORDER, desc="ingest tables", disable=not progress):
            reports[table] = _ingest_table(table, listing, now, accepted, run_id, tmp)
        pq.write_table(_files_manifest(reports, run_id), tmp / "quarantine" / "files.parquet")
        report = IngestReport(run_id=run_id, source=str(source), now=now, tables=reports)
        (tmp / "ingest_report.json").write_text(report.model_dump_json(indent=2))
    return report


def read_validated(ingested_dir: Path, table: str) -> pd.DataFrame:
    """Accepted rows of ``table`` from an ingested folder (or its ``validated/`` child) as pandas."""
    d = Path(ingested_dir)
    d = d / "validated" if (d / "validated").is_dir() else d
    return pq.read_table(d / table, schema=contract.RAW_TABLES[table]).to_pandas()
