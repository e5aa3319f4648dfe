"""Ingest batch by batch gives what validating each table whole gives, on bad input.

The reference below is the whole-table path ingest had before it read in record batches: every
file of a table read whole, one pandas frame per file, ``pd.concat``, ``validate_table``, the
accepted rows written at once and the rejected rows' raw values as JSON. The planted rows put
duplicates in other files and batches than their first occurrence, foreign keys whose targets
sit in a later batch (or file) of their own table, mixed column types across files (a column
read value by value in one file only, so that the concatenated column is of Python objects; an
all-null column typed ``null`` that the concatenation fills with NaN), a file without a
contract column and an empty file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.data.ingest import ingest
from checkout_recs.data.raw_parts import family, pandas_type, type_problem
from checkout_recs.data.validate import (
    REASONS,
    TABLE_ORDER,
    Verdict,
    check_duplicates,
    check_foreign_keys,
    check_inventory_order,
    validate_table,
)
from checkout_recs.simulate import SimConfig, run_simulation
from tests.fixtures_data import NOW

SMALL = SimConfig(seed=3, n_sellers=6, n_listings=40, n_users=12, days=2, checkouts_per_day=20)
FUTURE = pd.Timestamp("2027-01-01", tz="UTC")


def _loose(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def _retype(table: str, **types: pa.DataType) -> pa.Schema:
    return pa.schema(
        [pa.field(f.name, types.get(f.name, f.type)) for f in _loose(contract.RAW_TABLES[table])]
    )


def _write(raw: Path, table: str, name: str, rows: list[dict], schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), raw / table / name)


def _first(raw: Path, table: str, **changes: object) -> dict:
    base = pq.read_table(raw / table / "part-00000.parquet").slice(0, 1).to_pylist()[0]
    return {**base, **changes}


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated run plus bad rows and drifting files in every table."""
    raw = tmp_path_factory.mktemp("messy") / "raw"
    run_simulation(SMALL, raw)
    listing, seller, user = (
        _first(raw, "listings"),
        _first(raw, "sellers"),
        _first(raw, "users"),
    )
    cat = dict(parent_id=0, top_category_id=0)
    _write(
        raw,
        "categories",
        "part-00101.parquet",
        [
            {**cat, "category_id": 900, "parent_id": 901, "name": "child before its parent"},
            {**cat, "category_id": 902, "parent_id": 99_999, "name": "dangling parent"},
            {**cat, "category_id": 901, "name": "the parent, a later batch"},
            {**cat, "category_id": 0, "name": "duplicate of the first category"},
        ],
        _loose(contract.CATEGORIES),
    )
    _write(  # rating typed null: read value by value, every value missing (NaN once concatenated)
        raw,
        "sellers",
        "part-00101.parquet",
        [
            {**seller, "seller_id": 9_000_005, "rating": None},
            {**seller, "seller_id": 9_000_006, "rating": None, "region": "mars"},
        ],
        _retype("sellers", rating=pa.null()),
    )
    _write(
        raw,
        "sellers",
        "part-00102.parquet",
        [
            {**seller, "seller_id": 9_000_007, "rating": 9.0},
            {**seller, "rating": 3.0},  # duplicate of the first seller, another file
        ],
        _loose(contract.SELLERS),
    )
    _write(  # ids as floats (6.5 is no id): the whole file's user_id read value by value
        raw,
        "users",
        "part-00101.parquet",
        [
            {**user, "user_id": 5000.0, "signup_at": "2026-09-01T00:00:00Z"},
            {**user, "user_id": 6.5, "signup_at": "2026-09-01T00:00:00Z"},
            {**user, "user_id": 5001.0, "signup_at": "not a date"},
            {**user, "user_id": 5000.0, "signup_at": "2026-09-02T00:00:00Z"},  # duplicate
        ],
        _retype("users", user_id=pa.float64(), signup_at=pa.string()),
    )
    _write(  # ids typed, one missing: an object column once concatenated with the floats above
        raw,
        "users",
        "part-00102.parquet",
        [{**user, "user_id": None}, {**user, "user_id": 5002, "device": "fax"}],
        _loose(contract.USERS),
    )
    _write(
        raw,
        "listings",
        "part-00101.parquet",
        [
            {**listing, "title": "duplicate of an earlier file's listing"},
            {**listing, "listing_id": 9_000_001, "seller_id": 10**9},
            {**listing, "listing_id": 9_000_002, "seller_id": 9_000_005},  # seller of a later file
            {**listing, "listing_id": 9_000_003, "price": -5.0},
            {**listing, "listing_id": 9_000_004, "listed_at": FUTURE},
            {**listing, "listing_id": 9_000_003, "title": "first valid row of 9000003"},
            {**listing, "listing_id": 9_000_003, "title": "its duplicate"},
            {**listing, "listing_id": 9_000_009, "title": None, "region": "mars"},
        ],
        _loose(contract.LISTINGS),
    )
    _write(
        raw,
        "listings",
        "part-00102.parquet",
        [
            {**listing, "listing_id": 9_000_006, "price": "12.5"},
            {**listing, "listing_id": 9_000_007, "price": "abc"},
        ],
        _retype("listings", price=pa.string()),
    )
    _write(raw, "listings", "part-00103.parquet", [], _loose(contract.LISTINGS))  # empty
    imp = _first(raw, "impressions")
    _write(
        raw,
        "impressions",
        "part-00101.parquet",
        [
            {**imp},  # duplicate (request_id, slot)
            {**imp, "request_id": "r-new", "listing_id": 9_000_002},  # a planted listing
            {**imp, "request_id": "r-bad", "listing_id": 10**9},
            {**imp, "request_id": "r-new", "slot": 7},
            {**imp, "request_id": "r-none", "order_id": None, "policy": "  "},
        ],
        _loose(contract.IMPRESSIONS),
    )
    click = {
        "request_id": "r-new",
        "user_id": imp["user_id"],
        "listing_id": 9_000_002,
        "event_timestamp": imp["event_timestamp"],
    }
    _write(
        raw,
        "clicks",
        "part-00101.parquet",
        [click, {**click, "request_id": "r-nowhere"}, click],
        _loose(contract.CLICKS),
    )
    order = _first(raw, "orders")
    _write(
        raw,
        "orders",
        "part-00101.parquet",
        [{**order, "order_id": "o-late", "event_timestamp": FUTURE}, order],
        _loose(contract.ORDERS),
    )
    inv = pq.read_table(raw / "inventory_events").to_pandas()
    busy = int(inv.groupby("listing_id").sequence.max().idxmax())
    last = inv[inv.listing_id == busy].event_timestamp.max()
    ev = _first(raw, "inventory_events")
    _write(
        raw,
        "inventory_events",
        "part-00101.parquet",
        [
            {
                **ev,
                "event_id": "e-late",
                "listing_id": busy,
                "sequence": 1,
                "event_timestamp": last,
            },
            {
                **ev,
                "event_id": "e-ok",
                "listing_id": busy,
                "sequence": 10**6,
                "event_timestamp": last + pd.Timedelta(hours=1),
            },
            {**ev},  # duplicate event_id
            {**ev, "event_id": "e-nolisting", "listing_id": 10**9},
            {**ev, "event_id": "e-type", "event_type": "teleported"},
        ],
        _loose(contract.INVENTORY_EVENTS),
    )
    no_seq = pa.schema([f for f in _loose(contract.INVENTORY_EVENTS) if f.name != "sequence"])
    row = {k: x for k, x in ev.items() if k != "sequence"}
    _write(raw, "inventory_events", "part-00102.parquet", [{**row, "event_id": "e-s"}], no_seq)
    return raw


