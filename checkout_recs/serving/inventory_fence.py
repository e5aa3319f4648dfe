"""Read fence of the inventory replica: a lookup sees every stream entry that existed when its
request arrived.

The replica's tail (``XREAD BLOCK``) applies an entry a few milliseconds after it is appended —
longer when the process is busy, or when Redis stalls between taking an entry and sending it on —
so a request arriving in between was answered from a replica that had not yet applied an event
already in the stream (issue #19: 170 of 1,000 answers at 10,000 events/s). The fence closes the
gap:

* **The rule.** A lookup reads memory only once the replica is *proven current at or after its
  request's arrival*: it holds every entry that was in the stream at some moment after the request
  arrived. The tail's own reads prove it (a read sent after the arrival that returned everything
  past the replica's position): at a high event rate they do every few milliseconds, and the
  lookup does not wait at all.
* **The fence read.** Otherwise the lookup waits for a fence read: the stream's last entry id
  (``XREVRANGE <stream> + - COUNT 1``: one small round trip), then the tail applying up to that
  entry (it is reading it already: its blocking ``XREAD`` returns as soon as entries exist past its
  position). Nothing is read twice — an earlier version read the delta itself, and when the
  process fell behind the two readers doubled the parse work until event → excluded reached
  seconds. A dedicated thread with its own connection makes the call, so a saturated event loop
  delays only when a request notices the result, never whether the call is made (the issue's
  ``MGET`` timed out on the loop's own lag).
* **Coalesced.** One fence read in flight at a time. Every waiting request that arrived before a
  read started rides it; requests arriving while it is in flight ride the next one, started as
  soon as it ends: a burst of 300 costs a read or two, and a request waits at most for the read in
  flight plus its own.
* **Bounded.** A request waits until ``until`` (the earlier of its deadline, less what the rest of
  the answer needs, and ``max_wait_s`` after its lookup began). When its read fails (Redis down),
  or has not come back by then (Redis slow), ``wait`` returns False and the replica answers by its
  lag rule (``inventory_stale``: known state only). A request that timed out looks once more: a
  read sent after its arrival may have succeeded meanwhile.

Requests carry their arrival and deadline in a context variable (``set_window``), stamped by the
transformer from the call's ``RequestClock``; a lookup with no window (offline callers, tests that
call the stages) takes its own start as the arrival, which is stricter. Times are
``time.perf_counter()`` seconds throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Upper edges of the fence-wait histogram, seconds (a last bucket, +inf, holds the rest).
WAIT_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class FenceWindow:
    """When the request being served arrived and by when its lookup must be done.

    Attributes
    ----------
    arrived : ``time.perf_counter()`` seconds when the request reached the server.
    deadline : ``time.perf_counter()`` seconds by which the fence must be read (``inf``: none).
    """

    arrived: float
    deadline: float = float("inf")


_WINDOW: contextvars.ContextVar[FenceWindow | None] = contextvars.ContextVar(
    "checkout_recs_fence_window", default=None
)


def set_window(arrived: float, deadline: float = float("inf")) -> contextvars.Token:
    """Stamp the current call's arrival and deadline (perf_counter seconds); ``reset_window`` after."""
    return _WINDOW.set(FenceWindow(arrived, deadline))


def reset_window(token: contextvars.Token) -> None:
    """Undo ``set_window``."""
    _WINDOW.reset(token)


def current_window() -> FenceWindow | None:
    """The window stamped on the call being served (None outside one)."""
    return _WINDOW.get()


