"""Expectations on every table the data stages produce: schema, nulls, ranges, uniqueness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.data import labels as L
from tests.fixtures_data import make_demo_dataset


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("table", list(contract.RAW_TABLES))
def test_raw_and_validated_tables_match_the_contract(run: Path, table: str) -> None:
    for folder in (run / "raw" / table, run / "ingested" / "validated" / table):
        t = pq.read_table(folder)
        assert t.schema.equals(contract.RAW_TABLES[table], check_metadata=False), folder
        assert t.num_rows > 0
        for f in contract.RAW_TABLES[table]:
            if not f.nullable:
                assert t[f.name].null_count == 0, f.name
        keys = list(contract.PRIMARY_KEYS[table])
        assert not t.to_pandas().duplicated(keys).any(), f"duplicate {keys} in {folder}"


def test_simulated_ranges(run: Path) -> None:
    raw = run / "raw"
    listings = pq.read_table(raw / "listings").to_pandas()
    assert (listings.price > 0).all() and listings.take_rate.between(
        0, 1, inclusive="neither"
    ).all()
    assert (listings.quantity >= 1).all() and (listings.quantity == 1).mean() > 0.8
    imp = pq.read_table(raw / "impressions").to_pandas()
    assert imp.slot.between(0, 5).all() and ((imp.propensity > 0) & (imp.propensity <= 1)).all()
    assert (imp.groupby("request_id").size() == contract.SLATE_SIZE).all()
    assert (imp.groupby("request_id").listing_id.nunique() == contract.SLATE_SIZE).all()
    inv = pq.read_table(raw / "inventory_events").to_pandas()
    assert set(inv.event_type) <= set(contract.INVENTORY_EVENT_TYPES)
    assert {"listed", "locked", "sold"} <= set(inv.event_type)


def test_every_raw_row_accepted_and_counts_add_up(run: Path) -> None:
    import json

    report = json.loads((run / "ingested" / "ingest_report.json").read_text())
    for table, r in report["tables"].items():
        assert r["read"] == r["accepted"] + r["quarantined"]
        assert r["quarantined"] == 0, (table, r["by_reason"])


def test_label_tables_schema_and_invariants(run: Path) -> None:
    lab = pq.read_table(run / "labels" / "impressions_labelled.parquet")
    assert lab.schema.equals(contract.LABELLED_IMPRESSIONS, check_metadata=False)
    df = lab.to_pandas()
    assert (df.purchased <= df.clicked).all()
    assert 0 < df.clicked.mean() < 0.5
    assert len(df) == pq.read_table(run / "raw" / "impressions").num_rows
    for name, schema in (
        ("interactions", L.INTERACTIONS),
        ("co_purchase_items", L.CO_PURCHASE_ITEMS),
        ("category_pairs", contract.CATEGORY_PAIR_FEATURES),
        ("user_sequences", L.USER_SEQUENCES),
        ("negatives", L.NEGATIVES),
    ):
        t = pq.read_table(run / "labels" / f"{name}.parquet")
        assert t.schema.equals(schema, check_metadata=False), name
        assert t.num_rows > 0, name
        for f in schema:
            assert f.nullable or t[f.name].null_count == 0, (name, f.name)
    keys = {
        "impressions_labelled": ["request_id", "slot"],
        "co_purchase_items": ["listing_a", "listing_b", "event_timestamp"],
        "user_sequences": ["user_id"],
        "category_pairs": ["category_a", "category_b", "event_timestamp"],
    }
    for name, key in keys.items():
        df = pq.read_table(run / "labels" / f"{name}.parquet", columns=key).to_pandas()
        assert not df.duplicated().any(), name
    inter = pq.read_table(run / "labels" / "interactions.parquet").to_pandas()
    assert set(inter.kind) == {"order", "click", "purchase"}
    co = pq.read_table(run / "labels" / "co_purchase_items.parquet").to_pandas()
    assert (co.strength > 0).all() and (co.listing_a != co.listing_b).all()
    pairs = pq.read_table(run / "labels" / "category_pairs.parquet").to_pandas()
    assert (pairs.co_purchase_strength > 0).all()
    assert not pairs.duplicated(["category_a", "category_b", "event_timestamp"]).any()
    seq = pq.read_table(run / "labels" / "user_sequences.parquet").to_pandas()
    assert all(
        np.all(np.diff(np.asarray(ts, dtype="datetime64[us]").astype(np.int64)) >= 0)
        for ts in seq.timestamps
    )
