"""Raw parquet files of one table read as contract frames, one record batch at a time.

``ingest`` once read every file of a table whole, built one pandas frame per file and
concatenated them; the frame's dtypes (and so the values quarantined rows are reported with)
came out of that ``pd.concat``. Here each file is read in record batches of ``batch_rows`` rows
and each batch's frame is given the dtypes and values its rows have in that concatenation, so
validating batch by batch sees what validating the whole table saw, holding one batch at a time:

* :func:`probe_part` reads a file once (every column, so a corrupt page fails here, before any
  row is used) and notes per contract column how it decodes (:class:`RawPart`);
* :func:`table_layout` works out the concatenated dtypes from one signature row per file;
* :func:`iter_batches` reads a file's batches and :func:`batch_frame` makes one a
  ``(rows, contract columns)`` frame in that layout.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from checkout_recs import contract

#: How a contract column of one file decodes: cast to the contract type ("typed"), value by value
#: as Python objects ("object", cast later in ``validate.coerce``), or absent ("missing").
Mode = str


def pandas_type(t: pa.DataType) -> object:
    """Nullable pandas dtype for an Arrow type (keeps ints exact with nulls, strings typed)."""
    if pa.types.is_integer(t):
        return pd.api.types.pandas_dtype(f"Int{t.bit_width}")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype("pyarrow")
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def family(t: pa.DataType) -> str:
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
READ_FROM: dict[str, tuple[str, ...]] = {
    "number": ("number", "string", "null"),
    "string": ("string", "null"),
    "bool": ("bool", "null"),
    "timestamp": ("timestamp", "string", "null"),
}


def type_problem(written: pa.Schema, schema: pa.Schema) -> str | None:
    """``"sequence: timestamp[us] is not castable to int64; ..."`` for contract columns of a file
    (schema ``written``) whose type cannot hold the contract's values, or None when every column
    can be read."""
    bad = [
        f"{f.name}: {written.field(f.name).type} is not castable to {f.type}"
        for f in schema
        if f.name in written.names
        and family(written.field(f.name).type) not in READ_FROM[family(f.type)]
    ]
    return "; ".join(bad) or None


def _casts(col: pa.Array, target: pa.DataType) -> bool:
    """True when ``col`` casts to ``target`` losslessly within its family (int32 -> int64,
    naive/ns -> UTC us...; naive timestamps taken as UTC)."""
    if col.type == target:
        return True
    if family(col.type) != family(target):
        return False
    try:
        col.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _all_na(col: pa.Array) -> bool:
    """True when every value of ``col`` is null (or NaN: pandas counts it missing too)."""
    missing = col.null_count
    if pa.types.is_floating(col.type) and len(col) > missing:
        missing += int(pc.sum(pc.is_nan(col)).as_py() or 0)
    return missing == len(col)


@dataclass(frozen=True)
class RawPart:
    """One readable raw file of a table and how its contract columns decode.

    ``modes`` and ``all_na`` are over the whole file (one value per contract column): a column
    that casts in one batch but not in another decodes value by value in every batch, as it did
    when the file was read whole.
    """

    name: str  # "<table>/<path>" for a folder, the key for s3
    path: Path
    columns: list[str]  # the file's columns as written
    rows: int
    modes: dict[str, Mode]
    all_na: dict[str, bool]

    @property
    def missing(self) -> list[str]:
        """Contract columns the file lacks, contract order."""
        return [c for c, m in self.modes.items() if m == "missing"]


def probe_part(table: str, name: str, path: Path, batch_rows: int) -> RawPart:
    """Read ``path`` once, batch by batch, and note how its contract columns decode.

    Raises whatever pyarrow raises for a file that is not readable parquet (the caller
    quarantines the file); a file whose column types cannot be cast is probed all the same
    (check :func:`type_problem` on ``pq.ParquetFile(path).schema_arrow``).
    """
    schema = contract.RAW_TABLES[table]
    pf = pq.ParquetFile(path)
    written = pf.schema_arrow
    present = [f for f in schema if f.name in written.names]
    casts = {f.name: True for f in present}
    all_na = {f.name: True for f in present}
    for batch in pf.iter_batches(batch_size=batch_rows, use_threads=False):
        for f in present:
            col = batch.column(f.name)
            if casts[f.name] and not _casts(col, f.type):
                casts[f.name] = False
            if all_na[f.name] and not _all_na(col):
                all_na[f.name] = False
    modes = {
        f.name: "missing" if f.name not in casts else "typed" if casts[f.name] else "object"
        for f in schema
    }
    return RawPart(
        name=name,
        path=Path(path),
        columns=list(written.names),
        rows=int(pf.metadata.num_rows),
        modes=modes,
        all_na={f.name: all_na.get(f.name, True) for f in schema},
    )


def _decode(col: pa.Array | None, field: pa.Field, mode: Mode, n: int) -> pd.Series:
    """One column of one batch as pandas: typed (cast), Python objects, or n Nones."""
    if mode == "missing" or col is None:
        return pd.Series([None] * n, dtype=object)
    if mode == "object":
        return pd.Series(col.to_pylist(), dtype=object)
    typed = col if col.type == field.type else col.cast(field.type, safe=True)
    return typed.to_pandas(types_mapper=pandas_type)


def _signature(part: RawPart, schema: pa.Schema) -> pd.DataFrame:
    """A frame of the dtypes (and blocks) of ``part``'s decoded frame: 1 row, each value missing
    where the whole column is, else present (0 rows for an empty file)."""
    cols = {}
    for f in schema:
        na = part.all_na[f.name]
        if part.modes[f.name] == "typed":
            sample = pa.array([None], f.type) if na else _present(f.type)
            col = sample.to_pandas(types_mapper=pandas_type)
        else:
            col = pd.Series([None] if na else ["x"], dtype=object)
        cols[f.name] = col.iloc[: 1 if part.rows else 0].reset_index(drop=True)
    return pd.DataFrame(cols)


def _present(t: pa.DataType) -> pa.Array:
    """A one-value array of type ``t`` whose value is not missing."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.array(["x"], t)
    if pa.types.is_boolean(t):
        return pa.array([True], t)
    if pa.types.is_floating(t):
        return pa.array([1.0], t)
    if pa.types.is_timestamp(t):
        return pa.array([0], pa.int64()).cast(t)
    return pa.array([1], t)


