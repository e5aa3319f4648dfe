"""CLI: ``inventory publish`` (parquet → stream) and ``inventory consume`` (long-running, stopped
by SIGTERM) against Redis DB 13 on a private prefix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from typer.testing import CliRunner

from checkout_recs import contract
from checkout_recs.serving.inventory import RedisInventoryStore
from checkout_recs.serving.inventory_stream import RedisStreamSource, stream_key
from cli.app import app
from tests.fixtures_inventory import REDIS_URL, inv_prefix, wait_for  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]


def _events(path: Path) -> None:
    now_us = int(time.time() * 1e6)
    pq.write_table(
        pa.table(
            {
                "event_id": ["a", "b", "c", "d"],
                "listing_id": pa.array([1, 2, 2, 3], pa.int64()),
                "event_type": ["sold", "locked", "unlocked", "locked"],
                "sequence": pa.array([1, 1, 2, 1], pa.int64()),
                "lock_ttl_s": pa.array([None, 60, None, 600], pa.int32()),
                "event_timestamp": pa.array([now_us] * 4, contract.TS),
            },
            schema=contract.INVENTORY_EVENTS,
        ),
        path,
    )


def test_publish_then_consume_until_sigterm(tmp_path, inv_prefix):  # noqa: F811
    _events(tmp_path / "ev.parquet")
    res = CliRunner().invoke(
        app,
        [
            "inventory",
            "publish",
            str(tmp_path / "ev.parquet"),
            "--redis-url",
            REDIS_URL,
            "--prefix",
            inv_prefix,
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["published"] == 4
    assert redis.Redis.from_url(REDIS_URL).xlen(stream_key(inv_prefix)) == 4
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.app",
            "inventory",
            "consume",
            "--redis-url",
            REDIS_URL,
            "--prefix",
            inv_prefix,
            "--metrics-port",
            "0",
            "--progress-every-s",
            "0.5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        src = RedisStreamSource(REDIS_URL, stream_key(inv_prefix), consumer="observer")
        assert wait_for(
            lambda: src.lag().entries == 0 and src.lag().seconds == 0.0, 60, every_s=0.2
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["acked"] == 4 and stats["applied"] == 4
    assert "inventory consumer" in err  # progress lines
    store = RedisInventoryStore(REDIS_URL, prefix=inv_prefix, timeout_s=1.0)
    assert store.unavailable(np.array([1, 2, 3])).tolist() == [True, False, True]


def test_publish_refuses_a_missing_file(tmp_path):
    res = CliRunner().invoke(app, ["inventory", "publish", str(tmp_path / "none.parquet")])
    assert res.exit_code == 1 and "no events at" in res.output
