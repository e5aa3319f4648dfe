"""Alert rules rendered into the base; index refresh adds new listings and removes sold ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from checkout_recs import contract
from checkout_recs.deploy.alerts import (
    RULE_SOURCES,
    SOURCE,
    TARGET_NAME,
    render_prometheus_rule,
    render_source,
    sync_alerts,
)
from checkout_recs.deploy.index_refresh import gone_listings, new_listings
from tests.fixtures_ops import REPO

# --------------------------------------------------------------------------------------- alerts


def test_render_accepts_plain_rules_and_prometheusrule(tmp_path):
    plain = tmp_path / "rules.yaml"
    plain.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]})
    )
    doc = yaml.safe_load(render_prometheus_rule(plain, label="monitoring/alerts/x.yaml"))
    assert doc["kind"] == "PrometheusRule" and doc["spec"]["groups"][0]["rules"][0]["alert"] == "A"
    wrapped = tmp_path / "cr.yaml"
    wrapped.write_text(
        yaml.safe_dump({"kind": "PrometheusRule", "spec": {"groups": doc["spec"]["groups"]}})
    )
    assert yaml.safe_load(render_prometheus_rule(wrapped))["spec"] == doc["spec"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("groups: []\n")
    with pytest.raises(ValueError, match="no rule groups"):
        render_prometheus_rule(empty)


def test_sync_writes_the_rule_and_lists_it_once(tmp_path):
    (tmp_path / "monitoring/alerts").mkdir(parents=True)
    (tmp_path / "manifests/base").mkdir(parents=True)
    (tmp_path / "manifests/base/kustomization.yaml").write_text(
        "resources:\n  - prometheusrule.yaml\n"
    )
    assert sync_alerts(tmp_path) == []  # nothing to sync yet
    (tmp_path / SOURCE).write_text(
        "groups:\n  - name: drift\n    rules:\n      - alert: Drift\n        expr: x > 1\n"
        "        annotations: {runbook_url: docs/monitoring.md#drift-flag}\n"
    )
    sync_alerts(tmp_path)
    written = sync_alerts(tmp_path, base="https://runbooks.example.com")
    assert written == [tmp_path / "manifests/base" / TARGET_NAME]
    assert (tmp_path / "manifests/base/kustomization.yaml").read_text().count(TARGET_NAME) == 1
    text = (tmp_path / "manifests/base" / TARGET_NAME).read_text()
    assert (
        "GENERATED" in text
        and "runbook_url: https://runbooks.example.com/docs/monitoring.md#drift-flag" in text
    )


@pytest.mark.parametrize("src", RULE_SOURCES, ids=lambda s: s.target)
def test_repository_copies_of_the_rule_files_are_current(src):
    target = REPO / "manifests/base" / src.target
    assert target.exists(), "run `checkout-recs manifests sync-alerts`"
    assert target.read_text() == render_source(REPO, src), (
        "stale: re-run `checkout-recs manifests sync-alerts`"
    )


# -------------------------------------------------------------------------------- index refresh


def test_gone_listings_uses_the_latest_event_per_listing():
    ev = pd.DataFrame(
        {
            "listing_id": [1, 1, 2, 2, 3],
            "sequence": [1, 2, 1, 2, 1],
            "event_type": ["listed", "sold", "sold", "listed", "delisted"],
        }
    )
    assert sorted(gone_listings(ev)) == [1, 3]  # 2 was relisted after its sale
    assert len(gone_listings(ev.iloc[:0])) == 0


def test_new_listings_excludes_known_and_gone():
    lst = pd.DataFrame({"listing_id": [1, 2, 3, 4, 4]})
    assert new_listings(lst, known=np.array([1]), gone=np.array([3]))["listing_id"].tolist() == [
        2,
        4,
    ]


def _write(folder: Path, table: str, df: pd.DataFrame) -> None:
    (folder / "validated" / table).mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pandas(df, schema=contract.RAW_TABLES[table], preserve_index=False),
        folder / "validated" / table / "part-00000.parquet",
    )


@pytest.mark.slow
def test_refresh_adds_retrievable_new_listings_and_drops_sold(tmp_path):
    from checkout_recs.deploy.index_refresh import refresh_bundle
    from checkout_recs.retrieval.index import RetrievalIndex
    from tests.fixtures_models import make_demo_bundle

    bundle = make_demo_bundle(tmp_path / "b")
    old = RetrievalIndex.load(bundle / "index")
    snap = old.snapshot
    sold = old.live_ids[:5]
    base = snap.iloc[:7]
    ts = pd.Timestamp("2026-11-01", tz="UTC")
    new = pd.DataFrame(
        {
            "listing_id": np.arange(7) + 10_000_000,
            "seller_id": base["seller_id"].to_numpy(),
            "category_id": base["category_id"].astype("int32").to_numpy(),
            "region": base["region"].to_numpy(),
            "title": base["title"].fillna("x").to_numpy(),
            "price": base["price"].to_numpy(),
            "take_rate": base["take_rate"].to_numpy(),
            "quantity": np.ones(7, np.int32),
            "listed_at": ts,
        }
    )
    ing = tmp_path / "ingested"
    _write(ing, "listings", new)
    _write(
        ing,
        "inventory_events",
        pd.DataFrame(
            {
                "event_id": [f"e{i}" for i in range(5)],
                "listing_id": sold,
                "event_type": "sold",
                "sequence": np.full(5, 9, np.int64),
                "lock_ttl_s": pd.array([None] * 5, dtype="Int32"),
                "event_timestamp": ts,
            }
        ),
    )
    _write(
        ing,
        "categories",
        snap[["category_id", "top_category_id"]]
        .drop_duplicates()
        .assign(parent_id=None, name="c")
        .astype({"category_id": "int32", "top_category_id": "int32"}),
    )
    summary = refresh_bundle(bundle, ing, tmp_path / "refreshed")
    assert (summary.added, summary.removed) == (7, 5)
    assert summary.n_items_after == summary.n_items_before - 5 + 7
    new_ix = RetrievalIndex.load(tmp_path / "refreshed" / "index")
    assert not np.isin(sold, new_ix.live_ids).any()
    assert np.isin(new["listing_id"], new_ix.live_ids).all()
    row = np.flatnonzero(new_ix.ids == new["listing_id"].iloc[0])[0]
    ids, _ = new_ix.search(new_ix.emb[row : row + 1].astype(np.float32), k=5)
    assert (
        new["listing_id"].iloc[0] in ids[0]
    )  # the new listing is retrievable by its own embedding
    assert (tmp_path / "refreshed" / "model").is_dir() and (
        tmp_path / "refreshed" / "bundle.json"
    ).exists()