@dataclass(frozen=True)
class TableLayout:
    """Dtypes of a table's concatenated frame and how each file's columns get there.

    ``dtypes``: {contract column: dtype of the column of ``pd.concat`` over the files' frames}.
    ``fill``: per file, {column entirely missing in that file: the value its rows hold in the
    concatenation} (pandas leaves such a column out when choosing the dtype and fills it with
    the result dtype's missing value).
    """

    dtypes: dict[str, object]
    fill: list[dict[str, object]]


def table_layout(table: str, parts: list[RawPart]) -> TableLayout:
    """The layout of ``pd.concat`` over the decoded frames of ``parts`` (in order), from one
    signature row per file."""
    schema = contract.RAW_TABLES[table]
    sigs = [_signature(p, schema) for p in parts]
    if not sigs:
        return TableLayout({f.name: np.dtype(object) for f in schema}, [])
    with warnings.catch_warnings():  # all-NA entries: the behaviour the whole-table read had
        warnings.simplefilter("ignore", FutureWarning)
        whole = pd.concat(sigs, ignore_index=True)
    fill: list[dict[str, object]] = []
    row = 0
    for p in parts:
        fill.append({c: whole[c].iloc[row] for c, na in p.all_na.items() if na} if p.rows else {})
        row += 1 if p.rows else 0
    return TableLayout({c: whole[c].dtype for c in whole.columns}, fill)


def iter_batches(table: str, part: RawPart, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """``part``'s contract columns (those it has) in record batches of ``batch_rows`` rows (the
    last one shorter), file order."""
    schema = contract.RAW_TABLES[table]
    read = [f.name for f in schema if part.modes[f.name] != "missing"]
    pf = pq.ParquetFile(part.path)
    yield from pf.iter_batches(batch_size=batch_rows, columns=read, use_threads=False)


def batch_frame(
    table: str, batch: pa.RecordBatch, part: RawPart, fill: dict[str, object], layout: TableLayout
) -> pd.DataFrame:
    """``(rows, contract columns)`` frame of one batch of ``part`` (from :func:`iter_batches`) with
    the dtypes and values these rows have in the table's concatenated frame (``layout``; ``fill``
    is ``layout.fill`` of this part). Index 0..rows-1."""
    n = batch.num_rows
    cols = {}
    for f in contract.RAW_TABLES[table]:
        dtype = layout.dtypes[f.name]
        if f.name in fill:
            cols[f.name] = pd.Series([fill[f.name]] * n, dtype=dtype)
            continue
        col = batch.column(f.name) if part.modes[f.name] != "missing" else None
        s = _decode(col, f, part.modes[f.name], n)
        cols[f.name] = s.astype(object) if dtype == np.dtype(object) and s.dtype != dtype else s
    return pd.DataFrame(cols)
