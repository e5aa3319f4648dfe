"""Live inventory: which listings are sold, delisted or locked in someone's checkout right now.

Two backends behind one abstract base (the Feast pattern), chosen by ``open_inventory``:

* ``MemoryInventoryStore`` — a dict in this process (embedded default, tests, offline replay);
* ``RedisInventoryStore`` — one key per unavailable listing, ``<prefix>:inv:<listing_id>``,
  whose value is ``sold`` / ``delisted`` / ``locked``; locks carry the event's TTL (``SET EX``)
  so an abandoned checkout frees the listing by itself. The last applied event sequence per
  listing lives in the hash ``<prefix>:seq`` so a replayed or reordered event never undoes a
  newer one.

The request path asks one question, ``unavailable_async(ids) -> bool mask``, answered for a few
hundred candidates by one pipelined ``MGET`` on Redis. Inventory events
(``contract.INVENTORY_EVENTS``) are applied in ``sequence`` order per listing by
``apply_events``; ``checkout-recs inventory apply EVENTS_PARQUET`` calls it. Streamed events
(``InventoryEvent``, ``serving/inventory_stream.py``) go through ``apply_batch``, whose locks last
until the event's time plus its TTL; both end in the one sequence-checked ``_set`` / ``_set_many``
of each backend. The third backend, the in-process replica of the stream, lives in
``serving/inventory_replica.py``.
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from checkout_recs import contract

#: Default lock lifetime when a ``locked`` event carries no ``lock_ttl_s`` (seconds).
DEFAULT_LOCK_TTL_S = 900
_STATE_FOR_EVENT = {"sold": "sold", "delisted": "delisted", "locked": "locked"}


class InventoryUnavailable(RuntimeError):
    """The inventory backend did not answer; callers degrade to the fallback.

    ``reason`` is the answer's ``contract.FallbackReason`` for it."""

    reason = "inventory_unavailable"


class InventoryStale(InventoryUnavailable):
    """The replica fell behind its bound: answers use ``last_known_unavailable`` (known state only)."""

    reason = "inventory_stale"


@dataclass(frozen=True)
class InventoryEvent:
    """One inventory event as it travels on the stream (a ``contract.INVENTORY_EVENTS`` row).

    Attributes
    ----------
    listing_id : listing id.
    event_type : one of ``contract.INVENTORY_EVENT_TYPES``.
    sequence : per-listing sequence, strictly increasing per listing.
    lock_ttl_s : lock lifetime, seconds (``locked`` only; None means ``DEFAULT_LOCK_TTL_S``).
    event_ts : when the event happened, Unix seconds (the producer's clock); a lock lasts until
        ``event_ts + lock_ttl_s``.
    event_id : the producer's id of the event (``contract.INVENTORY_EVENTS.event_id``).
    """

    listing_id: int
    event_type: str
    sequence: int
    lock_ttl_s: int | None
    event_ts: float
    event_id: str = ""

    def lock_expires_at(self) -> float:
        """Unix seconds when this ``locked`` event's lock ends (ValueError for a bad TTL)."""
        return self.event_ts + _lock_ttl(self.event_type, self.lock_ttl_s)


@dataclass
class ApplyReport:
    """What ``apply_events`` did: counts add up to ``read``."""

    read: int = 0
    applied: int = 0
    stale: int = 0  # sequence not newer than the last applied one for the listing
    rejected: int = 0  # unknown event type or bad TTL
    by_type: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {
            "read": self.read,
            "applied": self.applied,
            "stale": self.stale,
            "rejected": self.rejected,
            "by_type": dict(self.by_type),
        }

    def count(self, event_type: str, applied: bool) -> None:
        """Count one event that was applied (True) or found stale (False)."""
        if applied:
            self.applied += 1
            self.by_type[event_type] = self.by_type.get(event_type, 0) + 1
        else:
            self.stale += 1

    def add(self, other: ApplyReport) -> None:
        """Add ``other``'s counts to these."""
        self.read += other.read
        self.applied += other.applied
        self.stale += other.stale
        self.rejected += other.rejected
        for k, v in other.by_type.items():
            self.by_type[k] = self.by_type.get(k, 0) + v


