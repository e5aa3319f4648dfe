"""The in-process inventory replica (real Redis): bootstrap consistent with a consumer caught
mid-stream, lookups from memory (no await once proven current after the request's arrival), the
read fence delivering what the tail has not, local lock expiry, readiness, and the stale rule when
Redis goes away after the bootstrap."""

from __future__ import annotations

import asyncio
import threading
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
from checkout_recs.serving.inventory_fence import reset_window, set_window
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
    token = set_window(replica.proven_pc - 0.5)  # the request arrived before the last proof
    try:
        coro = replica.unavailable_async(ids)
        with pytest.raises(StopIteration) as done:  # finishes on its first step: no await
            coro.send(None)
    finally:
        reset_window(token)
    assert done.value.value.tolist() == [True, True, False, False]
    # a request arriving now needs a fence read, and a closed replica cannot make one: stale
    with pytest.raises(InventoryStale):
        asyncio.run(replica.unavailable_async(ids))
    time.sleep(1.05)
    assert replica.unavailable(ids).tolist() == [
        True,
        False,
        False,
        False,
    ]  # the lock ended by its own clock


def test_the_fence_waits_until_the_tail_holds_what_the_stream_held_at_arrival(inv_prefix):  # noqa: F811
    r = redis.Redis.from_url(REDIS_URL)
    replica = ReplicaInventoryStore(
        REDIS_URL, prefix=inv_prefix, block_ms=50, max_lag_s=3600, fence_max_wait_s=2.0
    ).start()
    try:
        assert replica.wait_ready(20)
        gate, real = threading.Event(), replica._r.xread

        def slow_xread(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the tail stalls
            assert gate.wait(10)
            return real(*args, **kwargs)

        replica._r.xread = slow_xread
        time.sleep(0.2)  # the tail's read in flight returns; the next one waits at the gate
        publish_events(r, stream_key(inv_prefix), [ev(5, "sold", 1), ev(6, "locked", 1, ttl=60)])
        ids = np.array([5, 6, 7])

        async def lookup() -> np.ndarray:
            task = asyncio.ensure_future(replica.unavailable_async(ids))
            await asyncio.sleep(0.3)
            assert not task.done()  # waiting for the tail: memory does not hold the sale yet
            assert not replica.unavailable(ids).any()
            gate.set()
            return await task

        assert asyncio.run(lookup()).tolist() == [True, True, False]
        st = replica.fence.stats
        assert (st.reads, st.fenced, st.timed_out) == (1, 1, 0)
        token = set_window(replica.proven_pc - 0.001)  # arrived before that proof: no second read
        try:
            assert asyncio.run(replica.unavailable_async(ids)).tolist() == [True, True, False]
        finally:
            reset_window(token)
        assert (st.reads, st.proven) == (1, 1)
    finally:
        gate.set()
        replica.close()


def test_a_tail_that_does_not_catch_up_in_time_makes_the_lookup_stale(inv_prefix):  # noqa: F811
    replica = ReplicaInventoryStore(
        REDIS_URL, prefix=inv_prefix, block_ms=50, max_lag_s=3600, fence_max_wait_s=0.2
    ).start()
    gate = threading.Event()
    try:
        assert replica.wait_ready(20)
        real = replica._r.xread
        replica._r.xread = lambda *a, **k: (gate.wait(10), real(*a, **k))[1]
        time.sleep(0.2)
        publish_events(redis.Redis.from_url(REDIS_URL), stream_key(inv_prefix), [ev(5, "sold", 1)])
        t0 = time.perf_counter()
        with pytest.raises(InventoryStale):
            asyncio.run(replica.unavailable_async(np.array([5])))
        assert 0.19 <= time.perf_counter() - t0 < 1.5  # the fence's bound, not the replica's
        assert replica.fence.stats.timed_out + replica.fence.stats.failed == 1
        assert not replica.stale()  # within its lag bound: only this lookup falls back
    finally:
        gate.set()
        replica.close()


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
        assert replica.proven_pc == float("-inf")  # no read sent before it proves anything now
    finally:
        replica.close()
