"""Live inventory as a stream: inventory events on a Redis Stream, applied by a consumer group.

Producers (the checkout and listing services; ``checkout-recs inventory publish`` for replays
and tests) append one entry per ``InventoryEvent`` to the stream ``<prefix>:inv_events``
(``XADD … MAXLEN ~ maxlen``). Entry fields, all strings:

============== ==============================================================
``listing_id`` decimal int
``event_type`` one of ``contract.INVENTORY_EVENT_TYPES``
``sequence``   decimal int, strictly increasing per listing
``lock_ttl_s`` decimal int seconds (``locked``), empty otherwise
``event_ts_ms`` when the event happened, Unix milliseconds (a lock ends at ``event_ts + ttl``)
``event_id``   the producer's id of the event
============== ==============================================================

``InventoryConsumer`` keeps the authoritative Redis state (``RedisInventoryStore``: the
``<prefix>:inv:<id>`` keys and the ``<prefix>:seq`` hash) current: read a batch from an
``InventoryEventSource``, apply it with ``InventoryStore.apply_batch`` (sequence order per
listing, the store's sequence check makes a replay or a late event harmless), then acknowledge
it. At least once: an entry is acknowledged only after its batch is applied, so a crash between
the two replays it, and the replay changes nothing.

``RedisStreamSource`` is the one implementation (consumer group: ``XREADGROUP`` / ``XACK``; a
restarted consumer first re-reads its own pending entries and takes over entries another,
dead consumer left pending for ``claim_idle_ms`` with ``XAUTOCLAIM``). A Kafka source would
implement the same four methods; none exists, and nothing here is claimed for one.
"""

from __future__ import annotations

import abc
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from checkout_recs import contract
from checkout_recs.serving.inventory import (
    ApplyReport,
    InventoryEvent,
    InventoryStore,
    InventoryUnavailable,
)

log = logging.getLogger(__name__)

#: Stream key suffix: the stream is ``<prefix>:inv_events``.
STREAM_SUFFIX = "inv_events"
#: Consumer group of the appliers of the authoritative state.
DEFAULT_GROUP = "inventory-appliers"
#: Approximate stream length kept by ``XADD … MAXLEN ~`` (entries).
DEFAULT_MAXLEN = 1_000_000


def stream_key(prefix: str) -> str:
    """The inventory stream's key under ``prefix``."""
    return f"{prefix}:{STREAM_SUFFIX}"


def entry_ms(entry_id: str) -> int:
    """Milliseconds part of a stream entry id ``"<ms>-<seq>"`` (when Redis appended it, Unix ms)."""
    return int(entry_id.split("-", 1)[0])


def encode_event(ev: InventoryEvent) -> dict[str, str]:
    """The stream entry fields of one event (see the module docstring)."""
    return {
        "listing_id": str(int(ev.listing_id)),
        "event_type": ev.event_type,
        "sequence": str(int(ev.sequence)),
        "lock_ttl_s": "" if ev.lock_ttl_s is None else str(int(ev.lock_ttl_s)),
        "event_ts_ms": str(round(ev.event_ts * 1000)),
        "event_id": ev.event_id,
    }