def _frame(t: pa.Table, schema: pa.Schema) -> pd.DataFrame:
    """One file whole as ingest decoded it before batches: columns that cast losslessly typed,
    others as Python objects, missing ones None."""
    cols = {}
    for f in schema:
        if f.name not in t.column_names:
            cols[f.name] = pd.Series([None] * t.num_rows, dtype=object)
            continue
        col, cast = t[f.name], None
        if col.type == f.type:
            cast = col
        elif family(col.type) == family(f.type):
            try:
                cast = col.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                cast = None
        cols[f.name] = (
            cast.to_pandas(types_mapper=pandas_type)
            if cast is not None
            else pd.Series(col.to_pylist(), dtype=object)
        )
    return pd.DataFrame(cols)


def _whole_table(
    raw: Path, table: str, accepted: dict[str, pd.DataFrame]
) -> tuple[pa.Table, list[dict]]:
    """(validated table, quarantine rows) of ``table`` validated whole."""
    schema = contract.RAW_TABLES[table]
    names = contract.field_names(schema)
    frames, missing = [], []
    for path in sorted((raw / table).iterdir()):
        t = pq.read_table(path)
        if type_problem(t.schema, schema):
            continue
        frames.append(_frame(t, schema))
        missing.append(", ".join(c for c in names if c not in t.column_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        df = pd.concat(frames, ignore_index=True)
    pre = Verdict(len(df))
    start = 0
    for f, miss in zip(frames, missing, strict=True):
        if miss:
            bad = np.zeros(len(df), bool)
            bad[start : start + len(f)] = True
            pre.mark(bad, "schema", f"missing columns: {miss}")
        start += len(f)
    typed, v = validate_table(table, df, NOW, accepted, pre)
    accepted[table] = typed.loc[v.ok]
    good = pa.Table.from_pandas(
        typed.loc[v.ok].reset_index(drop=True), schema=schema, preserve_index=False
    )
    bad = ~v.ok
    rows = [
        {"reason": r, "detail": d, "row_json": json.dumps(x, default=str, sort_keys=True)}
        for r, d, x in zip(
            v.reason[bad], v.detail[bad], df.loc[bad].to_dict(orient="records"), strict=True
        )
    ]
    return good, rows


@pytest.fixture(scope="module")
def whole(messy: Path) -> dict[str, tuple[pa.Table, list[dict]]]:
    accepted: dict[str, pd.DataFrame] = {}
    return {t: _whole_table(messy, t, accepted) for t in TABLE_ORDER}


def test_the_messy_input_exercises_every_reason(whole) -> None:  # noqa: ANN001
    reasons = {r["reason"] for _, rows in whole.values() for r in rows}
    assert reasons == set(REASONS)
    validated = {t: good for t, (good, _) in whole.items()}
    assert {900, 901} <= set(validated["categories"].column("category_id").to_pylist())
    assert 9_000_002 in validated["listings"].column("listing_id").to_pylist()


@pytest.mark.parametrize("batch_rows", [1, 2, 7, 1_000_000])
def test_batches_of_any_size_give_the_whole_table_result(
    messy: Path,
    whole,  # noqa: ANN001
    tmp_path: Path,
    batch_rows: int,
) -> None:
    report = ingest(str(messy), tmp_path / "ing", now=NOW, batch_rows=batch_rows)
    for table, (good, rows) in whole.items():
        got = pq.read_table(tmp_path / "ing" / "validated" / table)
        assert got.schema.equals(good.schema, check_metadata=True), table
        assert got.equals(good), table
        q = pq.read_table(tmp_path / "ing" / "quarantine" / f"{table}.parquet")
        assert q.select(["reason", "detail", "row_json"]).to_pylist() == rows, table
        r = report.tables[table]
        assert (r.read, r.accepted, r.quarantined) == (
            good.num_rows + len(rows),
            good.num_rows,
            len(rows),
        ), table
        assert r.by_reason == dict(
            sorted(pd.Series([x["reason"] for x in rows]).value_counts().items())
        ), table


def test_reports_and_files_do_not_depend_on_the_batch_size(messy: Path, tmp_path: Path) -> None:
    a = ingest(str(messy), tmp_path / "a", now=NOW, batch_rows=3)
    b = ingest(str(messy), tmp_path / "b", now=NOW)
    assert a.model_dump() == b.model_dump()
    for table in contract.RAW_TABLES:
        for sub in (f"validated/{table}", f"quarantine/{table}.parquet"):
            assert pq.read_table(tmp_path / "a" / sub).equals(pq.read_table(tmp_path / "b" / sub))


def _naive_duplicates(keys: list[tuple], ok: np.ndarray) -> list[bool]:
    seen: set[tuple] = set()
    out = []
    for k, good in zip(keys, ok, strict=True):
        out.append(bool(good) and k in seen)
        if good:
            seen.add(k)
    return out


@pytest.mark.parametrize("rows_per_pass", [1, 3, 1 << 21])
def test_duplicates_in_passes_over_key_ranges_are_the_repeats_of_earlier_rows(
    rows_per_pass: int,
) -> None:
    rng = np.random.default_rng(5)
    n = 400
    order_ids = [f"o-{x}" for x in rng.integers(0, 90, n)]
    listing_ids = rng.integers(1, 4, n)
    df = pd.DataFrame(
        {
            "order_id": pd.Series(order_ids, dtype=pd.StringDtype("pyarrow")),
            "listing_id": pd.Series(listing_ids, dtype="Int64"),
        }
    )
    v = Verdict(n)
    v.mark(np.arange(n) % 13 == 0, "null", "planted")
    ok = v.ok
    check_duplicates("orders", df, v, rows_per_pass=rows_per_pass)
    expected = _naive_duplicates(list(zip(order_ids, listing_ids, strict=True)), ok)
    assert list(v.reason == "duplicate") == expected
    assert 0 < sum(expected) < n


@pytest.mark.parametrize("rows_per_pass", [1, 5, 1 << 21])
def test_inventory_order_in_passes_over_listings_is_the_one_pass_result(
    rows_per_pass: int,
) -> None:
    rng = np.random.default_rng(6)
    n = 300
    df = pd.DataFrame(
        {
            "listing_id": pd.Series(rng.integers(1, 20, n), dtype="Int64"),
            "event_timestamp": pd.Series(
                pd.to_datetime(rng.integers(0, 50, n), unit="s", utc=True)
            ).dt.as_unit("us"),
            "sequence": pd.Series(rng.integers(1, 30, n), dtype="Int64"),
        }
    )
    one, passes = Verdict(n), Verdict(n)
    check_inventory_order(df, one, rows_per_pass=n)
    check_inventory_order(df, passes, rows_per_pass=rows_per_pass)
    assert list(one.reason) == list(passes.reason)
    assert 0 < (one.reason == "out_of_order").sum() < n


def test_integer_foreign_keys_are_the_values_among_the_parents_accepted_ids() -> None:
    rng = np.random.default_rng(7)
    n = 500
    df = pd.DataFrame(
        {
            "listing_id": pd.Series(rng.integers(-3, 60, n), dtype="Int64"),
            "user_id": pd.Series(rng.integers(1, 30, n), dtype="Int64"),
        }
    )
    df.loc[[4, 9], "listing_id"] = None
    parents = {
        "listings": pd.DataFrame(
            {"listing_id": pd.Series([*range(0, 60, 3), None], dtype="Int64")}
        ),
        "users": pd.DataFrame({"user_id": pd.Series([], dtype="Int64")}),
    }
    v = Verdict(n)
    check_foreign_keys("inventory_events", df, parents, v)
    known = set(range(0, 60, 3))
    expected = [x is not pd.NA and x not in known for x in df.listing_id.array]
    assert list(v.reason == "unknown_foreign_key") == expected
    assert 0 < sum(expected) < n
