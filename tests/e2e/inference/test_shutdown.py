"""SIGTERM on the transformer: the decision log's buffer is published and the exploration lease
given back; the decision-log counts on /metrics add up while it runs."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import cast

import httpx
import pyarrow.parquet as pq
import pytest
import redis

from checkout_recs.serving.decisions import KIND
from checkout_recs.storage import LocalArtifactStore
from inference.launch import running_servers
from tests.fixtures_serving import make_serving_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/11"


def _rows(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("checkout_recs_decision_log_rows{"):
            state = line.split('state="')[1].split('"')[0]
            out[state] = float(line.rsplit(" ", 1)[1])
    return out


def _field(r: redis.Redis, key: str, field: str) -> int:
    v = cast(bytes | None, r.hget(key, field))
    return int(v) if v is not None else 0


def test_sigterm_publishes_buffered_decisions_and_releases_the_lease(tmp_path):
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip("Redis not reachable")
    tag = f"test_serving_{uuid.uuid4().hex[:8]}"
    bundle = make_serving_bundle(tmp_path / "bundle")
    policy = {
        "exploration": {
            "epsilon": {"new_user": 1.0, "returning": 1.0, "high_value": 1.0},
            "min_daily_budget": 1000.0,
        }
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    store = tmp_path / "store"
    targs = [
        "--inventory",
        "redis",
        "--redis_url",
        REDIS_URL,
        "--redis_prefix",
        tag,
        "--switches",
        "none",
        "--policy_config",
        str(tmp_path / "policy.json"),
        "--deadline_ms",
        "2000",
        "--decision_log",
        str(store),
        "--decision_log_rotate_s",
        "3600",
    ]  # nothing rotates by time
    ids = [f"shutdown-{k}" for k in range(25)]
    try:
        with running_servers(bundle, transformer_args=targs, log_dir=tmp_path / "logs") as s:
            for rid in ids:
                body = {
                    "instances": [
                        {
                            "user_id": 3,
                            "purchased_item_ids": [1000, 1001],
                            "region": "north",
                            "request_id": rid,
                        }
                    ]
                }
                assert httpx.post(s.v1_url, json=body, timeout=10).status_code == 200
            time.sleep(0.5)  # the writer's tick publishes the gauges
            rows = _rows(httpx.get(f"{s.transformer_url}/metrics", timeout=10).text)
            accepted = rows["accepted"]  # ours + the launcher's warm-up requests
            assert accepted >= 25 and rows["written"] == 0 and rows["dropped"] == 0
            assert rows["accepted"] == (
                rows["written"] + rows["pending"] + rows["dropped"] + rows.get("quarantined", 0)
            )
            day = dt.datetime.now(dt.UTC).date().isoformat()
            assert _field(r, f"{tag}:explore:{day}", "held") > 0  # a lease is held while serving
        logged = LocalArtifactStore(store)
        got = [
            x
            for v in logged.versions(KIND)
            for x in pq.read_table(logged.path(KIND, v)).column("request_id").to_pylist()
        ]
        assert (
            len(got) == accepted and set(ids) <= set(got) and len(set(got)) == len(got)
        )  # on SIGTERM, once
        assert _field(r, f"{tag}:explore:{day}", "held") == 0  # the lease came back
        assert (
            _field(r, f"{tag}:explore:{day}", "requests") == accepted
        )  # every served request flushed
    finally:
        keys = list(r.scan_iter(f"{tag}:*"))
        if keys:
            r.delete(*keys)
