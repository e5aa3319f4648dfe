"""The exploration budget's ledger: per process (``LocalLedger``) or shared by replicas (``RedisLedger``).

Protocol, per request that may explore (``Explorer.explore``):

1. ``roll(day)`` — the request's UTC day; a new day starts with nothing spent;
2. ``reserve(worst)`` — before sampling: may this request give up up to ``worst`` (currency)?
   ``None`` means yes and the amount is held; otherwise the reason it may not ("exhausted",
   "ledger_unavailable") and the request explores nothing (eps = 0, so propensities stay exact);
3. ``settle(cost, explored)`` — after sampling: the held ``worst`` becomes the actual ``cost``
   (0 when the greedy item was shown) and the rest is released;
4. ``serve(revenue)`` — the slate's expected revenue, which grows the cap
   ``daily_share * served + min_daily_budget``.

``RedisLedger`` keeps one hash per UTC day (``<prefix>:<YYYY-MM-DD>``, fields ``served``,
``spent``, ``held``, ``explored``, ``requests``, integers in micro-currency so sums are exact)
and leases budget to replicas: one Lua script call flushes the replica's pending served revenue
and spend, releases what it held, and grants a new lease of ``min(want, cap - spent - held)``.
A replica spends only from its lease, so ``spent + held <= cap`` in Redis bounds what all
replicas together gave up. Rounding is conservative (cost up, revenue down, cap down). Most
requests touch only the local lease; a round trip happens when the lease cannot cover a request,
every ``sync_every`` requests, and at the day's roll-over. On any Redis failure the replica
abandons its lease (leaked for the day: safe) and explores nothing for ``retry_after_s``.

This module imports no implementation built on it: serving's variant of ``RedisLedger`` lives in
``ledger_background`` and the choice between them (``LedgerConfig.backend`` / ``renewal``) in
``ledger_factory.open_ledger``.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from abc import ABC, abstractmethod
from typing import Any

from checkout_recs.policy.config import ExplorationConfig

MICRO = 1_000_000  # micro-currency units per currency unit

_SYNC_LUA = """
local k = KEYS[1]
local served = redis.call('HINCRBY', k, 'served', ARGV[1])
local spent = redis.call('HINCRBY', k, 'spent', ARGV[2])
local held = redis.call('HINCRBY', k, 'held', ARGV[3])
redis.call('HINCRBY', k, 'explored', ARGV[7])
redis.call('HINCRBY', k, 'requests', ARGV[8])
local cap = math.max(math.floor(tonumber(ARGV[5]) * served) - 1, 0) + tonumber(ARGV[6])
local grant = math.min(tonumber(ARGV[4]), math.max(cap - spent - held, 0))
if grant > 0 then held = redis.call('HINCRBY', k, 'held', grant) end
redis.call('EXPIRE', k, ARGV[9])
return {grant, cap, served, spent, held}
"""


def utc_day(ts: dt.datetime) -> dt.date:
    """The UTC calendar day of ``ts`` (a naive ``ts`` is taken as UTC)."""
    return ts.astimezone(dt.UTC).date() if ts.tzinfo is not None else ts.date()


class ExplorationLedger(ABC):
    """Today's exploration money as seen by this process (currency units).

    ``day``, ``served``, ``spent``, ``explored`` and ``requests`` count this process's own
    requests today; ``cap`` is the budget the ledger enforces (for ``RedisLedger``: the shared
    cap at the last synchronisation).
    """

    def __init__(self, cfg: ExplorationConfig) -> None:
        self.cfg = cfg
        self.day: dt.date | None = None
        self.served = self.spent = 0.0
        self.explored = self.requests = 0

    def roll(self, today: dt.date) -> None:
        """Start a new day (own counters to zero) when ``today`` differs from the ledger's day."""
        if self.day != today:
            old, self.day = self.day, today
            self.served, self.spent, self.explored, self.requests = 0.0, 0.0, 0, 0
            self._new_day(old)

    def settle(self, cost: float, explored: bool) -> None:
        """Turn the open reservation into ``cost`` (currency, <= the reserved worst case)."""
        self.spent += cost
        self.explored += int(explored)
        self._settle(cost, explored)

    def serve(self, revenue: float) -> None:
        """Count one served slate's expected revenue (currency); it grows the cap."""
        self.served += revenue
        self.requests += 1
        self._serve(revenue)

    @abstractmethod
    def cap(self, cfg: ExplorationConfig | None = None) -> float:
        """Money that may be given up today so far (currency units)."""

    @abstractmethod
    def reserve(self, worst: float) -> str | None:
        """Hold ``worst`` (currency) for this request: None if allowed, else the reason it is not."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Give back what this process holds of the shared budget (shutdown); no-op when local."""

    def _new_day(self, old: dt.date | None) -> None:  # noqa: B027 - optional hook
        """Hook: the day changed from ``old`` to ``self.day``."""

    def _settle(self, cost: float, explored: bool) -> None:  # noqa: B027 - optional hook
        """Hook: the open reservation settled at ``cost``."""

    def _serve(self, revenue: float) -> None:  # noqa: B027 - optional hook
        """Hook: ``revenue`` was served."""