@dataclass
class FenceStats:
    """What the fence did since it started (counts; ``wait_hist`` per ``WAIT_BUCKETS_S`` + inf)."""

    lookups: int = 0  # lookups that asked the fence
    proven: int = 0  # already proven current after their arrival: no wait
    fenced: int = 0  # waited for a read that succeeded
    timed_out: int = 0  # their read had not come back by their bound: lag rule
    failed: int = 0  # their read failed (Redis down): lag rule
    reads: int = 0  # fence reads made
    read_errors: int = 0  # failed: Redis did not answer, or the tail did not catch up in time
    wait_s: float = 0.0  # total seconds lookups waited
    wait_hist: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BUCKETS_S) + 1))

    def observe_wait(self, seconds: float) -> None:
        """Count one lookup's wait (seconds) in the histogram."""
        self.wait_s += seconds
        i = next((k for k, b in enumerate(WAIT_BUCKETS_S) if seconds <= b), len(WAIT_BUCKETS_S))
        self.wait_hist[i] += 1

    def wait_quantile_ms(self, q: float) -> float | None:
        """Upper bucket edge (ms) under which a share ``q`` of the waits fell (None: no waits)."""
        total = sum(self.wait_hist)
        if not total:
            return None
        seen = 0
        for k, n in enumerate(self.wait_hist):
            seen += n
            if seen >= q * total:
                return WAIT_BUCKETS_S[k] * 1e3 if k < len(WAIT_BUCKETS_S) else float("inf")
        return float("inf")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for logs and JSON (wait quantiles as bucket edges, ms)."""
        waited = self.fenced + self.timed_out + self.failed
        return {
            "lookups": self.lookups,
            "proven_no_wait": self.proven,
            "fenced": self.fenced,
            "timed_out": self.timed_out,
            "failed": self.failed,
            "reads": self.reads,
            "read_errors": self.read_errors,
            "lookups_per_read": round(waited / self.reads, 2) if self.reads else None,
            "mean_wait_ms": round(self.wait_s / waited * 1e3, 3) if waited else 0.0,
            "wait_p50_ms_at_most": self.wait_quantile_ms(0.5),
            "wait_p99_ms_at_most": self.wait_quantile_ms(0.99),
            "wait_buckets_s": list(WAIT_BUCKETS_S),
            "wait_hist": list(self.wait_hist),
        }


@dataclass
class _Waiter:
    since: float  # perf_counter seconds: a read must start at or after this
    fut: asyncio.Future
    loop: asyncio.AbstractEventLoop


class ReadFence:
    """One thread making coalesced fence reads for the lookups that wait (module docstring).

    Parameters
    ----------
    read : makes one fence read; returns the ``perf_counter`` time it was sent, as of which it
        proved the replica current, and raises when it could not (any exception).
    proven : ``perf_counter`` seconds the replica was last proven current (fence or tail).
    max_wait_s : longest a lookup waits for its read, seconds.
    reserve_s : kept back from a request's deadline for the rest of its answer, seconds.
    """

    def __init__(
        self,
        read: Callable[[], float],
        proven: Callable[[], float],
        max_wait_s: float = 0.5,
        reserve_s: float = 0.02,
    ) -> None:
        self._read, self._proven = read, proven
        self.max_wait_s, self.reserve_s = max_wait_s, reserve_s
        self.stats = FenceStats()
        self._cond = threading.Condition()
        self._waiters: list[_Waiter] = []
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> ReadFence:
        """Start the thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inventory-fence", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread (waiting lookups give up at their bound)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def bounds(self) -> tuple[float, float]:
        """``(since, until)`` of the current lookup, perf_counter seconds: its request's arrival (or
        now) and when it stops waiting (module docstring, *Bounded*)."""
        now = time.perf_counter()
        win = _WINDOW.get()
        if win is None:
            return now, now + self.max_wait_s
        return win.arrived, min(now + self.max_wait_s, win.deadline - self.reserve_s)

    async def wait(self, since: float, until: float) -> bool:
        """True once a read sent at or after ``since`` (perf_counter s) has proven the replica
        current; False when ``until`` (perf_counter s) passes first or that read failed."""
        st = self.stats
        st.lookups += 1
        if self._proven() >= since:
            st.proven += 1
            return True
        t0 = time.perf_counter()
        result: bool | None = None  # True: its read succeeded, False: failed, None: bound passed
        if until > t0 and not self._stop:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future = loop.create_future()
            with self._cond:
                self._waiters.append(_Waiter(since, fut, loop))
                self._cond.notify()
            timer = loop.call_later(until - t0, _resolve, [fut], None)
            try:
                result = await fut
            finally:
                timer.cancel()
        ok = result is True or self._proven() >= since  # a read may have succeeded meanwhile
        st.observe_wait(time.perf_counter() - t0)
        if ok:
            st.fenced += 1
        elif result is False:
            st.failed += 1
        else:
            st.timed_out += 1
        return ok

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiters and not self._stop:
                    self._cond.wait()
                if self._stop:
                    waiting, self._waiters = self._waiters, []
                    _resolve_all(waiting, None)
                    return
            self._settle(self._proven(), True)  # the tail proved them current meanwhile
            if not self._pending():
                continue
            sent = time.perf_counter()
            try:
                ok = self._read() >= sent
            except Exception as exc:  # noqa: BLE001 - a failed read is an answer (lag rule), never a crash
                self.stats.read_errors += 1
                log.debug("inventory fence read failed: %s", exc)
                ok = False
            self.stats.reads += 1
            self._settle(sent, ok)  # its riders: every waiter that arrived before it started

    def _pending(self) -> bool:
        """Whether a lookup still waits (those that gave up are dropped)."""
        with self._cond:
            self._waiters = [w for w in self._waiters if not w.fut.done()]
            return bool(self._waiters)

    def _settle(self, before: float, value: bool) -> None:
        """Resolve to ``value`` the waiters that arrived at or before ``before`` (perf_counter s)."""
        with self._cond:
            done = [w for w in self._waiters if w.since <= before]
            if not done:
                return
            self._waiters = [w for w in self._waiters if w.since > before]
        _resolve_all(done, value)


def _resolve(futs: list[asyncio.Future], value: bool | None) -> None:
    """On the futures' loop: set each not yet done to ``value``."""
    for f in futs:
        if not f.done():
            f.set_result(value)


def _resolve_all(waiters: list[_Waiter], value: bool | None) -> None:
    """From any thread: resolve ``waiters`` to ``value``, one callback per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for w in waiters:
        by_loop.setdefault(w.loop, []).append(w.fut)
    for loop, futs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits on these any more
            loop.call_soon_threadsafe(_resolve, futs, value)
