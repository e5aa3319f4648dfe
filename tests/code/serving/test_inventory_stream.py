"""Inventory stream: entry encoding, streamed lock expiry, the consumer group consumer (real Redis,
DB 13, private prefix): every event applied, none applied twice or out of order, across a crash
between apply and acknowledge and across a store outage."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest
import redis

from checkout_recs import contract
from checkout_recs.serving.inventory import (
    InventoryUnavailable,
    MemoryInventoryStore,
    RedisInventoryStore,
)
from checkout_recs.serving.inventory_stream import (
    InventoryConsumer,
    RedisStreamSource,
    decode_event,
    encode_event,
    events_from_table,
    publish_events,
    stream_key,
)
from tests.fixtures_inventory import REDIS_URL, ev, inv_prefix  # noqa: F401
from tests.fixtures_inventory import interleaved_history as _history


class RecordingStore(RedisInventoryStore):
    """The Redis store, recording every ``(listing_id, sequence, applied)`` it was asked to set."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.log: list[tuple[int, int, bool]] = []

    def _set_many(self, changes):
        out = super()._set_many(changes)
        self.log += [(c[0], c[3], ok) for c, ok in zip(changes, out, strict=True)]
        return out


def _reference(events) -> MemoryInventoryStore:
    ref = MemoryInventoryStore(clock=time.time)
    ref.apply_batch(events)
    return ref


def _assert_each_applied_once_in_order(log: list[tuple[int, int, bool]], events) -> None:
    applied: dict[int, list[int]] = {}
    for lid, seq, ok in log:
        if ok:
            applied.setdefault(lid, []).append(seq)
    for lid, seqs in applied.items():
        assert seqs == sorted(set(seqs)), f"listing {lid}: applied {seqs}"
    assert {lid: max(s) for lid, s in applied.items()} == {
        e.listing_id: max(x.sequence for x in events if x.listing_id == e.listing_id)
        for e in events
    }


def test_entry_round_trip_and_malformed_entries():
    e = ev(42, "locked", 7, ttl=30, ts=1_700_000_000.123)
    back = decode_event(encode_event(e))
    assert back == e
    assert decode_event(encode_event(ev(1, "sold", 2, ts=5.0))).lock_ttl_s is None
    for bad in (
        {},
        {"listing_id": "x", "event_type": "sold", "sequence": "1", "event_ts_ms": "0"},
        {"listing_id": "1", "event_type": "sold", "event_ts_ms": "0"},
    ):
        with pytest.raises(ValueError, match="malformed"):
            decode_event(bad)


def test_events_from_table_keep_time_order_and_seconds():
    t = pa.table(
        {
            "event_id": ["b", "a"],
            "listing_id": pa.array([2, 1], pa.int64()),
            "event_type": ["sold", "locked"],
            "sequence": pa.array([1, 1], pa.int64()),
            "lock_ttl_s": pa.array([None, 30], pa.int32()),
            "event_timestamp": pa.array(
                [1_700_000_001_500_000, 1_700_000_000_000_000], contract.TS
            ),
        },
        schema=contract.INVENTORY_EVENTS,
    )
    evs = events_from_table(t)
    assert [(e.event_id, e.event_ts, e.lock_ttl_s) for e in evs] == [
        ("a", 1_700_000_000.0, 30),
        ("b", 1_700_000_001.5, None),
    ]


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_streamed_lock_lasts_from_its_event_time(backend, inv_prefix):  # noqa: F811
    store = (
        MemoryInventoryStore(clock=time.time)
        if backend == "memory"
        else RedisInventoryStore(REDIS_URL, prefix=inv_prefix, timeout_s=1.0)
    )
    now = time.time()
    rep = store.apply_batch(
        [
            ev(1, "locked", 1, ttl=5, ts=now - 10),
            ev(2, "locked", 1, ttl=60, ts=now - 10),
            ev(3, "locked", 1, ttl=0, ts=now),
            ev(4, "bogus", 1),
        ],
        now,
    )
    assert (rep.applied, rep.rejected) == (2, 2)
    assert store.unavailable(np.array([1, 2, 3, 4])).tolist() == [False, True, False, False]
    if backend == "redis":
        pttl = store._sync.pttl(store.key(2))
        assert 45_000 < pttl <= 50_100  # 60 s from the event, not from now
    assert not store.apply_batch(
        [ev(2, "locked", 1, ttl=60)]
    ).applied  # the lock's sequence counted


