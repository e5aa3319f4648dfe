"""Row-level validation of raw tables against ``checkout_recs.contract``.

Each check marks the rows it rejects with a reason (the first failing check wins), so every row
read ends up either accepted or quarantined with exactly one reason. Reasons, in check order:

``schema`` (a required column is missing from the file), ``wrong_type`` (a value cannot be cast
to the contract type), ``null`` (null in a non-null column), ``out_of_range`` (a value rule of the
contract: ``contract.RANGES`` such as negative ids, non-positive or infinite prices, take_rate
outside (0, 1); ``contract.ALLOWED_VALUES`` such as unknown region codes, devices, event types;
``contract.NON_EMPTY_STRINGS`` such as empty titles), ``future_timestamp`` (after ``now``),
``duplicate`` (primary key seen before; the first occurrence is kept), ``unknown_foreign_key``
(e.g. an impression of an unknown listing), ``out_of_order`` (inventory ``sequence`` not strictly
increasing per listing in time order).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from checkout_recs import contract

REASONS = (
    "schema",
    "wrong_type",
    "null",
    "out_of_range",
    "future_timestamp",
    "duplicate",
    "unknown_foreign_key",
    "out_of_order",
)

#: (column, parent table, parent column) per table; checked against *accepted* parent rows.
FOREIGN_KEYS: dict[str, list[tuple[str, str, str]]] = {
    "categories": [
        ("parent_id", "categories", "category_id"),
        ("top_category_id", "categories", "category_id"),
    ],
    "sellers": [],
    "users": [],
    "listings": [
        ("seller_id", "sellers", "seller_id"),
        ("category_id", "categories", "category_id"),
    ],
    "orders": [("user_id", "users", "user_id"), ("listing_id", "listings", "listing_id")],
    "impressions": [("user_id", "users", "user_id"), ("listing_id", "listings", "listing_id")],
    "clicks": [
        ("user_id", "users", "user_id"),
        ("listing_id", "listings", "listing_id"),
        ("request_id", "impressions", "request_id"),
    ],
    "purchases": [("user_id", "users", "user_id"), ("listing_id", "listings", "listing_id")],
    "inventory_events": [("listing_id", "listings", "listing_id")],
}

#: Validation order: parents before children.
TABLE_ORDER = (
    "categories",
    "sellers",
    "users",
    "listings",
    "orders",
    "impressions",
    "clicks",
    "purchases",
    "inventory_events",
)


class Verdict:
    """Per-row reason (None = accepted so far) and detail, (n,) object arrays."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.detail = np.full(n, None, dtype=object)
        self._ok = np.ones(n, bool)

    def mark(self, bad: np.ndarray, reason: str, detail: str | np.ndarray) -> None:
        """Give ``reason`` to rows in boolean mask ``bad`` (n,) that have no reason yet."""
        new = np.asarray(bad, bool) & self._ok
        if not new.any():
            return
        self.reason[new] = reason
        self.detail[new] = (
            detail if isinstance(detail, str) else np.asarray(detail, dtype=object)[new]
        )
        self._ok &= ~new

    def mark_rows(self, rows: np.ndarray, reasons: np.ndarray, details: np.ndarray) -> None:
        """Give row positions ``rows`` (k,) int the reasons and details (k,) found elsewhere (one
        batch's row-level verdict, say); rows that already have a reason keep it."""
        rows = np.asarray(rows, np.int64)
        new = self._ok[rows]
        rows = rows[new]
        self.reason[rows] = np.asarray(reasons, dtype=object)[new]
        self.detail[rows] = np.asarray(details, dtype=object)[new]
        self._ok[rows] = False

    @property
    def ok(self) -> np.ndarray:
        """(n,) bool: rows with no reason (a copy)."""
        return self._ok.copy()


