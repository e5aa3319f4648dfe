"""Ingest with planted bad rows of every kind: each lands in quarantine with the right reason."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.data import ingest as ingest_mod
from checkout_recs.data.ingest import SourceError, ingest
from checkout_recs.simulate import run_simulation
from tests.fixtures_data import NOW, TINY

FUTURE = pd.Timestamp("2027-01-01", tz="UTC")


def _loose(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def _plant(
    raw: Path, table: str, rows: list[dict], part: int = 1, schema: pa.Schema | None = None
) -> None:
    schema = schema or _loose(contract.RAW_TABLES[table])
    pq.write_table(
        pa.Table.from_pylist(rows, schema=schema), raw / table / f"part-{part + 100:05d}.parquet"
    )


def _row(raw: Path, table: str, **changes: object) -> dict:
    base = pq.read_table(raw / table / "part-00000.parquet").slice(0, 1).to_pylist()[0]
    return {**base, **changes}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], str]]:
    """A tiny raw run plus bad rows; returns (raw dir, {(table, marker): expected reason})."""
    raw = tmp_path_factory.mktemp("planted") / "raw"
    run_simulation(TINY, raw)
    imp0 = _row(raw, "impressions")
    good_listing, good_user = imp0["listing_id"], imp0["user_id"]
    inv = pq.read_table(raw / "inventory_events").to_pandas()
    busy = inv.groupby("listing_id").sequence.max().idxmax()  # a listing with several events
    last = inv[inv.listing_id == busy].event_timestamp.max()
    expected = {}

    def plant(table: str, marker: str, reason: str, **changes: object) -> dict:
        expected[(table, marker)] = reason
        return _row(raw, table, **changes)

    _plant(
        raw,
        "listings",
        [
            plant("listings", "9000001", "out_of_range", listing_id=9000001, price=-5.0),
            plant("listings", "9000002", "out_of_range", listing_id=9000002, take_rate=1.5),
            plant(
                "listings", "9000003", "unknown_foreign_key", listing_id=9000003, seller_id=10**9
            ),
            plant("listings", "9000004", "future_timestamp", listing_id=9000004, listed_at=FUTURE),
            plant("listings", "9000005", "null", listing_id=9000005, title=None),
            plant("listings", "dup", "duplicate", title="a second row for an existing id"),
            # value rules of the contract (contract.RANGES, ALLOWED_VALUES, NON_EMPTY_STRINGS)
            plant("listings", "9000008", "out_of_range", listing_id=9000008, price=float("inf")),
            plant("listings", "9000009", "out_of_range", listing_id=9000009, title=""),
            plant("listings", "9000010", "out_of_range", listing_id=9000010, title="   "),
            plant("listings", "9000011", "out_of_range", listing_id=9000011, region="mars"),
            plant("listings", "-7", "out_of_range", listing_id=-7),
        ],
    )
    bad_type = pa.schema(
        [
            f if f.name != "price" else pa.field("price", pa.string())
            for f in _loose(contract.LISTINGS)
        ]
    )
    _plant(
        raw,
        "listings",
        [
            plant("listings", "9000006", "wrong_type", listing_id=9000006, price="abc"),
            {**_row(raw, "listings"), "listing_id": 9000007, "price": "12.5"},
        ],
        part=2,
        schema=bad_type,
    )
    _plant(
        raw,
        "categories",
        [
            plant("categories", "9001", "out_of_range", category_id=9001, name=""),
            plant("categories", "-2", "out_of_range", category_id=-2),
        ],
    )
    _plant(
        raw,
        "sellers",
        [
            plant("sellers", "9000001", "out_of_range", seller_id=9000001, rating=7.0),
            plant("sellers", "9000002", "out_of_range", seller_id=9000002, region="atlantis"),
        ],
    )
    _plant(
        raw,
        "users",
        [
            plant("users", "9000001", "out_of_range", user_id=9000001, device="fax"),
            plant("users", "-3", "out_of_range", user_id=-3),
        ],
    )
    _plant(
        raw,
        "orders",
        [
            plant(
                "orders",
                "o-future",
                "future_timestamp",
                order_id="o-future",
                event_timestamp=FUTURE,
            ),
            plant(
                "orders",
                "o-nolisting",
                "unknown_foreign_key",
                order_id="o-nolisting",
                listing_id=10**9,
            ),
        ],
    )
    _plant(
        raw,
        "impressions",
        [
            plant("impressions", "r-p0", "out_of_range", request_id="r-p0", propensity=0.0),
            plant("impressions", "r-p2", "out_of_range", request_id="r-p2", propensity=1.2),
            plant("impressions", "r-slot", "out_of_range", request_id="r-slot", slot=6),
            plant(
                "impressions",
                "r-listing",
                "unknown_foreign_key",
                request_id="r-listing",
                listing_id=10**9,
            ),
            plant(
                "impressions", "r-user", "unknown_foreign_key", request_id="r-user", user_id=10**9
            ),
        ],
    )
    _plant(
        raw,
        "clicks",
        [
            plant(
                "clicks",
                "r-none",
                "unknown_foreign_key",
                request_id="r-none",
                listing_id=good_listing,
                user_id=good_user,
            )
        ],
    )
    _plant(
        raw,
        "purchases",
        [
            plant("purchases", "p-neg", "out_of_range", purchase_id="p-neg", price=-1.0),
            plant("purchases", "p-inf", "out_of_range", purchase_id="p-inf", price=float("-inf")),
        ],
    )
    _plant(
        raw,
        "inventory_events",
        [
            plant(
                "inventory_events",
                "e-order",
                "out_of_order",
                event_id="e-order",
                listing_id=int(busy),
                sequence=1,
                event_type="locked",
                lock_ttl_s=60,
                event_timestamp=last + pd.Timedelta(minutes=5),
            ),
            plant(
                "inventory_events",
                "e-type",
                "out_of_range",
                event_id="e-type",
                event_type="teleported",
            ),
        ],
    )
    no_seq = pa.schema([f for f in _loose(contract.INVENTORY_EVENTS) if f.name != "sequence"])
    r = plant("inventory_events", "e-schema", "schema", event_id="e-schema")
    del r["sequence"]
    _plant(raw, "inventory_events", [r], part=2, schema=no_seq)
    return raw, expected


def _marker(table: str, row: dict) -> str:
    key = {
        "categories": "category_id",
        "listings": "listing_id",
        "sellers": "seller_id",
        "users": "user_id",
        "orders": "order_id",
        "impressions": "request_id",
        "clicks": "request_id",
        "purchases": "purchase_id",
        "inventory_events": "event_id",
    }[table]
    return str(row[key])


def test_every_planted_row_is_quarantined_with_its_reason(planted, tmp_path: Path) -> None:  # noqa: ANN001
    raw, expected = planted
    report = ingest(str(raw), tmp_path / "ing", now=NOW)
    got = {}
    for table in contract.RAW_TABLES:
        q = pq.read_table(tmp_path / "ing" / "quarantine" / f"{table}.parquet")
        assert q.schema.equals(contract.QUARANTINE, check_metadata=False)
        for rec in q.to_pylist():
            marker = _marker(table, json.loads(rec["row_json"]))
            if (table, marker) not in expected and table == "listings":
                marker = "dup"
            got[(table, marker)] = rec["reason"]
            assert rec["detail"] and rec["ingest_run_id"] == report.run_id
    assert got == expected
    for table, r in report.tables.items():
        assert r.read == r.accepted + r.quarantined, table
        assert sum(r.by_reason.values()) == r.quarantined
        assert r.accepted == pq.read_table(tmp_path / "ing" / "validated" / table).num_rows
    # every good row accepted: the originals plus the numeric-string price that casts cleanly
    originals = {
        t: pq.read_table(raw / t / "part-00000.parquet").num_rows
        for t in ("orders", "impressions", "clicks")
    }
    for t, n in originals.items():
        assert report.tables[t].accepted >= n
    listings = pq.read_table(tmp_path / "ing" / "validated" / "listings").to_pandas()
    assert listings.loc[listings.listing_id == 9000007, "price"].tolist() == [12.5]


def test_reingest_is_idempotent_and_replaces_atomically(planted, tmp_path: Path) -> None:  # noqa: ANN001
    raw, _ = planted
    out = tmp_path / "ing"
    a = ingest(str(raw), out, now=NOW)
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}
    b = ingest(str(raw), out, now=NOW)
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}
    assert a.model_dump() == b.model_dump()
    assert first == second
    assert [p.name for p in tmp_path.iterdir()] == ["ing"]  # no temporary sibling left behind


def test_a_failed_run_leaves_the_previous_output_intact(
    planted,
    tmp_path: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw, _ = planted
    out = tmp_path / "ing"
    ingest(str(raw), out, now=NOW)
    before = (out / "ingest_report.json").read_text()
    real = ingest_mod._ingest_table

    def fail_on_orders(table: str, *args: object) -> object:
        if table == "orders":
            raise RuntimeError("disk full")
        return real(table, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_mod, "_ingest_table", fail_on_orders)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(str(raw), out, now=dt.datetime(2026, 10, 3, tzinfo=dt.UTC))
    assert (out / "ingest_report.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ing"]


def test_missing_source_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source folder not found"):
        ingest(str(tmp_path / "nope"), tmp_path / "out")


def test_now_decides_what_is_in_the_future(planted, tmp_path: Path) -> None:  # noqa: ANN001
    raw, _ = planted
    early = ingest(str(raw), tmp_path / "early", now=dt.datetime(2026, 10, 3, tzinfo=dt.UTC))
    assert early.tables["orders"].by_reason.get("future_timestamp", 0) > 100


def test_lossless_casts_are_accepted_and_lossy_ones_quarantined(tmp_path: Path) -> None:
    import datetime as _dt

    src = tmp_path / "src" / "users"
    src.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1, 2, 3, 4], pa.int32()),  # int32 -> int64: lossless
                "region": ["north", "south", "east", "north"],
                "device": ["web", "ios", "android", "web"],
                "signup_at": pa.array(
                    [_dt.datetime(2026, 1, 1)] * 4, pa.timestamp("ns")
                ),  # naive ns -> UTC us
            }
        ),
        src / "part-0.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([5.0, 6.5], pa.float64()),  # 6.5 is not an id
                "region": ["north", "north"],
                "device": ["web", "web"],
                "signup_at": pa.array([_dt.datetime(2026, 1, 1)] * 2, pa.timestamp("ms", tz="UTC")),
            }
        ),
        src / "part-1.parquet",
    )
    report = ingest(str(tmp_path / "src"), tmp_path / "out", now=NOW)
    users = pq.read_table(tmp_path / "out" / "validated" / "users").to_pandas()
    assert users.user_id.tolist() == [1, 2, 3, 4, 5]
    assert (
        str(users.signup_at.dt.tz) == "UTC"
        and (users.signup_at == pd.Timestamp("2026-01-01", tz="UTC")).all()
    )
    assert report.tables["users"].by_reason == {"wrong_type": 1}


def test_each_value_rule_is_quarantined_with_the_column_and_the_rule(
    planted, tmp_path: Path
) -> None:  # noqa: ANN001
    raw, _ = planted
    ingest(str(raw), tmp_path / "ing", now=NOW)
    details = {}
    for table in ("categories", "sellers", "users", "listings", "purchases"):
        for rec in pq.read_table(tmp_path / "ing" / "quarantine" / f"{table}.parquet").to_pylist():
            details[(table, _marker(table, json.loads(rec["row_json"])))] = rec["detail"]
    assert details[("listings", "9000008")] == "price outside (0, inf): inf"
    assert details[("purchases", "p-inf")] == "price outside (0, inf): -inf"
    assert details[("listings", "9000009")] == details[("listings", "9000010")] == "title is empty"
    assert details[("categories", "9001")] == "name is empty"
    assert details[("listings", "9000011")].startswith(
        "unknown region 'mars' (allowed: north, south, east, west"
    )
    assert details[("sellers", "9000002")].startswith("unknown region 'atlantis'")
    assert details[("listings", "-7")] == "listing_id outside [1, inf): -7"
    assert details[("users", "-3")] == "user_id outside [1, inf): -3"
    assert details[("categories", "-2")] == "category_id outside [0, inf): -2"


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean tiny simulator run (not to be modified: copy it)."""
    raw = tmp_path_factory.mktemp("tiny") / "raw"
    run_simulation(TINY, raw)
    return raw


