"""A replica of the live inventory in every transformer: lookups answered from memory.

``ReplicaInventoryStore`` keeps the whole unavailable set in this process (sold and delisted
ids, locks with their expiry time) and answers ``unavailable`` / ``unavailable_async`` from
memory: the request path makes no lookup call of its own and has no timeout on the event loop's
clock; the async lookup only waits, when needed, for the replica to be proven current after its
request arrived (3, the read fence: one small call from a thread, shared by concurrent requests).
Background threads keep it current:

1. **bootstrap** — take the stream position ``P`` up to which the consumer group has applied
   everything to the authoritative state (the group's last delivered id, or just before its
   oldest pending entry; ``0-0`` when no group exists yet), *then* snapshot that state (the
   ``<prefix>:seq`` hash, then each listing's key and remaining lock time). Every entry up to
   ``P`` was applied before the snapshot began, so the snapshot holds its effect or a newer one;
   entries after ``P`` are re-read from the stream and re-applied, harmlessly (the per-listing
   sequence check of ``MemoryInventoryStore._set``). Reading the sequence before the key keeps a
   torn read safe: the recorded sequence is never newer than the recorded state. The stream's
   last ``in_play_s`` seconds before ``P`` are read too, only to learn which listings were in play;
2. **tail** — ``XREAD BLOCK`` from ``P``, apply each batch in sequence order per listing
   (``InventoryStore.apply_batch``: a lock ends at its event time plus its TTL, evaluated
   locally on every lookup). A read that returns less than a full batch proves the replica
   *current* as of the moment it was sent (``current_at``, wall clock; ``proven_pc``, the same
   moment in ``perf_counter`` seconds);
3. **read fence** (``serving/inventory_fence.py``) — an async lookup (the request path) first makes
   sure the replica holds every entry that was in the stream when its request arrived: at once when
   a tail read sent after the arrival already proved it current, else after one coalesced fence
   read — the stream's last id (``XREVRANGE … COUNT 1``), then a wait until the tail has applied
   up to it — bounded by the request's deadline and ``fence_max_wait_s``. When that fails or is
   late, the lookup raises ``InventoryStale``: the lag rule below answers. Only the tail reads and
   applies entries (one lock, a condition the fence waits on).

**Stale rule.** The replica is stale when it has not been proven current for ``max_lag_s``
(Redis down or slow, the thread starved), and a lookup whose fence could not be read is answered
as if it were. A stale replica raises ``InventoryStale`` on lookup and
the recommender answers with the fallback, reason ``inventory_stale``, filtered by
``last_known_unavailable``: only listings whose state is *known* remain, i.e. listings that were
available at ``current_at`` **and** had no inventory event in the ``in_play_s`` seconds before it.
Excluded: sold and delisted listings, every lock not over at ``current_at`` (its outcome —
unlock, sale, renewal — is unknown, so it is not released by its expiry while stale), and every
listing in play (listed, locked, unlocked, sold... within ``in_play_s``). A sale is preceded by
its checkout's lock, so a listing shown while stale would need its lock and its sale both inside
the stale interval (``docs/serving.md`` states this residual risk). The answer must still hold
six: when fewer than six of the fallback pool are known, listings available at ``current_at`` but
in play are admitted, quietest (oldest last event) first, until six are — never a listing sold,
delisted or locked at ``current_at`` (``last_known_unavailable(ids, keep_at_least=6)``).

Readiness (``ready``) is true once the replica has been bootstrapped and proven current once;
it stays true afterwards (a stale replica still answers, and says so).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from checkout_recs.serving.inventory import (
    ApplyReport,
    InventoryStale,
    InventoryUnavailable,
    MemoryInventoryStore,
)
from checkout_recs.serving.inventory_fence import ReadFence
from checkout_recs.serving.inventory_stream import DEFAULT_GROUP, decode_event, entry_ms, stream_key

log = logging.getLogger(__name__)

_MAX_SEQ = 18446744073709551615  # largest sequence part of a stream id
#: Entries read back before ``P`` at bootstrap to learn the listings in play (at most).
HISTORY_MAX_ENTRIES = 200_000

#: ``on_applied(entries, applied_at)``: raw ``(entry id, fields)`` of a batch and the wall time it took effect.
AppliedHook = Callable[[list[tuple[str, dict[str, str]]], float], None]


class ReplicaInventoryStore(MemoryInventoryStore):
    """The inventory stream's state in memory, bootstrapped from Redis and tailed (module docstring).

    Parameters
    ----------
    url : Redis URL (the one the consumer writes the authoritative state to).
    prefix : key prefix: state ``<prefix>:inv:<id>`` / ``<prefix>:seq``, stream ``<prefix>:inv_events``.
    group : the appliers' consumer group (bootstrap position).
    max_lag_s : stale when not proven current for this long, seconds.
    in_play_s : while stale, listings with an event this recent (before ``current_at``) are
        excluded, seconds (default the default lock TTL).
    block_ms : how long one ``XREAD`` waits for new entries, milliseconds (< ``max_lag_s``).
    batch : entries per ``XREAD``.
    clock : wall clock, Unix seconds (lock expiry times are wall-clock times).
    on_applied : called after each applied batch (benchmarks measure event → excluded with it).
    fence_max_wait_s : longest an async lookup waits for its read fence, seconds; 0: no fence
        (lookups read memory at once, current to within the tail's delay and ``max_lag_s``).
    fence_reserve_s : kept back from a request's deadline for the rest of its answer, seconds.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "checkout_recs",
        group: str = DEFAULT_GROUP,
        max_lag_s: float = 1.0,
        in_play_s: float = 900.0,
        block_ms: int = 250,
        batch: int = 2000,
        clock: Callable[[], float] = time.time,
        on_applied: AppliedHook | None = None,
        fence_max_wait_s: float = 0.5,
        fence_reserve_s: float = 0.02,
    ) -> None:
        import redis  # lazy: the Redis backend is optional (memory backend needs nothing)
        from redis.backoff import NoBackoff  # lazy: as above
        from redis.retry import Retry  # lazy: as above

        super().__init__(clock=clock)
        self.prefix, self.stream, self.group = prefix, stream_key(prefix), group
        self.max_lag_s, self.in_play_s = max_lag_s, in_play_s
        self.block_ms, self.batch, self.on_applied = block_ms, batch, on_applied
        self._r: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=block_ms / 1e3 + 2.0,
            socket_connect_timeout=2.0,
        )
        # the fence's own connection: a failed read is answered at once (lag rule), never retried
        self._fence_r: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=max(2.0, 4 * fence_max_wait_s),
            socket_connect_timeout=max(0.5, fence_max_wait_s),
            retry=Retry(NoBackoff(), 0),
        )
        self._errors = (redis.RedisError, OSError)
        self._touched: dict[int, float] = {}  # listing id -> stream time (Unix s) of its last event
        self.position = "0-0"
        self.current_at = float("-inf")  # clock time the replica was last proven current
        self.proven_pc = float("-inf")  # the same moment, perf_counter seconds (the fence's clock)
        self.fence_max_wait_s = fence_max_wait_s
        self._cond = threading.Condition()  # position, applies, proofs, bootstrap swaps
        self._gen = 0  # bumped by every bootstrap: a read sent before one proves nothing after it
        self.bootstrapped = False
        self._rebootstrap = False  # set when entries after the position were trimmed away
        self._ever_current = False
        self.lag_s = 0.0  # apply time minus stream time of the newest applied entry, seconds
        self.report = ApplyReport()
        self.bootstraps = 0
        self.errors = 0
        self._stop = threading.Event()
        self._wake = threading.Event()  # cuts the tail's back-off short: a fence waits for it
        self._thread: threading.Thread | None = None
        self.fence: ReadFence | None = (
            ReadFence(self._fence_read, lambda: self.proven_pc, fence_max_wait_s, fence_reserve_s)
            if fence_max_wait_s > 0
            else None
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ReplicaInventoryStore:
        """Start the background thread (bootstrap, then tail); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inventory-replica", daemon=True)
            self._thread.start()
            if self.fence is not None:
                self.fence.start()
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until ``ready()`` or ``timeout_s`` seconds pass (tests, benchmarks, CLI)."""
        end = time.monotonic() + timeout_s
        while not self.ready() and time.monotonic() < end:
            time.sleep(0.01)
        return self.ready()

    def close(self) -> None:
        """Stop the threads and close the clients."""
        self._stop.set()
        self._wake.set()
        if self.fence is not None:
            self.fence.close()
        if self._thread is not None:
            self._thread.join(timeout=self.block_ms / 1e3 + 3.0)
        self._r.close()
        self._fence_r.close()

    # ------------------------------------------------------------------ request path (memory only)
    def ready(self) -> bool:
        """Bootstrapped and proven current at least once."""
        return self._ever_current

    def age_s(self) -> float:
        """Seconds since the replica was last proven current (inf before that)."""
        return max(0.0, self._clock() - self.current_at)

    def stale(self) -> bool:
        """Not proven current for more than ``max_lag_s``."""
        return self.age_s() > self.max_lag_s

    def unavailable(self, listing_ids: np.ndarray) -> np.ndarray:
        """See ``InventoryStore.unavailable`` (memory only, no fence: current to within the tail's
        delay); raises ``InventoryStale`` when stale, and ``InventoryUnavailable`` before the
        bootstrap."""
        if not self.bootstrapped:
            raise InventoryUnavailable("inventory replica not bootstrapped yet")
        if self.stale():
            raise InventoryStale(
                f"inventory replica {self.age_s():.1f} s behind (bound {self.max_lag_s} s)"
            )
        return self._mask(listing_ids, self._clock())

    async def unavailable_async(self, listing_ids: np.ndarray) -> np.ndarray:
        """``unavailable`` behind the read fence (module docstring, 3): the mask, bool (n,), holds
        every event that was in the stream when the request arrived. Raises ``InventoryStale`` when
        the replica is stale or the fence could not be read in time (the lag rule answers)."""
        if not self.bootstrapped:
            raise InventoryUnavailable("inventory replica not bootstrapped yet")
        if self.stale():
            raise InventoryStale(
                f"inventory replica {self.age_s():.1f} s behind (bound {self.max_lag_s} s)"
            )
        if self.fence is not None:
            since, until = self.fence.bounds()
            if not await self.fence.wait(since, until):
                raise InventoryStale(
                    "inventory fence not read in time (Redis slow or down): known state only"
                )
        return self._mask(listing_ids, self._clock())

    def last_known_unavailable(self, listing_ids: np.ndarray, keep_at_least: int = 0) -> np.ndarray:
        """bool (n,): True unless the listing's state is known available (module docstring, stale rule).

        When fewer than ``keep_at_least`` distinct listings are known available, listings available
        at ``current_at`` but in play are admitted too, quietest (oldest last event) first, until
        that many are: never one sold, delisted or locked at ``current_at``. Before the bootstrap
        nothing is known to be unavailable (all False; the server is not ready)."""
        if not self.bootstrapped:
            return np.zeros(len(listing_ids), dtype=bool)
        ids = np.asarray(listing_ids, dtype=np.int64)
        at = self.current_at
        gone = self._mask(ids, at)
        get = self._touched.get
        touched = np.fromiter(
            (get(i, -np.inf) for i in ids.tolist()), dtype=np.float64, count=len(ids)
        )
        out = gone | (touched >= at - self.in_play_s)
        return _admit_quietest(ids, gone, touched, out, keep_at_least) if keep_at_least else out

    def held(self) -> int:
        """Listings held sold, delisted or locked (locks past their expiry included until overwritten)."""
        return len(self._state)

    def stats(self) -> dict[str, Any]:
        """Position, age, lag and counts (JSON-ready)."""
        return {
            "position": self.position,
            "age_s": self.age_s(),
            "lag_s": self.lag_s,
            "stale": self.stale(),
            "ready": self.ready(),
            "unavailable": self.held(),
            "bootstraps": self.bootstraps,
            "errors": self.errors,
            "events": self.report.as_dict(),
            "fence": None if self.fence is None else self.fence.stats.as_dict(),
        }

    # ------------------------------------------------------------------ background thread
    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if not self.bootstrapped or self._rebootstrap:
                    self._bootstrap()  # lookups keep the state in hand meanwhile
                self._tail_once()
                backoff = 0.1
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure (Redis or not)
                self.errors += 1
                log.warning(
                    "inventory replica: %s (retrying in %.1f s)",
                    exc,
                    backoff,
                    exc_info=not isinstance(exc, self._errors),
                )
                self._wake.clear()
                if not self._stop.is_set():
                    self._wake.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                self._recover()

    def _recover(self) -> None:
        """After an error: bootstrap again when entries after our position may have been trimmed or
        deleted (the stream's first entry is past it, or a deleted id is)."""
        try:
            info = self._r.xinfo_stream(self.stream)
        except self._errors:
            return
        first = (info.get("first-entry") or [None])[0]
        removed = int(info.get("entries-added") or 0) > int(
            info.get("length") or 0
        )  # trimmed or deleted
        behind = (
            removed and first is not None and _id_key(first) > _id_key(self.position)
        ) or _id_key(info.get("max-deleted-entry-id") or "0-0") > _id_key(self.position)
        if self.bootstrapped and behind:
            log.warning(
                "inventory replica: entries after %s were trimmed; bootstrapping again",
                self.position,
            )
            self._rebootstrap = True

    def _bootstrap(self) -> None:
        pos = self._applied_position()
        seqs, state = self._snapshot()
        touched = self._history(pos)
        with self._cond:
            self._seq, self._state, self._touched = seqs, state, touched
            self.position, self.bootstrapped, self._rebootstrap = pos, True, False
            self._gen += 1
            self.proven_pc = float("-inf")  # the entries after ``pos`` are to be read again
            self._cond.notify_all()
        self.bootstraps += 1
        log.info(
            "inventory replica bootstrapped at %s: %d listings with a sequence, %d unavailable",
            pos,
            len(seqs),
            len(state),
        )

    def _applied_position(self) -> str:
        """The stream id up to which the group has applied every entry (``0-0`` without a group)."""
        import redis  # lazy: the Redis backend is optional (memory backend needs nothing)

        try:
            groups = self._r.xinfo_groups(self.stream)
        except redis.ResponseError:  # no stream yet
            return "0-0"
        g = next((x for x in groups if x["name"] == self.group), None)
        if g is None:
            return "0-0"
        pos = g["last-delivered-id"]
        if int(g["pending"]):
            oldest = _prev_id(self._r.xpending(self.stream, self.group)["min"])
            pos = min(pos, oldest, key=_id_key)
        return str(pos)

    def _snapshot(self) -> tuple[dict[int, int], dict[int, tuple[str, float]]]:
        """(sequence per listing, (state, expiry clock time) per unavailable listing) from Redis."""
        seqs: dict[int, int] = {}
        state: dict[int, tuple[str, float]] = {}
        cursor: int = 0
        while True:
            cursor, chunk = self._r.hscan(f"{self.prefix}:seq", cursor, count=2000)
            ids = [int(k) for k in chunk]
            pipe = self._r.pipeline(transaction=False)
            for lid in ids:
                pipe.get(f"{self.prefix}:inv:{lid}")
                pipe.pttl(f"{self.prefix}:inv:{lid}")
            vals, now = pipe.execute(), self._clock()
            for j, lid in enumerate(ids):
                seqs[lid] = int(chunk[str(lid)])
                value, pttl = vals[2 * j], vals[2 * j + 1]
                if value is not None and pttl != -2:  # -2: expired between the two reads
                    state[lid] = (value, float("inf") if pttl < 0 else now + pttl / 1e3)
            if int(cursor) == 0:
                return seqs, state

    def _history(self, pos: str) -> dict[int, float]:
        """Listing id -> stream time of its last event, over the ``in_play_s`` seconds before ``pos``."""
        touched: dict[int, float] = {}
        if pos == "0-0":
            return touched
        low = max(0, entry_ms(pos) - int(self.in_play_s * 1000))
        hi, read = pos, 0
        while read < HISTORY_MAX_ENTRIES:
            page = self._r.xrevrange(self.stream, max=hi, min=f"{low}-0", count=5000)
            for eid, fields in page:
                lid = fields.get("listing_id", "")
                if lid.lstrip("-").isdigit():
                    touched.setdefault(int(lid), entry_ms(eid) / 1e3)
            read += len(page)
            if len(page) < 5000:
                break
            hi = f"({page[-1][0]}"
        return touched

    def _tail_once(self) -> None:
        """One tail read (``XREAD BLOCK``) from the position, applied; one that returns fewer entries
        than ``batch`` proves the replica current as of when it was sent (an empty one: until it came
        back). Wakes the fence waiting for the tail (``_fence_read``)."""
        with self._cond:
            pos, gen = self.position, self._gen
        sent_pc, sent = time.perf_counter(), self._clock()
        resp = self._r.xread({self.stream: pos}, count=self.batch, block=self.block_ms)
        entries = resp[0][1] if resp else []
        with self._cond:
            if gen != self._gen:  # a bootstrap (tests) replaced the state while the read was out
                return
            if entries:
                self._apply(entries)
            if len(entries) < self.batch:
                self.current_at = max(self.current_at, sent if entries else self._clock())
                self.proven_pc = max(self.proven_pc, sent_pc)
                self._ever_current = True
            self._cond.notify_all()

    def _fence_read(self) -> float:
        """One fence read (the fence's thread): the stream's last entry id (``XREVRANGE … COUNT 1``,
        one small round trip), then a wait until the tail has applied up to it. The tail's blocking
        ``XREAD`` returns as soon as entries exist past its position, so it is reading them already;
        reading them a second time here would only double the parse work when the process is
        behind (it did: p99 event → excluded went from 53 ms to 5.5 s on a loaded box). Returns the
        ``perf_counter`` time the call was sent, as of which the replica is then proven current.
        Raises when Redis does not answer, a bootstrap intervenes, or the tail does not get there
        within ``fence_max_wait_s``."""
        if not self.bootstrapped:
            raise InventoryUnavailable("inventory replica not bootstrapped yet")
        with self._cond:
            gen = self._gen
        sent_pc, sent = time.perf_counter(), self._clock()
        last = self._fence_r.xrevrange(self.stream, count=1)
        target = _id_key(last[0][0]) if last else (0, 0)
        end = time.monotonic() + self.fence_max_wait_s
        self._wake.set()  # Redis answers: a tail backing off after an error may read again now
        with self._cond:
            # done when the tail holds the last entry, or one of its reads sent after ours proved it
            while _id_key(self.position) < target and self.proven_pc < sent_pc:
                left = end - time.monotonic()
                if self._gen != gen or left <= 0 or self._stop.is_set():
                    break
                self._cond.wait(left)
            if self._gen != gen or (_id_key(self.position) < target and self.proven_pc < sent_pc):
                raise InventoryUnavailable(
                    "the replica's tail did not reach the stream's end in time"
                )
            self.current_at = max(self.current_at, sent)
            self.proven_pc = max(self.proven_pc, sent_pc)
        return sent_pc

    def _apply(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        events, rejected = [], 0
        for eid, fields in entries:
            try:
                ev = decode_event(fields)
            except ValueError:
                rejected += 1
                continue
            events.append(ev)
            self._touched[ev.listing_id] = entry_ms(eid) / 1e3
        rep = self.apply_batch(events, self._clock())
        rep.read += rejected
        rep.rejected += rejected
        self.report.add(rep)
        self.position = entries[-1][0]
        applied_at = self._clock()
        self.lag_s = max(0.0, applied_at - entry_ms(self.position) / 1e3)
        if self.on_applied is not None:
            self.on_applied(entries, applied_at)
        if len(self._touched) > 200_000:
            self._prune_touched()

    def _prune_touched(self) -> None:
        since = min(self.current_at, self._clock()) - self.in_play_s
        self._touched = {k: t for k, t in self._touched.items() if t >= since}


def _admit_quietest(
    ids: np.ndarray, gone: np.ndarray, touched: np.ndarray, out: np.ndarray, k: int
) -> np.ndarray:
    """``out`` with in-play listings (``out & ~gone``) re-admitted, oldest ``touched`` first, until
    ``k`` distinct ids are admitted (or none is left); shapes (n,)."""
    admitted = set(ids[~out].tolist())
    if len(admitted) >= k:
        return out
    out = out.copy()
    cand = np.flatnonzero(out & ~gone)
    for j in cand[np.argsort(touched[cand], kind="stable")].tolist():
        if len(admitted) >= k:
            break
        out[ids == ids[j]] = False
        admitted.add(int(ids[j]))
    return out


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = str(entry_id).partition("-")
    return int(ms), int(seq or 0)


def _prev_id(entry_id: str) -> str:
    """The stream id just before ``entry_id``."""
    ms, seq = _id_key(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_MAX_SEQ}" if ms > 0 else "0-0"