class InventoryStore(abc.ABC):
    """Sold / delisted / locked state per listing."""

    @abc.abstractmethod
    def unavailable(self, listing_ids: np.ndarray) -> np.ndarray:
        """Mask of listings that must not be shown.

        Parameters
        ----------
        listing_ids : int64 array, shape (n,)

        Returns
        -------
        bool array, shape (n,): True where the listing is sold, delisted or locked (lock not
        expired). Raises ``InventoryUnavailable`` when the backend cannot answer.
        """

    async def unavailable_async(self, listing_ids: np.ndarray) -> np.ndarray:
        """``unavailable`` without blocking the event loop (same shapes and errors)."""
        return self.unavailable(listing_ids)

    def last_known_unavailable(self, listing_ids: np.ndarray, keep_at_least: int = 0) -> np.ndarray:
        """Best answer without the backend: listings seen unavailable recently (bool (n,)).

        Used only while the backend is down; the memory store always knows. ``keep_at_least``: a
        store whose answer would leave fewer distinct listings than this may admit listings of
        uncertain state, least risky first, never one it knows unavailable (the replica does; the
        memory and Redis stores exclude only what they saw unavailable and ignore it).
        """
        return self.unavailable(listing_ids)

    def ready(self) -> bool:
        """Whether the store can answer for every listing (the replica: bootstrapped and caught up)."""
        return True

    @abc.abstractmethod
    def _set(self, listing_id: int, state: str | None, ttl_s: float | None, sequence: int) -> bool:
        """Set one listing's state (None = available; ``ttl_s`` seconds, None = no expiry).
        False when ``sequence`` is not newer than the listing's last applied one."""

    def _set_many(self, changes: list[tuple[int, str | None, float | None, int]]) -> list[bool]:
        """``_set`` for each ``(listing_id, state, ttl_s, sequence)``, in order (backends may batch)."""
        return [self._set(*c) for c in changes]

    def mark(
        self,
        listing_id: int,
        event_type: str,
        sequence: int | None = None,
        lock_ttl_s: int | None = None,
    ) -> bool:
        """Apply one inventory event to one listing.

        Parameters
        ----------
        listing_id : listing id.
        event_type : one of ``contract.INVENTORY_EVENT_TYPES``.
        sequence : the event's per-listing sequence; None means "newer than anything seen".
        lock_ttl_s : lock lifetime in seconds (``locked`` only; default ``DEFAULT_LOCK_TTL_S``).

        Returns
        -------
        True when applied, False when older than the last applied event for the listing.
        Raises ``ValueError`` for an unknown event type or a non-positive TTL.
        """
        ttl = _lock_ttl(event_type, lock_ttl_s) if event_type == "locked" else None
        if event_type not in contract.INVENTORY_EVENT_TYPES:
            raise ValueError(f"unknown inventory event type {event_type!r}")
        seq = sequence if sequence is not None else time.time_ns()
        return self._set(int(listing_id), _STATE_FOR_EVENT.get(event_type), ttl, int(seq))

    def apply_batch(self, events: list[InventoryEvent], now: float | None = None) -> ApplyReport:
        """Apply streamed events in sequence order per listing, in one batch.

        A lock lasts until ``event.lock_expires_at()`` (the event's time plus its TTL, not the
        time it is applied): a lock already over at ``now`` (Unix seconds, default the wall
        clock) is applied as "available", its sequence still counting.

        Returns
        -------
        ApplyReport with ``read = applied + stale + rejected``.
        """
        now = time.time() if now is None else now
        report = ApplyReport(read=len(events))
        changes, types = [], []
        for ev in sorted(events, key=lambda e: (e.listing_id, e.sequence)):
            try:
                changes.append(_change(ev, now))
            except ValueError:
                report.rejected += 1
                continue
            types.append(ev.event_type)
        for etype, ok in zip(types, self._set_many(changes), strict=True):
            report.count(etype, ok)
        return report

    def apply_events(self, events: pa.Table) -> ApplyReport:
        """Apply a table of ``contract.INVENTORY_EVENTS`` in sequence order per listing.

        Returns
        -------
        ApplyReport with ``read = applied + stale + rejected``.
        """
        missing = set(contract.field_names(contract.INVENTORY_EVENTS)) - set(events.column_names)
        if missing:
            raise ValueError(f"inventory events lack columns {sorted(missing)}")
        df = events.select(["listing_id", "event_type", "sequence", "lock_ttl_s"]).to_pandas()
        df = df.sort_values(["listing_id", "sequence"], kind="stable")
        report = ApplyReport(read=len(df))
        for lid, etype, seq, ttl in df.itertuples(index=False, name=None):
            try:
                ok = self.mark(lid, etype, seq, None if ttl is None or ttl != ttl else int(ttl))
            except ValueError:
                report.rejected += 1
                continue
            report.count(etype, ok)
        return report

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op for the memory store)."""


class MemoryInventoryStore(InventoryStore):
    """Inventory state in a dict of this process; locks expire by wall clock."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._state: dict[int, tuple[str, float]] = {}  # id -> (state, expires_at or inf)
        self._seq: dict[int, int] = {}
        self._clock = clock

    def _set(self, listing_id: int, state: str | None, ttl_s: float | None, sequence: int) -> bool:
        if sequence <= self._seq.get(listing_id, -1):
            return False
        self._seq[listing_id] = sequence
        if state is None:
            self._state.pop(listing_id, None)
        else:
            expires = self._clock() + ttl_s if ttl_s else float("inf")
            self._state[listing_id] = (state, expires)
        return True

    def unavailable(self, listing_ids: np.ndarray) -> np.ndarray:
        """See ``InventoryStore.unavailable``."""
        return self._mask(listing_ids, self._clock())

    def _mask(self, listing_ids: np.ndarray, at: float) -> np.ndarray:
        """bool (n,): sold / delisted, or locked with the lock still on at clock time ``at``."""
        get = self._state.get
        out = np.zeros(len(listing_ids), dtype=bool)
        if not self._state:
            return out
        for i, lid in enumerate(np.asarray(listing_ids, dtype=np.int64).tolist()):
            st = get(lid)
            out[i] = st is not None and st[1] > at
        return out


