"""CLI: inventory apply, explain, recommend's error path (typer CliRunner, no servers)."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from checkout_recs import contract
from checkout_recs.serving.decisions import DecisionLog
from checkout_recs.serving.inventory import RedisInventoryStore
from cli.app import app

runner = CliRunner()


def test_inventory_apply_reports_counts_and_updates_redis(tmp_path):
    prefix = f"test_serving_cli_{uuid.uuid4().hex[:6]}"
    store = RedisInventoryStore("redis://127.0.0.1:6379/11", prefix=prefix, timeout_s=1.0)
    try:
        store._sync.ping()
    except Exception:  # noqa: BLE001
        pytest.skip("Redis not reachable")
    events = pa.table(
        {
            "event_id": ["a", "b", "c"],
            "listing_id": pa.array([1, 2, 2], pa.int64()),
            "event_type": ["sold", "locked", "bogus"],
            "sequence": pa.array([1, 1, 2], pa.int64()),
            "lock_ttl_s": pa.array([None, 60, None], pa.int32()),
            "event_timestamp": pa.array([0, 0, 0], contract.TS),
        },
        schema=contract.INVENTORY_EVENTS,
    )
    pq.write_table(events, tmp_path / "ev.parquet")
    try:
        res = runner.invoke(
            app,
            [
                "inventory",
                "apply",
                str(tmp_path / "ev.parquet"),
                "--redis-url",
                "redis://127.0.0.1:6379/11",
                "--prefix",
                prefix,
            ],
        )
        assert res.exit_code == 0, res.output
        assert '"read": 3' in res.output and '"rejected": 1' in res.output
        assert store.unavailable(np.array([1, 2, 3])).tolist() == [True, True, False]
    finally:
        store.clear()


def test_explain_prints_the_logged_decision(tmp_path):
    log = DecisionLog(tmp_path / "store", rotate_rows=1)
    log.submit(
        {
            "request_id": "dispute-1",
            "event_timestamp": __import__("datetime").datetime.now(__import__("datetime").UTC),
            "user_id": 1,
            "region": "north",
            "device": "web",
            "basket_ids": [5],
            "policy": "ranker",
            "fallback_reason": None,
            "session_class": "returning",
            "model_version": "m1",
            "index_version": "i1",
            "item_ids": [1, 2, 3, 4, 5, 6],
            "scores": [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
            "propensities": [1, 1, 1, 1, 1, 0.8],
            "sources": ["ann"] * 6,
            "reasons": ["new seller"] * 6,
            "explored": True,
            "exploration_cost": 0.01,
            "n_candidates": 250,
            "n_filtered_out": 3,
            "snapshot_ids": [1, 2],
            "snapshot_scores": [0.6, 0.5],
            "latency_ms": 4.2,
            "timings_json": "{}",
        }
    )
    log.close()
    res = runner.invoke(app, ["explain", "dispute-1", "--artifact-root", str(tmp_path / "store")])
    assert res.exit_code == 0, res.output
    assert "dispute-1" in res.output and "new seller" in res.output and "250 in-stock" in res.output
    missing = runner.invoke(app, ["explain", "nope", "--artifact-root", str(tmp_path / "store")])
    assert missing.exit_code == 1


def test_recommend_reports_a_refused_connection_cleanly():
    res = runner.invoke(
        app, ["recommend", "--url", "http://127.0.0.1:1", "--user", "1", "--region", "north"]
    )
    assert res.exit_code == 1 and "request failed" in res.output
