"""Shared fixtures of the live-inventory tests: a private key prefix on Redis DB 13, a throw-away
redis-server that a test may kill, and event builders.

    from tests.fixtures_inventory import inv_prefix, REDIS_URL  # noqa: F401
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from benchmarks.redis_server import kill_redis_server, start_redis_server
from checkout_recs.serving.inventory import InventoryEvent

#: DB 13 + a per-test prefix: nothing else on the shared Redis is touched.
REDIS_URL = "redis://127.0.0.1:6379/13"


def _client(url: str):  # noqa: ANN202
    import redis

    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


@pytest.fixture
def inv_prefix() -> Iterator[str]:
    """A fresh key prefix on ``REDIS_URL``; every key under it is deleted at teardown."""
    r = _client(REDIS_URL)
    try:
        r.ping()
    except Exception:  # noqa: BLE001
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    prefix = f"test_inv_{uuid.uuid4().hex[:10]}"
    yield prefix
    for k in r.scan_iter(match=f"{prefix}:*", count=1000):
        r.delete(k)
    r.close()


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[str, subprocess.Popen]]:
    """A throw-away redis-server on a free loopback port: ``(url, process)``; killed at exit."""
    url, proc = start_redis_server()
    try:
        yield url, proc
    finally:
        kill_redis(proc)


#: SIGKILL the private server (idempotent).
kill_redis = kill_redis_server


def ev(
    listing_id: int, event_type: str, sequence: int, ttl: int | None = None, ts: float | None = None
) -> InventoryEvent:
    """One event happening at ``ts`` (default now)."""
    return InventoryEvent(
        listing_id=listing_id,
        event_type=event_type,
        sequence=sequence,
        lock_ttl_s=ttl,
        event_ts=time.time() if ts is None else ts,
        event_id=f"{listing_id}-{sequence}",
    )


def wait_for(cond, timeout_s: float = 10.0, every_s: float = 0.01) -> bool:  # noqa: ANN001
    """Poll ``cond()`` until true or ``timeout_s``; returns its last value."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every_s)
    return bool(cond())


def interleaved_history(n_listings: int, per_listing: int, seed: int = 0) -> list[InventoryEvent]:
    """Events of many listings, interleaved; each listing's own events in sequence order."""
    rng = random.Random(seed)
    types = ("listed", "locked", "unlocked", "sold", "delisted")
    queues = {
        lid: [ev(lid, types[rng.randrange(5)], s, ttl=600) for s in range(1, per_listing + 1)]
        for lid in range(1, n_listings + 1)
    }
    out = []
    while queues:
        lid = rng.choice(list(queues))
        out.append(queues[lid].pop(0))
        if not queues[lid]:
            del queues[lid]
    return out