class RedisInventoryStore(InventoryStore):
    """Inventory state in Redis: ``<prefix>:inv:<id>`` keys (locks with TTL), ``<prefix>:seq`` hash.

    Parameters
    ----------
    url : Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
    prefix : key prefix (tests use a private one).
    timeout_s : socket timeout of the request-path client, seconds; a slower answer raises
        ``InventoryUnavailable`` so the request degrades instead of waiting.
    """

    _SET_IF_NEWER = """
    local cur = redis.call('HGET', KEYS[2], ARGV[1])
    if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
    if ARGV[3] == '' then redis.call('DEL', KEYS[1])
    elseif ARGV[4] == '' then redis.call('SET', KEYS[1], ARGV[3])
    else redis.call('SET', KEYS[1], ARGV[3], 'PX', tonumber(ARGV[4])) end
    return 1
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "checkout_recs",
        timeout_s: float = 0.05,
    ) -> None:
        import redis  # lazy: the Redis backend is optional (memory backend needs nothing)
        import redis.asyncio as aredis  # lazy: the Redis backend is optional (memory backend needs nothing)

        self.url, self.prefix = url, prefix
        self._sync: Any = redis.Redis.from_url(
            url, socket_timeout=max(timeout_s, 1.0), socket_connect_timeout=max(timeout_s, 1.0)
        )
        self._async: Any = aredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            connection_class=_packed_connection_class(),
        )
        self._script = self._sync.register_script(self._SET_IF_NEWER)
        self._errors = (redis.RedisError, OSError)
        self._seen_gone: dict[int, float] = {}  # listing id -> monotonic time last seen unavailable
        self.remember_s = 3600.0

    def _remember(self, ids: np.ndarray, gone: np.ndarray) -> np.ndarray:
        if gone.any():
            now = time.monotonic()
            for lid in ids[gone].tolist():
                self._seen_gone[lid] = now
            if len(self._seen_gone) > 1_000_000:
                self._seen_gone.clear()
        return gone

    def last_known_unavailable(self, listing_ids: np.ndarray, keep_at_least: int = 0) -> np.ndarray:
        """Listings this process saw unavailable within ``remember_s`` (bool (n,))."""
        horizon = time.monotonic() - self.remember_s
        get = self._seen_gone.get
        return np.fromiter(
            (get(i, -np.inf) > horizon for i in np.asarray(listing_ids, np.int64).tolist()),
            dtype=bool,
            count=len(listing_ids),
        )

    def key(self, listing_id: int) -> str:
        """Redis key of one listing's state."""
        return f"{self.prefix}:inv:{int(listing_id)}"

    def _script_call(
        self, listing_id: int, state: str | None, ttl_s: float | None, sequence: int
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of ``_SET_IF_NEWER`` for one change (a TTL goes as whole ms, at least 1)."""
        ttl_ms = "" if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        return [self.key(listing_id), f"{self.prefix}:seq"], [
            listing_id,
            sequence,
            state or "",
            ttl_ms,
        ]

    def _set(self, listing_id: int, state: str | None, ttl_s: float | None, sequence: int) -> bool:
        keys, args = self._script_call(listing_id, state, ttl_s, sequence)
        try:
            return bool(self._script(keys=keys, args=args))
        except self._errors as exc:
            raise InventoryUnavailable(f"redis inventory write failed: {exc}") from exc

    def _set_many(self, changes: list[tuple[int, str | None, float | None, int]]) -> list[bool]:
        """The same script per change, sent in one pipeline (one round trip per batch)."""
        if not changes:
            return []
        pipe = self._sync.pipeline(transaction=False)
        for c in changes:
            keys, args = self._script_call(*c)
            self._script(keys=keys, args=args, client=pipe)
        try:
            return [bool(x) for x in pipe.execute()]
        except self._errors as exc:
            raise InventoryUnavailable(f"redis inventory write failed: {exc}") from exc

    def unavailable(self, listing_ids: np.ndarray) -> np.ndarray:
        """See ``InventoryStore.unavailable`` (one ``MGET``)."""
        ids = np.asarray(listing_ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros(0, dtype=bool)
        try:
            vals = self._sync.mget([self.key(i) for i in ids.tolist()])
        except self._errors as exc:
            raise InventoryUnavailable(f"redis inventory read failed: {exc}") from exc
        return self._remember(
            ids, np.fromiter((v is not None for v in vals), dtype=bool, count=len(ids))
        )

    async def unavailable_async(self, listing_ids: np.ndarray) -> np.ndarray:
        """See ``InventoryStore.unavailable`` (async ``MGET``; never blocks the loop)."""
        ids = np.asarray(listing_ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros(0, dtype=bool)
        pre = f"{self.prefix}:inv:"  # == self.key(i), without a call per listing
        try:
            vals = await self._async.mget([f"{pre}{i}" for i in ids.tolist()])
        except self._errors as exc:
            raise InventoryUnavailable(f"redis inventory read failed: {exc}") from exc
        return self._remember(
            ids, np.fromiter((v is not None for v in vals), dtype=bool, count=len(ids))
        )

    def clear(self) -> int:
        """Delete every key under this store's prefix (tests, re-bootstrap). Returns the count."""
        n = 0
        for k in self._sync.scan_iter(match=f"{self.prefix}:inv:*", count=1000):
            n += int(self._sync.delete(k))
        n += int(self._sync.delete(f"{self.prefix}:seq"))
        return n

    def close(self) -> None:
        """Close the sync client (the async one closes with its event loop)."""
        self._sync.close()


def _lock_ttl(event_type: str, lock_ttl_s: int | None) -> int:
    """A ``locked`` event's TTL in seconds (default ``DEFAULT_LOCK_TTL_S``); ValueError when not positive."""
    ttl = int(lock_ttl_s) if lock_ttl_s is not None else DEFAULT_LOCK_TTL_S
    if ttl <= 0:
        raise ValueError(f"lock_ttl_s must be positive, got {lock_ttl_s} ({event_type})")
    return ttl


def _change(ev: InventoryEvent, now: float) -> tuple[int, str | None, float | None, int]:
    """``(listing_id, state, ttl_s, sequence)`` for ``_set``: a lock keeps the rest of its lifetime
    at ``now`` (Unix s); one already over is "available". ValueError for a bad type or TTL."""
    if ev.event_type not in contract.INVENTORY_EVENT_TYPES:
        raise ValueError(f"unknown inventory event type {ev.event_type!r}")
    state, ttl = _STATE_FOR_EVENT.get(ev.event_type), None
    if ev.event_type == "locked":
        ttl = ev.lock_expires_at() - now
        if ttl <= 0:
            state, ttl = None, None
    return int(ev.listing_id), state, ttl, int(ev.sequence)


def _packed_connection_class() -> type:
    """redis-py's asyncio connection, packing ``MGET`` with hiredis (C) when it is installed.

    redis-py packs asyncio commands in Python: ~0.4 ms for the request path's ``MGET`` of ~450
    keys (all ``str``), 8x what ``hiredis.pack_command`` takes for the same bytes. Every other
    command goes through redis-py's own packer.
    """
    from redis.asyncio.connection import (
        Connection,  # lazy: the Redis backend is optional (memory backend needs nothing)
    )

    try:
        import hiredis
    except ImportError:
        return Connection

    class HiredisPackedConnection(Connection):
        def pack_command(self, *args: Any) -> list[bytes]:
            if args and args[0] == "MGET":
                return [hiredis.pack_command(args)]
            return super().pack_command(*args)

    return HiredisPackedConnection


def open_inventory(
    backend: str = "memory",
    redis_url: str = "redis://127.0.0.1:6379/0",
    prefix: str = "checkout_recs",
    timeout_s: float = 0.05,
) -> InventoryStore:
    """The inventory store for ``backend`` (``memory`` or ``redis``); ValueError otherwise."""
    if backend == "memory":
        return MemoryInventoryStore()
    if backend == "redis":
        return RedisInventoryStore(redis_url, prefix=prefix, timeout_s=timeout_s)
    raise ValueError(f"unknown inventory backend {backend!r}: use 'memory' or 'redis'")