def _manifest(out: Path) -> list[dict]:
    q = pq.read_table(out / "quarantine" / "files.parquet")
    assert q.schema.equals(contract.QUARANTINE_FILES, check_metadata=False)
    return q.to_pylist()


def test_unreadable_files_are_quarantined_whole_and_the_rest_is_ingested(
    tiny_raw: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(tiny_raw, raw)
    good = (raw / "listings" / "part-00000.parquet").read_bytes()
    (raw / "listings" / "part-00001.parquet").write_bytes(good[: len(good) // 2])  # truncated
    (raw / "users" / "part-00001.parquet").write_bytes(
        b"user_id,region\n1,north\n"
    )  # csv named .parquet
    (raw / "users" / "export.csv").write_bytes(
        b"user_id,region\n2,south\n"
    )  # not parquet, any name
    (raw / "users" / "_SUCCESS").write_bytes(b"")  # a writer's marker: ignored, not read
    clean = ingest(str(tiny_raw), tmp_path / "clean", now=NOW)
    report = ingest(str(raw), tmp_path / "ing", now=NOW)

    for table, r in report.tables.items():
        assert (
            r.read == r.accepted + r.quarantined and r.files_in == r.files_ok + r.files_quarantined
        ), table
        assert (r.read, r.accepted, r.quarantined) == (
            clean.tables[table].read,
            clean.tables[table].accepted,
            clean.tables[table].quarantined,
        ), table
    assert (report.tables["listings"].files_in, report.tables["listings"].files_quarantined) == (
        2,
        1,
    )
    assert (report.tables["users"].files_in, report.tables["users"].files_quarantined) == (3, 2)
    assert report.tables["users"].ignored == ["users/_SUCCESS"]
    got = {m["file"]: m for m in _manifest(tmp_path / "ing")}
    assert set(got) == {
        "listings/part-00001.parquet",
        "users/export.csv",
        "users/part-00001.parquet",
    }
    assert {m["reason"] for m in got.values()} == {"unreadable"}
    assert all(
        "parquet" in m["detail"] and m["ingest_run_id"] == report.run_id for m in got.values()
    )
    for name, m in got.items():  # the copy is the file, byte for byte
        assert (tmp_path / "ing" / m["copied_to"]).read_bytes() == (raw / name).read_bytes()
        assert m["size_bytes"] == (raw / name).stat().st_size
    saved = json.loads((tmp_path / "ing" / "ingest_report.json").read_text())
    assert [q["name"] for q in saved["tables"]["users"]["quarantined_files"]] == [
        "users/export.csv",
        "users/part-00001.parquet",
    ]


def test_a_file_whose_column_types_cannot_be_cast_is_quarantined_whole(tmp_path: Path) -> None:
    src = tmp_path / "src" / "users"
    src.mkdir(parents=True)
    when = pa.array([dt.datetime(2026, 1, 1)] * 2, pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table(
            {
                "user_id": [1, 2],
                "region": ["north", "south"],
                "device": ["web", "ios"],
                "signup_at": when,
            }
        ),
        src / "a.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": [3, 4],
                "region": ["north", "south"],
                "device": [1, 2],  # ints for strings
                "signup_at": [1_767_225_600, 1_767_225_601],
            }
        ),
        src / "b.parquet",
    )  # bare numbers
    report = ingest(str(tmp_path / "src"), tmp_path / "out", now=NOW)
    users = report.tables["users"]
    assert (users.read, users.accepted, users.files_ok, users.files_quarantined) == (2, 2, 1, 1)
    [m] = _manifest(tmp_path / "out")
    assert (m["file"], m["reason"], m["rows"]) == ("users/b.parquet", "wrong_column_type", 2)
    assert "device: int64 is not castable to string" in m["detail"]
    assert "signup_at: int64 is not castable to timestamp" in m["detail"]


def test_extra_columns_are_reported_not_silently_dropped(tmp_path: Path) -> None:
    src = tmp_path / "src" / "users"
    src.mkdir(parents=True)
    when = pa.array([dt.datetime(2026, 1, 1)] * 2, pa.timestamp("us", tz="UTC"))
    base = {
        "user_id": [1, 2],
        "region": ["north", "south"],
        "device": ["web", "ios"],
        "signup_at": when,
    }
    pq.write_table(pa.table(base), src / "a.parquet")
    pq.write_table(
        pa.table({**base, "user_id": [3, 4], "loyalty_tier": ["gold", "tin"]}), src / "b.parquet"
    )
    report = ingest(str(tmp_path / "src"), tmp_path / "out", now=NOW)
    assert report.tables["users"].extra_columns == {"loyalty_tier": ["users/b.parquet"]}
    assert report.tables["users"].accepted == 4
    saved = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    assert saved["tables"]["users"]["extra_columns"] == {"loyalty_tier": ["users/b.parquet"]}
    assert (
        "loyalty_tier" not in pq.read_table(tmp_path / "out" / "validated" / "users").column_names
    )
