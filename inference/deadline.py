"""Server-side deadlines and load shedding for the transformer's request path.

Every call carries a ``RequestClock``: when it reached the server (``time.perf_counter`` seconds,
stamped by the outermost route: ``inference.fast_route`` for REST, ``inference.grpc_guard`` for
gRPC), the client's own budget if it sent one (REST header ``X-Request-Deadline-Ms``, gRPC's
deadline, ``grpc-timeout``) and whether the client is still there. The transformer's deadline is
``received + min(--request_deadline_ms, client budget)``.

``Admission`` lets at most ``limit`` calls into the stages at once; the others wait in FIFO order,
each only as long as it can still be answered in time: a call whose predicted wait plus the
expected service time (an EWMA of recent calls) passes its deadline is not queued at all. What
happens to a call that is not admitted is the transformer's choice (``--overload``): the cheap path
(the deterministic fallback) or ``Shed`` (HTTP 503 with ``Retry-After``, gRPC ``UNAVAILABLE``).
A call whose deadline passed, or whose client went away, before the policy stage is shed too:
no answer is computed that nobody will receive.

No kserve imports but the exception base; nothing here touches the policy's state.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kserve.errors import ModelNotReady

#: Request header carrying the client's own budget, milliseconds (decimal, > 0).
DEADLINE_HEADER = "x-request-deadline-ms"
#: Client budgets taken from the header, milliseconds, inclusive (outside: refused with 400).
MIN_CLIENT_DEADLINE_MS = 1.0
MAX_CLIENT_DEADLINE_MS = 60_000.0
#: Seconds a refused client is told to wait before it tries again (``Retry-After``).
RETRY_AFTER_S = 1


def _never_gone() -> bool:
    return False


@dataclass
class RequestClock:
    """When a call reached the server and how long its client waits.

    Attributes
    ----------
    received : ``time.perf_counter()`` seconds when the request reached the server.
    client_budget_s : the client's own budget (header or gRPC deadline), seconds; None if none.
    gone : returns True once the client disconnected or cancelled.
    """

    received: float
    client_budget_s: float | None = None
    gone: Callable[[], bool] = field(default=_never_gone)

    def deadline(self, default_s: float, reserve_s: float = 0.0) -> float:
        """``perf_counter`` seconds by which the answer must be out: ``received`` plus the smaller of
        ``default_s`` (the server's budget; <= 0 means none) and the client's budget, less
        ``reserve_s`` (what the answer still needs after the server lets it go: writing it out, the
        network, and the time the request waited before the server could read it)."""
        budgets = [
            b for b in (default_s if default_s > 0 else None, self.client_budget_s) if b is not None
        ]
        return self.received + min(budgets) - reserve_s if budgets else math.inf


_CLOCK: contextvars.ContextVar[RequestClock | None] = contextvars.ContextVar(
    "checkout_recs_clock", default=None
)


def current_clock() -> RequestClock | None:
    """The clock the route stamped on the call being served (None outside a served call)."""
    return _CLOCK.get()


def set_clock(clock: RequestClock) -> contextvars.Token:
    """Stamp ``clock`` on the current call (the route's task); ``reset_clock`` with the token after."""
    return _CLOCK.set(clock)


def reset_clock(token: contextvars.Token) -> None:
    """Undo ``set_clock``."""
    _CLOCK.reset(token)


def parse_budget_ms(value: str) -> float:
    """Seconds from a ``X-Request-Deadline-Ms`` value; ValueError with the reason unless it is a
    number of milliseconds (decimal, exponent allowed) in [``MIN_CLIENT_DEADLINE_MS``,
    ``MAX_CLIENT_DEADLINE_MS``]."""
    try:
        ms = float(value) if value.strip().isascii() else math.nan
    except ValueError:
        ms = math.nan
    if not MIN_CLIENT_DEADLINE_MS <= ms <= MAX_CLIENT_DEADLINE_MS:  # NaN fails too
        raise ValueError(
            f"{DEADLINE_HEADER} must be a number of milliseconds in [{MIN_CLIENT_DEADLINE_MS:g}, "
            f"{MAX_CLIENT_DEADLINE_MS:g}], got {value[:40]!r}"
        )
    return ms / 1e3


class Shed(ModelNotReady):
    """A call refused without computing its answer (HTTP 503 with ``Retry-After``, gRPC UNAVAILABLE).

    A ``ModelNotReady`` so that kserve's own routes answer 503 too; ``reason`` says why.
    """

    def __init__(self, model_name: str, reason: str) -> None:
        super().__init__(model_name, reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ServiceTime:
    """Running estimate of how long a call takes, seconds: exponentially weighted mean and mean
    absolute deviation (weight ``alpha`` for the newest call).

    Parameters
    ----------
    initial_s : the estimate before any call was measured, seconds.
    alpha : weight of each new observation, in (0, 1].
    """

    def __init__(self, initial_s: float, alpha: float = 0.1) -> None:
        self.mean_s, self.dev_s, self.alpha = initial_s, initial_s / 2, alpha

    def observe(self, seconds: float) -> None:
        """Record one call's duration, seconds."""
        err = seconds - self.mean_s
        self.mean_s += self.alpha * err
        self.dev_s += self.alpha * (abs(err) - self.dev_s)

    def budget_s(self) -> float:
        """What a call should budget for, seconds: mean + 2 mean absolute deviations."""
        return self.mean_s + 2 * self.dev_s


class LoopLag:
    """How late the serving loop runs what is due: a timer every ``period_s`` measures its overshoot.

    ``recent_s`` is the largest recent overshoot, seconds (decaying by ``decay`` per tick): on shared
    or saturated cores every step of a call (reading it, writing its answer) waits that long, so a
    deadline test that ignores it computes answers that reach the client too late.
    """

    def __init__(self, period_s: float = 0.01, decay: float = 0.95) -> None:
        self.period_s, self.decay = period_s, decay
        self.recent_s = 0.0

    def observe(self, overshoot_s: float) -> None:
        """Record one tick's overshoot, seconds."""
        self.recent_s = max(overshoot_s, self.recent_s * self.decay)

    async def run(self) -> None:
        """Tick until cancelled (a background task on the serving loop)."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.period_s)
            self.observe(max(0.0, loop.time() - t - self.period_s))


class Admission:
    """At most ``limit`` calls in the stages at once; the rest wait, FIFO, while they can make it
    and for at most ``max_wait_s``.

    Parameters
    ----------
    limit : calls in the stages at once (both cores busy: the transformer's loop and the predictor).
    max_wait_s : longest wait for a slot, seconds: past it a queue only adds latency to every call it
        holds (the rate served is the same), so a call predicted to wait longer is shed at once.
    max_queue : calls waiting at most (a safety bound; the tests above shed first).
    initial_s : expected service time before any call was measured, seconds.
    """

    def __init__(
        self,
        limit: int = 4,
        max_wait_s: float = math.inf,
        max_queue: int = 256,
        initial_s: float = 0.02,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit, self.max_wait_s, self.max_queue = limit, max_wait_s, max_queue
        self.inflight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._waiting = 0
        self.service = ServiceTime(initial_s)

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot now."""
        return self._waiting

    def expected_s(self) -> float:
        """Service time an admitted call should budget for, seconds (``ServiceTime.budget_s``)."""
        return self.service.budget_s()

    def observe(self, service_s: float) -> None:
        """Record one admitted call's time from admission to answer, seconds."""
        self.service.observe(service_s)

    def predicted_wait_s(self) -> float:
        """Wait of a call that queues now, seconds: the calls ahead, ``limit`` at a time."""
        if self.inflight < self.limit and not self._waiting:
            return 0.0
        return (self._waiting + 1) * self.service.mean_s / self.limit

    async def enter(self, deadline: float) -> bool:
        """Take a slot before ``deadline`` minus the expected service time (``perf_counter`` seconds).

        Returns True when admitted (the caller must ``leave()``), False at once when the predicted
        wait already passes that point or ``max_wait_s``, or the queue is full; False when that
        point passes while waiting.
        """
        if self.inflight < self.limit and not self._waiting:
            self.inflight += 1
            return True
        now = time.perf_counter()
        latest = min(deadline - self.expected_s(), now + self.max_wait_s)
        if self._waiting >= self.max_queue or now + self.predicted_wait_s() > latest:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._waiting += 1
        try:
            async with asyncio.timeout(latest - now):
                await fut
        except TimeoutError:
            return fut.done() and not fut.cancelled()  # handed a slot just as time ran out: keep it
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.leave()  # handed a slot, then cancelled: give it on
            raise
        finally:
            self._waiting -= 1
        return True

    def leave(self) -> None:
        """Give the slot to the first live waiter, or free it."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.inflight -= 1
