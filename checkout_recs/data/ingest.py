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

Memory: no file is held whole. Files are read in record batches of ``batch_rows`` rows
(``raw_parts``) and each table is validated in two passes (``validate_batched``): row-level checks
per batch, with the rows passing them spilled to disk, then the table-wide checks (duplicates,
foreign keys, inventory order) on the key columns only; the parents' key columns are all that is
kept from one table to the next. An s3 source is downloaded object by object to a temporary
folder next to ``out_dir`` first (spill files go there too; it is removed at the end).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import botocore.exceptions
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel
from tqdm import tqdm

from checkout_recs import contract
from checkout_recs.data.publish import atomic_dir
from checkout_recs.data.raw_parts import RawPart, probe_part, table_layout, type_problem
from checkout_recs.data.validate import TABLE_ORDER
from checkout_recs.data.validate_batched import check_table, write_quarantine, write_validated

#: Rows per record batch read and validated at a time (pyarrow's default row group size: a
#: validated file has row groups of this size where its raw files are larger).
BATCH_ROWS = 1 << 20


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
    """One source file of a table: ``path`` (a local file: the source's, or the downloaded copy of
    an s3 object) and ``digest`` (sha256 of its bytes) are None when reading it failed (``error``
    says why)."""

    name: str  # "<table>/<path>" for a folder, the key for s3
    rel: str  # path below the table's folder, "/"-separated
    path: Path | None
    digest: bytes | None = None
    error: str | None = None


def _digest(path: Path) -> bytes:
    """sha256 of a file's bytes, read in blocks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").digest()


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
                out.files[table].append(RawFile(f"{table}/{rel}", rel, path, _digest(path)))
            except OSError as e:
                out.files[table].append(RawFile(f"{table}/{rel}", rel, None, None, _one_line(e)))
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


def _fetch(client: Any, bucket: str, key: str, rel: str, local: Path) -> RawFile:
    """One object downloaded to ``local`` (streamed, in blocks); a failed read gives a
    ``RawFile`` without a path (quarantined later)."""
    try:
        local.parent.mkdir(parents=True, exist_ok=True)
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with open(local, "wb") as fh:
            shutil.copyfileobj(body, fh, 1 << 20)
        return RawFile(key, rel, local, _digest(local))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as e:
        local.unlink(missing_ok=True)
        return RawFile(key, rel, None, None, _one_line(e))


def _list_s3(source: str, endpoint_url: str | None, download: Path) -> Listing:
    """Files of each table under ``s3://bucket/prefix``, downloaded below ``download``;
    ``SourceError`` when nothing is there."""
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
            local = download / f"{len(out.files[table]):06d}-{table}"
            out.files[table].append(_fetch(client, bucket, key, rel, local))
    return out


def _list_sources(source: str, endpoint_url: str | None, download: Path) -> Listing:
    """The files of every table of ``source`` (a folder or an s3:// prefix, whose objects are
    downloaded below ``download``), sorted by name."""
    return (
        _list_s3(source, endpoint_url, download)
        if source.startswith("s3://")
        else _list_folder(Path(source))
    )


def _footer_rows(path: Path) -> int | None:
    """Rows a parquet footer announces, or None when the footer itself is unreadable."""
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # noqa: BLE001 - any footer failure means "unknown"
        return None


def _load(table: str, f: RawFile, batch_rows: int) -> RawPart | QuarantinedFile:
    """The file probed (read once, batch by batch: ``raw_parts.probe_part``), or why it is
    quarantined whole (``unreadable`` or ``wrong_column_type``)."""
    if f.path is None:
        return QuarantinedFile(
            name=f.name, reason="unreadable", detail=f.error or "could not be fetched"
        )
    schema = contract.RAW_TABLES[table]
    size: int | None = None
    try:
        size = f.path.stat().st_size
        part = probe_part(table, f.name, f.path, batch_rows)
        problem = type_problem(pq.ParquetFile(f.path).schema_arrow, schema)
        if problem:
            return QuarantinedFile(
                name=f.name,
                reason="wrong_column_type",
                detail=problem,
                size_bytes=size,
                rows=part.rows,
            )
        return part
    except Exception as e:  # noqa: BLE001 - whatever fails to decode one file quarantines that file, not the run
        return QuarantinedFile(
            name=f.name,
            reason="unreadable",
            detail=_one_line(e),
            size_bytes=size,
            rows=_footer_rows(f.path),
        )


def _extra_columns(table: str, parts: list[RawPart]) -> dict[str, list[str]]:
    """{column not in the contract: names of the files carrying it}, columns sorted."""
    known = set(contract.field_names(contract.RAW_TABLES[table]))
    out: dict[str, list[str]] = {}
    for d in parts:
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
            h.update(f.digest or hashlib.sha256((f.error or "").encode()).digest())
    return h.hexdigest()[:16]


def _set_aside(table: str, f: RawFile, q: QuarantinedFile, tmp: Path) -> QuarantinedFile:
    """Copy a quarantined file to ``quarantine/files/<table>/<rel>`` under ``tmp``."""
    if f.path is None:
        return q
    parts = [p for p in PurePosixPath(f.rel).parts if p not in ("", ".", "..", "/")] or ["unnamed"]
    rel = PurePosixPath("quarantine", "files", table, *parts)
    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(f.path, tmp / rel)
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


def _ingest_table(
    table: str,
    listing: Listing,
    now: dt.datetime,
    accepted: dict[str, pd.DataFrame],
    run_id: str,
    tmp: Path,
    spill: Path,
    batch_rows: int = BATCH_ROWS,
) -> TableReport:
    """Validate one table batch by batch and write it under ``tmp`` (``validate_batched``); adds
    its accepted rows' parent columns to ``accepted`` and uses ``spill`` for its spill file."""
    parts: list[RawPart] = []
    set_aside: list[QuarantinedFile] = []
    for f in listing.files[table]:
        got = _load(table, f, batch_rows)
        if isinstance(got, QuarantinedFile):
            set_aside.append(_set_aside(table, f, got, tmp))
        else:
            parts.append(got)
    layout = table_layout(table, parts)
    checked = check_table(
        table, parts, layout, now, accepted, spill / f"{table}.parquet", batch_rows
    )
    folder = tmp / "validated" / table
    folder.mkdir(parents=True)
    write_validated(checked, folder / "part-00000.parquet", batch_rows)
    q_path = tmp / "quarantine" / f"{table}.parquet"
    write_quarantine(table, parts, layout, checked, run_id, q_path, batch_rows)
    v = checked.verdict
    ok = v.ok
    reasons = pd.Series(v.reason[~ok]).value_counts().sort_index()
    return TableReport(
        read=checked.rows,
        accepted=int(ok.sum()),
        quarantined=int((~ok).sum()),
        by_reason={str(k): int(c) for k, c in reasons.items()},
        files=[f.name for f in listing.files[table]],
        files_in=len(listing.files[table]),
        files_ok=len(parts),
        files_quarantined=len(set_aside),
        quarantined_files=set_aside,
        extra_columns=_extra_columns(table, parts),
        ignored=listing.ignored[table],
    )