def decode_event(fields: dict[str, str]) -> InventoryEvent:
    """The event of one entry's fields; ValueError (with the reason) when a field is missing or malformed."""
    try:
        ttl = fields.get("lock_ttl_s") or ""
        return InventoryEvent(
            listing_id=int(fields["listing_id"]),
            event_type=str(fields["event_type"]),
            sequence=int(fields["sequence"]),
            lock_ttl_s=int(ttl) if ttl else None,
            event_ts=int(fields["event_ts_ms"]) / 1000.0,
            event_id=str(fields.get("event_id", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed inventory entry {fields!r}: {exc!r}") from exc


def events_from_table(table: pa.Table) -> list[InventoryEvent]:
    """``contract.INVENTORY_EVENTS`` rows as events, in ``(event_timestamp, sequence)`` order."""
    missing = set(contract.field_names(contract.INVENTORY_EVENTS)) - set(table.column_names)
    if missing:
        raise ValueError(f"inventory events lack columns {sorted(missing)}")
    ts_us = table.column("event_timestamp").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    df = (
        table.select(["event_id", "listing_id", "event_type", "sequence", "lock_ttl_s"])
        .append_column("ts_us", ts_us)
        .to_pandas()
    )
    df = df.sort_values(["ts_us", "sequence"], kind="stable")
    return [
        InventoryEvent(
            listing_id=int(lid),
            event_type=str(et),
            sequence=int(seq),
            lock_ttl_s=None if ttl is None or ttl != ttl else int(ttl),
            event_ts=int(t) / 1e6,
            event_id=str(eid),
        )
        for eid, lid, et, seq, ttl, t in zip(
            df["event_id"],
            df["listing_id"],
            df["event_type"],
            df["sequence"],
            df["lock_ttl_s"],
            df["ts_us"],
            strict=True,
        )
    ]


def publish_events(
    client: Any,
    stream: str,
    events: Iterable[InventoryEvent],
    maxlen: int = DEFAULT_MAXLEN,
    chunk: int = 1000,
    extra: dict[str, str] | None = None,
) -> list[str]:
    """Append ``events`` to ``stream`` in order, ``chunk`` per pipelined round trip.

    Parameters
    ----------
    client : a ``redis.Redis`` client.
    maxlen : approximate number of entries the stream keeps (``MAXLEN ~``); 0 keeps everything.
    extra : fields added to every entry (benchmarks stamp their publish time; consumers ignore them).

    Returns
    -------
    The stream ids given to the entries, in order.
    """
    ids: list[str] = []
    pipe = client.pipeline(transaction=False)
    pending = 0
    for ev in events:
        fields = encode_event(ev) | (extra or {})
        pipe.xadd(stream, fields, maxlen=maxlen or None, approximate=True)
        pending += 1
        if pending >= chunk:
            ids += [_s(x) for x in pipe.execute()]
            pending = 0
    if pending:
        ids += [_s(x) for x in pipe.execute()]
    return ids


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


@dataclass
class SourceEntry:
    """One entry read from a source: its id and its event, or why it has none."""

    entry_id: str
    event: InventoryEvent | None
    error: str | None = None  # malformed, or deleted from the stream before it was applied


@dataclass
class SourceLag:
    """How far the appliers are behind the stream's head."""

    entries: int  # entries not yet applied: not yet delivered + delivered but not acknowledged
    seconds: float  # age of the oldest such entry (its stream time to now), 0 when none


class InventoryEventSource(abc.ABC):
    """Where inventory events come from, for one consumer of a consumer group."""

    @abc.abstractmethod
    def read(self, count: int, block_ms: int) -> list[SourceEntry]:
        """Up to ``count`` entries not yet acknowledged by this consumer (its own pending ones
        first, then new ones, waiting up to ``block_ms`` for one). Raises ``InventoryUnavailable``."""

    @abc.abstractmethod
    def ack(self, entries: list[SourceEntry]) -> None:
        """Acknowledge applied entries (rejected ones too: they are set aside with their reason)."""

    @abc.abstractmethod
    def rewind(self) -> None:
        """Deliver again, from the start, what this consumer read but did not acknowledge."""

    @abc.abstractmethod
    def lag(self) -> SourceLag:
        """How far the group is behind the head. Raises ``InventoryUnavailable``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class RedisStreamSource(InventoryEventSource):
    """A Redis Streams consumer group as an ``InventoryEventSource``.

    Parameters
    ----------
    url : Redis URL.
    stream : the stream key (``stream_key(prefix)``).
    group : consumer group (created at the stream's start, ``0``, when missing: nothing published
        before the first consumer ran is skipped).
    consumer : this consumer's name (default: the host name, i.e. the pod).
    claim_idle_ms : entries pending this long at another consumer are taken over (``XAUTOCLAIM``),
        at start and every ``claim_idle_ms`` after; 0 takes over every pending entry at once.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        claim_idle_ms: int = 30_000,
        socket_timeout_s: float = 5.0,
    ) -> None:
        import redis  # lazy: the Redis backend is optional (memory backend needs nothing)

        self.stream, self.group = stream, group
        self.consumer = consumer or socket.gethostname()
        self.claim_idle_ms = claim_idle_ms
        self._r: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
        )
        self._errors = (redis.RedisError, OSError)
        self._backlog: str | None = (
            "0"  # position in this consumer's pending list, None once drained
        )
        self._next_claim = 0.0
        self._group_ready = False

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise InventoryUnavailable(f"inventory stream: {exc}") from exc

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        import redis  # lazy: the Redis backend is optional (memory backend needs nothing)

        try:
            self._call(self._r.xgroup_create, self.stream, self.group, id="0", mkstream=True)
        except InventoryUnavailable as exc:
            if not isinstance(exc.__cause__, redis.ResponseError) or "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def claim(self) -> int:
        """Take over entries idle ``claim_idle_ms`` at other consumers; returns how many."""
        self._ensure_group()
        start, n = "0-0", 0
        while True:
            nxt, claimed, *_ = self._call(
                self._r.xautoclaim,
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id=start,
                count=1000,
            )
            n += len(claimed)
            if nxt in ("0-0", start):
                break
            start = nxt
        if n:
            self._backlog = "0"
            log.info("claimed %d pending inventory entries for %s", n, self.consumer)
        self._next_claim = time.monotonic() + max(self.claim_idle_ms, 1000) / 1e3
        return n

    def read(self, count: int, block_ms: int) -> list[SourceEntry]:
        """See ``InventoryEventSource.read``."""
        self._ensure_group()
        if time.monotonic() >= self._next_claim:
            self.claim()
        if self._backlog is not None:
            got = self._xreadgroup(self._backlog, count, None)
            if got:
                self._backlog = got[-1].entry_id
                return got
            self._backlog = None
        return self._xreadgroup(">", count, block_ms)

    def _xreadgroup(self, pos: str, count: int, block_ms: int | None) -> list[SourceEntry]:
        resp = self._call(
            self._r.xreadgroup,
            self.group,
            self.consumer,
            {self.stream: pos},
            count=count,
            block=block_ms,
        )
        return [_entry(eid, fields) for eid, fields in (resp[0][1] if resp else [])]

    def ack(self, entries: list[SourceEntry]) -> None:
        """See ``InventoryEventSource.ack``; rejected entries also go to ``<stream>:rejected``."""
        if not entries:
            return
        pipe = self._r.pipeline(transaction=False)
        for e in entries:
            if e.event is None:
                pipe.xadd(
                    f"{self.stream}:rejected",
                    {"entry_id": e.entry_id, "reason": e.error or ""},
                    maxlen=100_000,
                    approximate=True,
                )
        pipe.xack(self.stream, self.group, *[e.entry_id for e in entries])
        self._call(pipe.execute)

    def rewind(self) -> None:
        """See ``InventoryEventSource.rewind``."""
        self._backlog = "0"

    def lag(self) -> SourceLag:
        """See ``InventoryEventSource.lag`` (``XINFO GROUPS``, then the oldest entry not yet applied)."""
        self._ensure_group()
        info = next(
            (g for g in self._call(self._r.xinfo_groups, self.stream) if g["name"] == self.group),
            None,
        )
        if info is None:
            return SourceLag(entries=-1, seconds=float("nan"))
        pending, undelivered = int(info["pending"]), info.get("lag")
        oldest: str | None = None
        if pending:
            oldest = self._call(self._r.xpending, self.stream, self.group)["min"]
        elif undelivered is None or int(undelivered) > 0:
            nxt = self._call(
                self._r.xrange, self.stream, f"({info['last-delivered-id']}", "+", count=1
            )
            oldest = nxt[0][0] if nxt else None
        if undelivered is None:  # Redis cannot tell (entries deleted inside the range): count them
            undelivered = len(
                self._call(
                    self._r.xrange, self.stream, f"({info['last-delivered-id']}", "+", count=100_000
                )
            )
        age = max(0.0, time.time() - entry_ms(oldest) / 1e3) if oldest else 0.0
        return SourceLag(entries=pending + int(undelivered), seconds=age)

    def close(self) -> None:
        """Close the client."""
        self._r.close()


def _entry(entry_id: str, fields: dict[str, str] | None) -> SourceEntry:
    if not fields:
        return SourceEntry(entry_id, None, "deleted from the stream before it was applied")
    try:
        return SourceEntry(entry_id, decode_event(fields))
    except ValueError as exc:
        return SourceEntry(entry_id, None, str(exc))


@dataclass
class ConsumerStats:
    """What a consumer did since it started."""

    report: ApplyReport = field(default_factory=ApplyReport)
    acked: int = 0
    batches: int = 0
    failures: int = 0  # batches whose apply failed (the store did not answer): replayed later
    last_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for logs and JSON."""
        return {
            **self.report.as_dict(),
            "acked": self.acked,
            "batches": self.batches,
            "failures": self.failures,
            "last_id": self.last_id,
        }


class InventoryConsumer:
    """Applies a source's events to an inventory store: read, apply, acknowledge.

    Parameters
    ----------
    source : where the events come from.
    store : the authoritative state (``RedisInventoryStore`` in production).
    batch : entries per read.
    block_ms : how long one read waits for a new entry, milliseconds.
    """

    def __init__(
        self,
        source: InventoryEventSource,
        store: InventoryStore,
        batch: int = 500,
        block_ms: int = 1000,
    ) -> None:
        self.source, self.store = source, store
        self.batch, self.block_ms = batch, block_ms
        self.stats = ConsumerStats()

    def step(self) -> int:
        """One read → apply → acknowledge cycle; the number of entries handled (0: idle or failed).

        When the source or the store does not answer nothing is acknowledged: the source is
        rewound so the same entries come again (``stats.failures`` counts it).
        """
        try:
            entries = self.source.read(self.batch, self.block_ms)
            if not entries:
                return 0
            events = [e.event for e in entries if e.event is not None]
            rep = self.store.apply_batch(events)
            rep.read += len(entries) - len(events)
            rep.rejected += len(entries) - len(events)
            self.source.ack(entries)
        except InventoryUnavailable as exc:
            self.stats.failures += 1
            log.warning("inventory consumer: %s (will replay)", exc)
            self.source.rewind()
            return 0
        self.stats.report.add(rep)
        self.stats.acked += len(entries)
        self.stats.batches += 1
        self.stats.last_id = entries[-1].entry_id
        return len(entries)

    def run(
        self,
        stop: threading.Event,
        progress_every_s: float = 10.0,
        retry_s: float = 1.0,
        on_progress: Callable[[ConsumerStats], None] | None = None,
    ) -> ConsumerStats:
        """Step until ``stop`` is set; log progress and lag every ``progress_every_s`` seconds."""
        next_log = time.monotonic() + progress_every_s
        while not stop.is_set():
            before = self.stats.failures
            self.step()
            if self.stats.failures > before:
                stop.wait(retry_s)
            if time.monotonic() >= next_log:
                next_log = time.monotonic() + progress_every_s
                self._log_progress()
                if on_progress is not None:
                    on_progress(self.stats)
        return self.stats

    def _log_progress(self) -> None:
        try:
            lag = self.source.lag()
            lag_txt = f"lag {lag.entries} entries / {lag.seconds:.2f} s"
        except InventoryUnavailable as exc:
            lag_txt = f"lag unknown ({exc})"
        log.info("inventory consumer: %s; %s", self.stats.as_dict(), lag_txt)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Step until the group has nothing left to apply (True) or ``timeout_s`` passes (False)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.step() == 0 and self.source.lag().entries == 0:
                return True
        return False
