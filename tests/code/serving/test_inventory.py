"""InventoryStore contract, run against both backends (memory and Redis on a private prefix)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pyarrow as pa
import pytest

from checkout_recs import contract
from checkout_recs.serving.inventory import (
    InventoryUnavailable,
    MemoryInventoryStore,
    RedisInventoryStore,
    open_inventory,
)

REDIS_URL = (
    "redis://127.0.0.1:6379/11"  # DB 11 + a per-test prefix: no collision with other engineers
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        clock = FakeClock()
        s = MemoryInventoryStore(clock=clock)
        s.advance = lambda dt: setattr(clock, "t", clock.t + dt)  # type: ignore[attr-defined]
        yield s
        return
    s = RedisInventoryStore(REDIS_URL, prefix=f"test_serving_{uuid.uuid4().hex[:8]}", timeout_s=1.0)
    try:
        s._sync.ping()
    except Exception:  # noqa: BLE001
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    s.advance = lambda dt: time.sleep(dt)  # type: ignore[attr-defined]
    yield s
    s.clear()
    s.close()


def _events(rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "listing_id": pa.array(cols[0], pa.int64()),
            "event_type": list(cols[1]),
            "sequence": pa.array(cols[2], pa.int64()),
            "lock_ttl_s": pa.array(cols[3], pa.int32()),
            "event_timestamp": pa.array([0] * len(rows), pa.timestamp("us", tz="UTC")),
        },
        schema=contract.INVENTORY_EVENTS,
    )


def test_sold_and_delisted_are_unavailable(store):
    store.mark(1, "sold", 1)
    store.mark(2, "delisted", 1)
    mask = store.unavailable(np.array([1, 2, 3], np.int64))
    assert mask.tolist() == [True, True, False]


def test_lock_expires_after_its_ttl(store):
    store.mark(5, "locked", 1, lock_ttl_s=1)
    assert store.unavailable(np.array([5]))[0]
    store.advance(1.2)
    assert not store.unavailable(np.array([5]))[0]


def test_unlock_and_relist_free_the_listing(store):
    store.mark(7, "locked", 1, lock_ttl_s=60)
    store.mark(7, "unlocked", 2)
    assert not store.unavailable(np.array([7]))[0]


def test_stale_event_never_undoes_a_newer_one(store):
    assert store.mark(9, "sold", 5)
    assert not store.mark(9, "listed", 3)  # older sequence arrives late
    assert store.unavailable(np.array([9]))[0]


def test_apply_events_counts_add_up(store):
    table = _events(
        [
            (1, "locked", 1, 30),
            (1, "sold", 2, None),
            (2, "bogus", 1, None),
            (3, "locked", 1, 0),
            (1, "listed", 1, None),
            (4, "sold", 1, None),
        ]
    )
    rep = store.apply_events(table)
    assert rep.read == 6
    assert rep.applied + rep.stale + rep.rejected == rep.read
    assert rep.rejected == 2  # unknown type, non-positive TTL
    assert store.unavailable(np.array([1, 2, 3, 4])).tolist() == [True, False, False, True]


def test_async_lookup_matches_sync(store):
    import asyncio

    store.mark(11, "sold", 1)
    ids = np.array([10, 11, 12])
    assert asyncio.run(store.unavailable_async(ids)).tolist() == store.unavailable(ids).tolist()


def test_redis_down_raises_inventory_unavailable():
    s = RedisInventoryStore("redis://127.0.0.1:1/0", prefix="x", timeout_s=0.05)
    with pytest.raises(InventoryUnavailable):
        s.unavailable(np.array([1, 2]))
    assert s.last_known_unavailable(np.array([1, 2])).tolist() == [False, False]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown inventory backend"):
        open_inventory("sqlite")


def test_hiredis_packed_mget_is_byte_identical_to_redis_py():
    from redis.asyncio.connection import Connection

    from checkout_recs.serving.inventory import _packed_connection_class

    keys = [f"checkout_recs:inv:{i}" for i in range(1000, 1460)]
    fast, ref = _packed_connection_class()(), Connection()
    assert b"".join(fast.pack_command("MGET", *keys)) == b"".join(ref.pack_command("MGET", *keys))
    # other commands (multi-word names, ints) keep redis-py's packer
    assert fast.pack_command("CLIENT SETNAME", "x") == ref.pack_command("CLIENT SETNAME", "x")
    assert fast.pack_command("SET", "k", 5, "EX", 10) == ref.pack_command("SET", "k", 5, "EX", 10)