def coerce(df: pd.DataFrame, schema: pa.Schema, v: Verdict) -> pd.DataFrame:
    """Cast each column of ``df`` to its contract type; uncastable values mark ``wrong_type``.

    Columns already of the right kind pass through (fast path); object columns are cast value by value.
    """
    out = {}
    for f in schema:
        col, t = df[f.name], f.type
        present = col.notna().to_numpy(dtype=bool)
        if pa.types.is_integer(t):
            out[f.name], bad = _to_int(col, present, t)
        elif pa.types.is_floating(t):
            out[f.name], bad = _to_float(col, present)
        elif pa.types.is_boolean(t):
            ok = pd.api.types.is_bool_dtype(col)
            bad = (
                np.zeros(len(col), bool)
                if ok
                else present & ~col.map(lambda x: isinstance(x, bool | np.bool_)).to_numpy(bool)
            )
            out[f.name] = col.astype("boolean") if ok else col.where(~bad).astype("boolean")
        elif pa.types.is_timestamp(t):
            out[f.name], bad = _to_timestamp(col, present)
        else:  # strings
            ok = isinstance(col.dtype, pd.StringDtype)
            bad = (
                np.zeros(len(col), bool)
                if ok
                else present & ~col.map(lambda x: isinstance(x, str)).to_numpy(bool)
            )
            out[f.name] = col if ok else col.where(~bad).astype(pd.StringDtype("pyarrow"))
        v.mark(bad, "wrong_type", f"{f.name}: not castable to {t}")
    return pd.DataFrame(out, index=df.index)


def _to_int(col: pd.Series, present: np.ndarray, t: pa.DataType) -> tuple[pd.Series, np.ndarray]:
    info = np.iinfo(t.to_pandas_dtype())
    dtype = f"Int{t.bit_width}"
    if pd.api.types.is_integer_dtype(col) and not pd.api.types.is_bool_dtype(col):
        vals = col.astype("Int64")
        bad = present & ((vals < info.min) | (vals > info.max)).fillna(False).to_numpy(bool)
        return col.where(~bad).astype(dtype), bad
    num = pd.to_numeric(col.where(~col.map(lambda x: isinstance(x, bool)), None), errors="coerce")
    vals = num.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = present & (
            np.isnan(vals) | (vals != np.round(vals)) | (vals < info.min) | (vals > info.max)
        )
    clean = np.where(bad | ~present, np.nan, vals)
    return pd.array(clean, dtype="Float64").round().astype(dtype), bad