class LocalLedger(ExplorationLedger):
    """Per-process ledger (embedded default): exact while there is a single replica."""

    def cap(self, cfg: ExplorationConfig | None = None) -> float:
        """``daily_share * served + min_daily_budget`` over this process's requests (currency)."""
        c = cfg or self.cfg
        return c.daily_share * self.served + c.min_daily_budget

    def reserve(self, worst: float) -> str | None:
        """Allowed iff ``spent + worst <= cap`` (nothing to hold: the process is the only spender)."""
        return None if self.spent + worst <= self.cap() else "exhausted"


class RedisLedger(ExplorationLedger):
    """Budget leased from a Redis hash per UTC day, shared by all replicas (see module docstring).

    Not thread-safe: one instance per replica (per ``Explorer``). Never raises on Redis failure.
    """

    def __init__(self, cfg: ExplorationConfig, url: str, client: Any = None) -> None:
        import redis  # lazy: the Redis backend is optional (memory backend needs nothing)
        from redis.backoff import (
            NoBackoff,  # lazy: the Redis backend is optional (memory backend needs nothing)
        )
        from redis.retry import (
            Retry,
        )  # lazy: the Redis backend is optional (memory backend needs nothing)

        super().__init__(cfg)
        timeout = cfg.ledger.timeout_ms / 1e3
        # no client-side retries: a failure must cost one timeout at most, then ``retry_after_s``
        self.redis: Any = client or redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._script = self.redis.register_script(_SYNC_LUA)
        self._errors = (redis.RedisError, OSError)
        self.syncs = self.failures = 0
        self._down_until = 0.0
        self._reset(new_day=True)

    def _reset(self, new_day: bool) -> None:
        """Drop local lease and pending deltas (new day, or after a failure: conservative); the
        last seen cap is kept within a day (it only grows)."""
        self._lease = self._held = self._open = 0  # micro-currency
        self._pend_served = self._pend_spent = self._pend_explored = self._pend_requests = 0
        self._since_sync, self._want, self._starved = 0, 0, False
        if new_day:
            self._cap = min(round(self.cfg.min_daily_budget * MICRO), 2**53)

    def key(self, day: dt.date) -> str:
        """The Redis hash of ``day``."""
        return f"{self.cfg.ledger.prefix}:{day.isoformat()}"

    def cap(self, cfg: ExplorationConfig | None = None) -> float:
        """The shared cap at the last synchronisation (currency)."""
        return self._cap / MICRO

    @property
    def available(self) -> bool:
        """False while backing off after a Redis failure."""
        return time.monotonic() >= self._down_until

    def reserve(self, worst: float) -> str | None:
        """Hold ``worst`` from the local lease, leasing more from Redis (one round trip) if needed."""
        if not self.available:
            return "ledger_unavailable"
        w = math.ceil(worst * MICRO)
        want = math.ceil(self.cfg.ledger.lease_factor * w)
        if self._lease < w and self._worth_syncing(w) and not self._sync(want):
            return "ledger_unavailable"
        if self._lease < w:
            return "exhausted"
        self._lease -= w
        self._open = w
        return None

    def close(self) -> None:
        """Flush today's pending deltas and release the lease (one round trip; nothing on failure)."""
        if (
            self.day is not None
            and self._held + self._pend_served + self._pend_requests > 0
            and self.available
        ):
            self._sync(0)
        self._lease = 0

    def _worth_syncing(self, w: int) -> bool:
        """A lease request may succeed: the last one was granted in full, or asked for less than
        ``w``, or this replica's own unflushed revenue would fund ``w``."""
        funded = self.cfg.daily_share * self._pend_served >= w
        return not self._starved or self._want < w or funded

    def _settle(self, cost: float, explored: bool) -> None:
        c = min(math.ceil(cost * MICRO), self._open)
        self._lease += self._open - c
        self._pend_spent += c
        self._pend_explored += int(explored)
        self._open = 0

    def _serve(self, revenue: float) -> None:
        self._pend_served += max(math.floor(revenue * MICRO), 0)
        self._pend_requests += 1
        self._since_sync += 1
        if self._since_sync >= self.cfg.ledger.sync_every and self.available:
            self._sync(self._want)

    def _new_day(self, old: dt.date | None) -> None:
        if (
            old is not None
            and self._held + self._pend_served + self._pend_requests > 0
            and self.available
        ):
            self._sync(0, day=old)  # flush yesterday and release its lease
        self._reset(new_day=True)

    def _call(
        self,
        day: dt.date | None,
        served: int,
        spent: int,
        held_delta: int,
        want: int,
        explored: int,
        requests: int,
    ) -> tuple[int, int] | None:
        """One script call on ``day``'s hash (micro-currency): add ``served``, ``spent``, ``explored``,
        ``requests``; add ``held_delta`` to held; lease up to ``want``. Returns (grant, cap), or None on a
        Redis failure (counted; no exploration from new leases for ``retry_after_s``)."""
        key = self.key(day or self.day or utc_day(dt.datetime.now(dt.UTC)))
        min_budget = min(round(self.cfg.min_daily_budget * MICRO), 2**53)
        args: list[int | str] = [
            served,
            spent,
            held_delta,
            max(want, 0),
            repr(self.cfg.daily_share),
            min_budget,
            explored,
            requests,
            self.cfg.ledger.ttl_days * 86400,
        ]
        self.syncs += 1
        try:
            grant, cap, *_ = self._script(keys=[key], args=args)
        except self._errors:
            self.failures += 1
            self._down_until = time.monotonic() + self.cfg.ledger.retry_after_s
            return None
        return int(grant), int(cap)

    def _sync(self, want: int, day: dt.date | None = None) -> bool:
        """One script call: flush pending deltas, release the held lease, lease ``want``."""
        got = self._call(
            day,
            self._pend_served,
            self._pend_spent,
            -self._held,
            want,
            self._pend_explored,
            self._pend_requests,
        )
        if got is None:
            self._reset(new_day=False)  # whatever we held stays held in Redis for the day: safe
            return False
        grant, cap = got
        self._lease = self._held = grant
        self._cap, self._want, self._since_sync = cap, max(want, self._want), 0
        self._starved = grant < want
        self._pend_served = self._pend_spent = self._pend_explored = self._pend_requests = 0
        return True

    def totals(self, day: dt.date | None = None) -> dict[str, float]:
        """Shared totals of ``day`` (default: the ledger's day) across replicas, in currency
        (``served``, ``spent``, ``held``) and counts (``explored``, ``requests``); {} if unreadable."""
        d = day or self.day
        if d is None:
            return {}
        try:
            raw = self.redis.hgetall(self.key(d))
        except self._errors:
            return {}
        out = {k.decode() if isinstance(k, bytes) else str(k): int(v) for k, v in raw.items()}
        return {
            k: (v / MICRO if k in ("served", "spent", "held") else float(v)) for k, v in out.items()
        }