def ingest(
    source: str,
    out_dir: Path,
    now: dt.datetime | None = None,
    endpoint_url: str | None = None,
    progress: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> IngestReport:
    """Validate every raw table of ``source`` and publish accepted rows, quarantine and report.

    Parameters
    ----------
    source : a local folder or ``s3://bucket/prefix`` holding ``<table>/**`` parquet files.
    out_dir : the ingested folder to publish (replaced atomically).
    now : timestamps after it are quarantined as ``future_timestamp``; the wall clock when None.
    endpoint_url : S3-compatible endpoint for ``s3://`` sources (else ``AWS_ENDPOINT_URL_S3``).
    progress : show a progress bar over the tables.
    batch_rows : rows read and validated at a time (memory follows it; the output does not).

    Returns
    -------
    IngestReport, also written as ``ingest_report.json``. A file that cannot be read, or whose
    column types cannot be cast, is quarantined whole and the run goes on; a table with no files
    is reported with zero rows. Raises ``SourceError`` when the source cannot be read at all
    (missing folder, nothing under the s3 prefix, unreachable endpoint, missing bucket).
    """
    now = now or dt.datetime.now(dt.UTC)
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    # spill files and downloaded objects, next to the output (a rename moves a spill file there)
    with tempfile.TemporaryDirectory(
        prefix=".ingest-spill-", dir=Path(out_dir).parent
    ) as spill_dir:
        spill = Path(spill_dir)
        listing = _list_sources(str(source), endpoint_url, spill / "download")
        run_id = _run_id(listing.files)
        accepted: dict[str, pd.DataFrame] = {}  # {table: accepted rows' parent columns}
        reports: dict[str, TableReport] = {}
        with atomic_dir(Path(out_dir)) as tmp:
            (tmp / "quarantine").mkdir()
            for table in tqdm(TABLE_ORDER, desc="ingest tables", disable=not progress):
                reports[table] = _ingest_table(
                    table, listing, now, accepted, run_id, tmp, spill, batch_rows
                )
            pq.write_table(_files_manifest(reports, run_id), tmp / "quarantine" / "files.parquet")
            report = IngestReport(run_id=run_id, source=str(source), now=now, tables=reports)
            (tmp / "ingest_report.json").write_text(report.model_dump_json(indent=2))
    return report


def read_validated(
    ingested_dir: Path, table: str, columns: list[str] | None = None
) -> pd.DataFrame:
    """Accepted rows of ``table`` from an ingested folder (or its ``validated/`` child) as pandas:
    every contract column, or only ``columns`` (in that order; the others are not read)."""
    d = Path(ingested_dir)
    d = d / "validated" if (d / "validated").is_dir() else d
    return pq.read_table(d / table, schema=contract.RAW_TABLES[table], columns=columns).to_pandas()