def test_consumer_applies_every_event_once_in_sequence_order(inv_prefix):  # noqa: F811
    events = _history(200, 12)
    r = redis.Redis.from_url(REDIS_URL)
    publish_events(r, stream_key(inv_prefix), events)
    r.xadd(
        stream_key(inv_prefix), {"listing_id": "oops", "event_type": "sold"}
    )  # malformed: set aside
    store = RecordingStore(REDIS_URL, prefix=inv_prefix, timeout_s=2.0)
    src = RedisStreamSource(REDIS_URL, stream_key(inv_prefix), consumer="c1", claim_idle_ms=0)
    consumer = InventoryConsumer(src, store, batch=300, block_ms=50)
    assert consumer.drain(timeout_s=30)
    st = consumer.stats
    assert st.report.read == st.acked == len(events) + 1 and st.report.rejected == 1
    assert st.report.applied + st.report.stale + st.report.rejected == st.report.read
    _assert_each_applied_once_in_order(store.log, events)
    ids = np.arange(1, 201)
    np.testing.assert_array_equal(store.unavailable(ids), _reference(events).unavailable(ids))
    seq = {int(k): int(v) for k, v in r.hgetall(f"{inv_prefix}:seq").items()}
    assert seq == _reference(events)._seq
    assert r.xlen(f"{stream_key(inv_prefix)}:rejected") == 1
    assert src.lag().entries == 0


def test_crash_between_apply_and_ack_replays_without_reapplying(inv_prefix):  # noqa: F811
    events = _history(50, 10, seed=1)
    r = redis.Redis.from_url(REDIS_URL)
    publish_events(r, stream_key(inv_prefix), events)
    store = RecordingStore(REDIS_URL, prefix=inv_prefix, timeout_s=2.0)
    dead = RedisStreamSource(
        REDIS_URL, stream_key(inv_prefix), consumer="dead", claim_idle_ms=60_000
    )
    got = dead.read(200, 10)  # delivered to "dead" ...
    store.apply_batch(
        [e.event for e in got if e.event]
    )  # ... applied, then the process dies: never acked
    assert dead.lag().entries == len(events)
    src = RedisStreamSource(REDIS_URL, stream_key(inv_prefix), consumer="new", claim_idle_ms=0)
    consumer = InventoryConsumer(src, store, batch=64, block_ms=20)
    assert consumer.drain(timeout_s=30)
    assert consumer.stats.report.stale == len(got)  # the 200 replayed entries changed nothing
    _assert_each_applied_once_in_order(store.log, events)
    assert (
        src.lag().entries == 0
        and r.xpending(stream_key(inv_prefix), "inventory-appliers")["pending"] == 0
    )


def test_store_outage_leaves_the_batch_pending_and_replays_it(inv_prefix):  # noqa: F811
    events = _history(20, 5, seed=2)
    publish_events(redis.Redis.from_url(REDIS_URL), stream_key(inv_prefix), events)

    class FlakyStore(RecordingStore):
        fail = 2

        def _set_many(self, changes):
            if self.fail:
                self.fail -= 1
                raise InventoryUnavailable("redis inventory write failed: down")
            return super()._set_many(changes)

    store = FlakyStore(REDIS_URL, prefix=inv_prefix, timeout_s=2.0)
    src = RedisStreamSource(REDIS_URL, stream_key(inv_prefix), consumer="c", claim_idle_ms=0)
    consumer = InventoryConsumer(src, store, batch=30, block_ms=20)
    assert consumer.step() == 0 and consumer.step() == 0 and consumer.stats.failures == 2
    assert src.lag().entries == len(events)  # nothing acknowledged while the store was down
    assert consumer.drain(timeout_s=30)
    assert consumer.stats.acked == len(events) and consumer.stats.report.applied == len(events)
    _assert_each_applied_once_in_order(store.log, events)
