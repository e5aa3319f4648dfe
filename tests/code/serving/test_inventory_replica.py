"""The in-process inventory replica (real Redis): bootstrap consistent with a consumer caught
mid-stream, lookups from memory only (no await, no network), local lock expiry, readiness, and
the stale rule when Redis goes away after the bootstrap."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from checkout_recs.serving.inventory import (
    InventoryStale,
    InventoryUnavailable,
    MemoryInventoryStore,
    RedisInventoryStore,
)
from checkout_recs.serving.inventory_replica import ReplicaInventoryStore
from checkout_recs.serving.inventory_stream import (
    InventoryConsumer,
    RedisStreamSource,
    publish_events,
    stream_key,
)
from tests.fixtures_inventory import REDIS_URL, ev, inv_prefix, kill_redis, private_redis, wait_for  # noqa: F401
from tests.fixtures_inventory import interleaved_history as _history


def _same_as(replica: ReplicaInventoryStore, events, ids: np.ndarray) -> bool:
    ref = MemoryInventoryStore(clock=time.time)
    ref.apply_batch(events)
    return bool(np.array_equal(replica.unavailable(ids), ref.unavailable(ids)))


def test_bootstrap_mid_stream_converges_to_every_event(inv_prefix):  # noqa: F811
    events = _history(300, 10, seed=3)
    r = redis.Redis.from_url(REDIS_URL)
    publish_events(r, stream_key(inv_prefix), events)
    store = RedisInventoryStore(REDIS_URL, prefix=inv_prefix, timeout_s=2.0)
    consumer = InventoryConsumer(
        RedisStreamSource(REDIS_URL, stream_key(inv_prefix), consumer="a", claim_idle_ms=0),
        store,
        batch=300,
        block_ms=10,
    )
    for _ in range(3):
        consumer.step()  # 900 applied and acknowledged
    straggler = RedisStreamSource(
        REDIS_URL, stream_key(inv_prefix), consumer="b", claim_idle_ms=60_000
    )
    store.apply_batch(
        [e.event for e in straggler.read(200, 10)][:50]
    )  # 200 delivered, 50 applied, none acked
    replica = ReplicaInventoryStore(REDIS_URL, prefix=inv_prefix, block_ms=50).start()
    try:
        assert replica.wait_ready(20)
        ids = np.arange(1, 301)
        assert _same_as(replica, events, ids)
        assert replica.report.read == len(events) - 900  # tailed from the group's applied position
        later = [ev(lid, "sold", 100) for lid in range(1, 40)] + [
            ev(lid, "locked", 100, ttl=60) for lid in range(40, 80)
        ]
        publish_events(r, stream_key(inv_prefix), later)
        assert wait_for(lambda: _same_as(replica, events + later, ids), 10)
        assert consumer.drain(30)
        np.testing.assert_array_equal(store.unavailable(ids), replica.unavailable(ids))
    finally:
        replica.close()


def test_lookups_never_wait_and_locks_expire_locally(inv_prefix):  # noqa: F811
    r = redis.Redis.from_url(REDIS_URL)
    publish_events(
        r, stream_key(inv_prefix), [ev(1, "sold", 1), ev(2, "locked", 1, ttl=1), ev(3, "listed", 1)]
    )
    replica = ReplicaInventoryStore(
        REDIS_URL, prefix=inv_prefix, block_ms=50, max_lag_s=3600
    ).start()
    assert replica.wait_ready(20) and wait_for(lambda: replica.report.read == 3)
    replica.close()  # no thread, no client: what follows is memory only
    ids = np.array([1, 2, 3, 4])
    coro = replica.unavailable_async(ids)
    with pytest.raises(StopIteration) as done:  # finishes on its first step: no await, no timeout
        coro.send(None)
    assert done.value.value.tolist() == [True, True, False, False]
    time.sleep(1.05)
    assert replica.unavailable(ids).tolist() == [
        True,
        False,
        False,
        False,
    ]  # the lock ended by its own clock


def test_not_ready_before_the_bootstrap():
    replica = ReplicaInventoryStore("redis://127.0.0.1:1/0", prefix="x", block_ms=50).start()
    try:
        time.sleep(0.2)
        assert not replica.ready()
        with pytest.raises(InventoryUnavailable) as err:
            replica.unavailable(np.array([1]))
        assert err.value.reason == "inventory_unavailable"
    finally:
        replica.close()


def test_redis_down_keeps_answering_from_memory_then_stale_keeps_known_state_only():
    with private_redis() as (url, proc):
        r = redis.Redis.from_url(url)
        old = time.time() - 100
        publish_events(
            r,
            stream_key("cr"),
            [
                ev(10, "listed", 1, ts=old),
                ev(11, "sold", 1, ts=old),
                ev(12, "locked", 1, ttl=600, ts=old),
            ],
        )
        time.sleep(1.2)  # the three above are now out of the 1 s in-play window
        publish_events(
            r,
            stream_key("cr"),
            [
                ev(20, "locked", 1, ttl=600),
                ev(20, "unlocked", 2),
                ev(21, "locked", 1, ttl=2),
                ev(22, "listed", 1),
            ],
        )
        replica = ReplicaInventoryStore(
            url, prefix="cr", max_lag_s=0.5, in_play_s=1.0, block_ms=50
        ).start()
        try:
            assert replica.wait_ready(20) and wait_for(lambda: replica.report.read == 7)
            ids = np.array([10, 11, 12, 20, 21, 22, 99])
            assert replica.unavailable(ids).tolist() == [
                False,
                True,
                True,
                False,
                True,
                False,
                False,
            ]
            kill_redis(proc)
            assert replica.unavailable(ids).tolist() == [
                False,
                True,
                True,
                False,
                True,
                False,
                False,
            ]
            assert wait_for(replica.stale, 5)
            with pytest.raises(InventoryStale) as err:
                replica.unavailable(ids)
            assert err.value.reason == "inventory_stale" and replica.ready()
            # known state only: sold, locked, and every listing in play (20 unlocked, 21 locked, 22 listed
            # within 1 s of the last proof) are kept out; the quiet available 10 and untouched 99 remain
            assert replica.last_known_unavailable(ids).tolist() == [
                False,
                True,
                True,
                True,
                True,
                True,
                False,
            ]
            time.sleep(
                2.0
            )  # 21's lock is past its expiry: while stale its outcome is unknown, it stays out
            assert replica.last_known_unavailable(ids).tolist() == [
                False,
                True,
                True,
                True,
                True,
                True,
                False,
            ]
            # six needed, two known: the in-play listings available at the last proof come back, quietest
            # first (20 before 22); never the sold 11, the locked 12, or 21, locked at the last proof
            assert replica.last_known_unavailable(ids, keep_at_least=3).tolist() == [
                False,
                True,
                True,
                False,
                True,
                True,
                False,
            ]
            assert replica.last_known_unavailable(ids, keep_at_least=6).tolist() == [
                False,
                True,
                True,
                False,
                True,
                False,
                False,
            ]
        finally:
            replica.close()


def test_entries_trimmed_behind_the_replica_make_it_bootstrap_again(inv_prefix):  # noqa: F811
    r = redis.Redis.from_url(REDIS_URL)
    publish_events(r, stream_key(inv_prefix), [ev(lid, "sold", 1) for lid in range(1, 11)])
    replica = ReplicaInventoryStore(
        REDIS_URL, prefix=inv_prefix, block_ms=50, max_lag_s=3600
    ).start()
    try:
        assert replica.wait_ready(20) and wait_for(lambda: replica.report.read == 10)
        replica._stop.set()  # hold the tail still (the client stays open)
        replica._thread.join(5)
        replica.position = "0-1"  # as if it had fallen behind ...
        r.xtrim(
            stream_key(inv_prefix), maxlen=5, approximate=False
        )  # ... entries it never read are gone
        replica._recover()
        assert (
            replica._rebootstrap and replica.bootstrapped
        )  # the state in hand keeps answering meanwhile
        assert replica.unavailable(np.array([1, 10, 11])).tolist() == [True, True, False]
        replica._bootstrap()
        assert replica.bootstraps == 2 and not replica._rebootstrap
    finally:
        replica.close()