def _to_float(col: pd.Series, present: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_float_dtype(col) or (
        pd.api.types.is_integer_dtype(col) and not pd.api.types.is_bool_dtype(col)
    ):
        return col.astype("float64"), np.zeros(len(col), bool)
    is_bool = col.map(lambda x: isinstance(x, bool)).to_numpy(bool)
    num = pd.to_numeric(col.where(~is_bool, None), errors="coerce").astype("float64")
    return num, present & (num.isna().to_numpy() | is_bool)


def _to_timestamp(col: pd.Series, present: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC").dt.as_unit("us"), np.zeros(len(col), bool)
    if _is_numeric(col):  # bare numbers are not times: the unit would be a guess
        return pd.Series(pd.NaT, index=col.index, dtype="datetime64[us, UTC]"), present
    ts = pd.to_datetime(
        col.map(lambda x: x if isinstance(x, str | dt.datetime) else None),
        utc=True,
        errors="coerce",
        format="mixed",
    )
    return ts.dt.as_unit("us"), present & ts.isna().to_numpy()


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def check_nulls(df: pd.DataFrame, schema: pa.Schema, v: Verdict) -> None:
    """Null in a non-nullable column -> ``null``."""
    for f in schema:
        if not f.nullable:
            v.mark(df[f.name].isna().to_numpy(), "null", f"{f.name} is null")


def _outside(s: pd.Series, rule: contract.Range) -> np.ndarray:
    """(n,) bool: present values of ``s`` that break ``rule`` (±inf always do; nulls never)."""
    x = s.astype("float64").to_numpy(na_value=np.nan)
    with np.errstate(invalid="ignore"):
        lo_ok = x > rule.lo if rule.lo_open else x >= rule.lo
        hi_ok = x < rule.hi if rule.hi_open else x <= rule.hi
    return ~np.isnan(x) & ~(lo_ok & hi_ok & np.isfinite(x))


def _per_row(s: pd.Series, bad: np.ndarray, template: str) -> np.ndarray:
    """(n,) object details: ``template`` formatted with the value (``{!r}``) where ``bad``."""
    detail = np.full(len(s), None, dtype=object)
    if bad.any():
        detail[bad] = [template.format(x) for x in s.iloc[np.flatnonzero(bad)].tolist()]
    return detail


def check_ranges(table: str, df: pd.DataFrame, v: Verdict) -> None:
    """Value rules of the contract -> ``out_of_range``; the detail names the column and the rule.

    Rules (``contract.RANGES``, ``contract.ALLOWED_VALUES``, ``contract.NON_EMPTY_STRINGS``) are
    keyed by column name and apply to every column of ``table`` with that name; nulls are left to
    ``check_nulls``.
    """
    for col, rule in contract.RANGES.items():
        if col in df:
            bad = _outside(df[col], rule)
            v.mark(bad, "out_of_range", _per_row(df[col], bad, f"{rule.describe(col)}: {{!r}}"))
    for col, allowed in contract.ALLOWED_VALUES.items():
        if col in df:
            bad = df[col].notna().to_numpy(bool) & ~df[col].isin(allowed).to_numpy(bool)
            v.mark(
                bad,
                "out_of_range",
                _per_row(df[col], bad, f"unknown {col} {{!r}} (allowed: {', '.join(allowed)})"),
            )
    for col in contract.NON_EMPTY_STRINGS:
        if col in df:
            blank = (df[col].astype(pd.StringDtype("pyarrow")).str.strip().str.len() == 0).fillna(
                False
            )
            v.mark(blank.to_numpy(bool), "out_of_range", f"{col} is empty")


def check_future(df: pd.DataFrame, schema: pa.Schema, now: dt.datetime, v: Verdict) -> None:
    """Any timestamp column after ``now`` -> ``future_timestamp``."""
    stamp = (
        pd.Timestamp(now).tz_convert("UTC")
        if pd.Timestamp(now).tzinfo
        else pd.Timestamp(now, tz="UTC")
    )
    for f in schema:
        if pa.types.is_timestamp(f.type):
            v.mark(
                (df[f.name] > stamp).fillna(False).to_numpy(bool),
                "future_timestamp",
                f"{f.name} after {stamp.isoformat()}",
            )


def _first_seen(col: pd.Series | np.ndarray) -> np.ndarray:
    """(n,) int64 code of each value of ``col``, values numbered 0, 1, ... in the order they first
    appear (a hash table: one pass, no sort; nulls share one code). Strings are hashed in Arrow
    (``pd.factorize`` would make a Python object of each), numbers by ``pd.factorize``."""
    if isinstance(col, pd.Series) and isinstance(col.dtype, pd.StringDtype):
        enc = pc.dictionary_encode(pa.array(col, pa.large_string()), null_encoding="encode")
        chunks = enc.chunks if isinstance(enc, pa.ChunkedArray) else [enc]
        parts = [c.indices.to_numpy(zero_copy_only=False).astype(np.int64) for c in chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return pd.factorize(col, use_na_sentinel=False)[0].astype(np.int64, copy=False)


def _key_codes(cols: list[pd.Series]) -> np.ndarray:
    """(n,) int64 code of each row's key tuple (the values of ``cols``), tuples numbered in the
    order they first appear."""
    code = _first_seen(cols[0])
    for col in cols[1:]:
        other = _first_seen(col)
        width = int(other.max()) + 1 if len(other) else 1
        code = _first_seen(code * width + other)  # < n * n: fits in int64
    return code


def _value_ranges(col: pd.Series, passes: int) -> Iterator[np.ndarray]:
    """``passes`` boolean masks (n,) over the rows of ``col``, one per range of its values (split
    at quantiles of a sample; nulls in the first): equal values always share a mask."""
    if passes <= 1:
        yield np.ones(len(col), bool)
        return
    arr = pa.array(col)
    step = max(1, len(col) // 100_000)
    sample = pc.drop_null(arr.take(pa.array(np.arange(0, len(col), step))))
    if len(sample) == 0:
        yield np.ones(len(col), bool)
        return
    ordered = sample.take(pc.sort_indices(sample))
    bounds: list[pa.Scalar] = []
    for j in range(1, passes):
        q = ordered[len(ordered) * j // passes]
        if not bounds or q.as_py() != bounds[-1].as_py():
            bounds.append(q)
    edges = [None, *bounds, None]
    for j in range(len(edges) - 1):
        lo, hi = edges[j], edges[j + 1]
        mask = pc.is_valid(arr)
        if lo is not None:
            mask = pc.and_(mask, pc.greater_equal(arr, lo))
        if hi is not None:
            mask = pc.and_(mask, pc.less(arr, hi))
        if j == 0:
            mask = pc.or_(mask, pc.is_null(arr))
        yield np.asarray(mask.to_numpy(zero_copy_only=False), bool)


def check_duplicates(
    table: str, df: pd.DataFrame, v: Verdict, rows_per_pass: int = 1 << 21
) -> None:
    """Second and later rows with the same primary key (among rows still accepted) -> ``duplicate``.

    Key tuples are numbered in the order they first appear, so a row repeats an earlier key
    exactly when its number is not above every number before it (a running maximum; no sort).
    Rows are taken in passes over ranges of the first key column of about ``rows_per_pass`` rows
    each (a key's repeats share its range), so the hash table follows a pass, not the table.
    """
    keys = list(contract.PRIMARY_KEYS[table])
    ok = v.ok
    if ok.sum() < 2:
        return
    dup = np.zeros(len(df), bool)
    passes = -(-int(ok.sum()) // rows_per_pass)
    for in_range in _value_ranges(df[keys[0]], passes):
        idx = np.flatnonzero(in_range & ok)
        if len(idx) < 2:
            continue
        code = _key_codes([df[k].iloc[idx] for k in keys])
        seen = np.maximum.accumulate(code)
        dup[idx[np.r_[False, code[1:] <= seen[:-1]]]] = True
    v.mark(dup, "duplicate", f"duplicate key {tuple(keys)}")


def check_foreign_keys(
    table: str, df: pd.DataFrame, accepted: dict[str, pd.DataFrame], v: Verdict
) -> None:
    """Values not present among the accepted rows of the parent table -> ``unknown_foreign_key``."""
    for col, parent, pcol in FOREIGN_KEYS[table]:
        if parent == table:
            known = df.loc[v.ok, pcol]
        elif parent in accepted:
            known = accepted[parent][pcol]
        else:
            continue
        vals = df[col]
        present = vals.notna().to_numpy()
        if isinstance(vals.dtype, pd.StringDtype):
            value_set = pa.array(known.dropna().unique(), pa.string())
            member = pc.is_in(pa.array(vals, pa.string()), value_set=value_set).to_numpy(
                zero_copy_only=False
            )
        elif pd.api.types.is_integer_dtype(vals) and pd.api.types.is_integer_dtype(known):
            member = _among(vals, known)
        else:
            member = vals.isin(known.dropna().unique()).to_numpy()
        bad = present & ~np.asarray(member, bool)
        v.mark(bad, "unknown_foreign_key", f"{col} not in {parent}.{pcol}")


def _among(vals: pd.Series, known: pd.Series, rows_per_pass: int = 1 << 22) -> np.ndarray:
    """(n,) bool: integer ``vals`` present among ``known``'s values (nulls never are), by binary
    search in ``known``'s sorted distinct values (a sorted int64 copy instead of a hash table of
    them), ``rows_per_pass`` values at a time, each pass's values searched in sorted order (in
    order, the searches walk the table once instead of jumping about it)."""
    table = np.sort(known.dropna().to_numpy(np.int64))
    table = table[np.r_[True, table[1:] != table[:-1]]] if len(table) else table
    out = np.zeros(len(vals), bool)
    if len(table) == 0:
        return out
    for start in range(0, len(vals), rows_per_pass):
        part = vals.iloc[start : start + rows_per_pass]
        x = part.to_numpy(np.int64, na_value=0)
        order = np.argsort(x, kind="stable")
        xs = x[order]
        found = np.empty(len(x), bool)
        found[order] = table[np.minimum(np.searchsorted(table, xs), len(table) - 1)] == xs
        out[start : start + len(x)] = found & part.notna().to_numpy(bool)
    return out


def check_inventory_order(df: pd.DataFrame, v: Verdict, rows_per_pass: int = 1 << 21) -> None:
    """Per listing, in (event_timestamp, sequence) order, ``sequence`` must strictly increase.

    Listings are independent, so the rows are checked in passes over listing ids ``% passes``
    of about ``rows_per_pass`` rows each (memory follows a pass, not the table).
    """
    idx_all = np.flatnonzero(v.ok)
    if len(idx_all) < 2:
        return
    bad = np.zeros(len(df), bool)
    listing_all = df["listing_id"].to_numpy(np.int64, na_value=-1)
    passes = -(-len(idx_all) // rows_per_pass)
    for j in range(passes):
        idx = idx_all[listing_all[idx_all] % passes == j] if passes > 1 else idx_all
        bad[_out_of_order(df, idx, listing_all[idx])] = True
    v.mark(bad, "out_of_order", "sequence not increasing for this listing")


def _out_of_order(df: pd.DataFrame, idx: np.ndarray, listing: np.ndarray) -> np.ndarray:
    """Positions (k,) among rows ``idx`` (m,) of ``df`` (whose listing ids are ``listing``, (m,))
    whose ``sequence`` does not exceed every earlier one of their listing in (event_timestamp,
    sequence, position) order."""
    ts = df["event_timestamp"].iloc[idx].dt.as_unit("us").astype("int64").to_numpy()
    seq = df["sequence"].iloc[idx].to_numpy(np.int64)
    order = np.lexsort((idx, seq, ts, listing))
    del ts
    listing, seq = listing[order], seq[order]
    start = np.r_[True, listing[1:] != listing[:-1]]  # first event of each listing
    group = np.cumsum(start)
    previous = np.where(
        start, np.iinfo(np.int64).min, np.r_[0, seq[:-1]]
    )  # the row before, same listing
    prev_max = _group_cummax(previous, group)  # max sequence seen so far for this listing
    return idx[order[seq <= prev_max]]


def _group_cummax(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running maximum of ``x`` (n,) restarting at each new value of sorted ``group`` (n,)."""
    return pd.Series(x).groupby(group, sort=False).cummax().to_numpy()


def key_columns(table: str) -> list[str]:
    """Columns of ``table`` the table-wide checks (:func:`validate_keys`) read: its primary key,
    its foreign-key columns, the parent columns of a self-reference, and for inventory events the
    ordering columns; contract order."""
    need = set(contract.PRIMARY_KEYS[table])
    for col, parent, pcol in FOREIGN_KEYS[table]:
        need.add(col)
        if parent == table:
            need.add(pcol)
    if table == "inventory_events":
        need |= {"listing_id", "event_timestamp", "sequence"}
    return [c for c in contract.field_names(contract.RAW_TABLES[table]) if c in need]


def parent_columns(table: str) -> list[str]:
    """Columns of ``table`` that other tables' foreign keys point at (what later tables need of
    its accepted rows); contract order."""
    need = {pcol for fks in FOREIGN_KEYS.values() for _, parent, pcol in fks if parent == table}
    return [c for c in contract.field_names(contract.RAW_TABLES[table]) if c in need]


def validate_rows(
    table: str, df: pd.DataFrame, now: dt.datetime, pre: Verdict | None = None
) -> tuple[pd.DataFrame, Verdict]:
    """The row-level checks of one raw table (or any slice of its rows): type, null, range, time.

    Each row's verdict depends on that row alone (and on the frame's dtypes), so a table checked
    batch by batch gets the verdicts it would get whole.

    Parameters
    ----------
    table : name in ``contract.RAW_TABLES``.
    df : (n rows) raw values, every contract column present.
    now : timestamps after it are rejected.
    pre : verdict carrying reasons found while reading (``schema``), or None.

    Returns
    -------
    typed : (n rows) the values cast to contract types (rejected rows may hold nulls).
    verdict : reason and detail per row (None where accepted so far).
    """
    schema = contract.RAW_TABLES[table]
    v = pre or Verdict(len(df))
    typed = coerce(df, schema, v)
    check_nulls(typed, schema, v)
    check_ranges(table, typed, v)
    check_future(typed, schema, now, v)
    return typed, v


def validate_keys(
    table: str, keys: pd.DataFrame, accepted: dict[str, pd.DataFrame], v: Verdict
) -> None:
    """The table-wide checks of one raw table, in order: duplicate keys, foreign keys, inventory
    order, among the rows ``v`` still accepts.

    Parameters
    ----------
    table : name in ``contract.RAW_TABLES``.
    keys : (n rows, at least :func:`key_columns`) typed values of the whole table, in row order.
    accepted : {parent table: frame holding its accepted rows' columns that ``table``'s foreign
        keys point at} (:func:`parent_columns`; unique values suffice).
    v : (n rows) verdict of the row-level checks, completed in place.
    """
    check_duplicates(table, keys, v)
    check_foreign_keys(table, keys, accepted, v)
    if table == "inventory_events":
        check_inventory_order(keys, v)


def validate_table(
    table: str,
    df: pd.DataFrame,
    now: dt.datetime,
    accepted: dict[str, pd.DataFrame],
    pre: Verdict | None = None,
) -> tuple[pd.DataFrame, Verdict]:
    """Type, null, range, time, duplicate, foreign-key and order checks of one whole raw table
    (:func:`validate_rows` then :func:`validate_keys`).

    Parameters
    ----------
    table : name in ``contract.RAW_TABLES``.
    df : (n rows) raw values, every contract column present (missing ones filled with None and
        pre-marked ``schema`` in ``pre``).
    now : timestamps after it are rejected.
    accepted : typed accepted rows of the tables validated before (parents).
    pre : verdict carrying reasons found while reading (``schema``), or None.

    Returns
    -------
    typed : (n rows) the values cast to contract types (rejected rows may hold nulls).
    verdict : reason and detail per row (None where accepted).
    """
    typed, v = validate_rows(table, df, now, pre)
    validate_keys(table, typed, accepted, v)
    return typed, v
