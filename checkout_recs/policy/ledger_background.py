"""The shared exploration ledger for serving: every Redis round trip in a renewer thread.

``RedisLedger`` (``checkout_recs.policy.ledger``) makes its script call inline, inside the policy
stage, on the ~1-9 % of requests that need a new lease (about 4 ms each on a loaded machine: a
p99 matter on the event loop). ``BackgroundRedisLedger`` keeps the same Redis hash, script and
guarantees, but the request path only ever touches the local lease:

* ``reserve(worst)`` takes ``worst`` from the local lease or refuses (``lease_renewing``,
  ``exhausted`` or ``ledger_unavailable``: the request explores nothing; eps is set to 0 before
  sampling, so propensities stay exact). When the lease falls below the **low-water mark**
  (``low_water`` x the target lease, the target being ``lease_factor`` x the largest worst case
  seen today) it wakes the renewer; so do ``sync_every`` served requests and the day's roll-over.
* the renewer **tops up** the lease instead of releasing and re-leasing it: one script call adds
  the pending served revenue and spend (the spend moves from ``held`` to ``spent``) and grants up
  to ``target - lease``. The lease being spent is never released while in use, so a call that
  fails or times out leaves Redis's ``spent + held`` covering everything this replica may spend:
  on failure the replica keeps spending what it already holds (still reserved in Redis) and only
  new grants pause for ``retry_after_s``. At the roll-over and on ``close`` the whole remainder is
  released (yesterday's hash / today's).

All local state changes happen under one lock held for a few arithmetic operations (never
across I/O), so the request path waits on nothing but that.

``ledger_factory.open_ledger`` opens it when ``LedgerConfig.renewal`` is ``background`` (the
transformer's default, ``--ledger_renewal``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from typing import Any

from checkout_recs.policy.config import ExplorationConfig
from checkout_recs.policy.ledger import MICRO, RedisLedger

log = logging.getLogger(__name__)

#: Renew when the lease is below this share of the target lease.
LOW_WATER = 0.5


class BackgroundRedisLedger(RedisLedger):
    """``RedisLedger`` whose round trips run in a daemon renewer thread (see module docstring).

    Parameters
    ----------
    cfg : exploration configuration (``cfg.ledger``: prefix, lease_factor, sync_every, timeouts).
    url : Redis URL.
    client : a Redis client to use instead of one made from ``url`` (tests).
    low_water : renew below this share of the target lease (0 < low_water <= 1).
    """

    def __init__(
        self, cfg: ExplorationConfig, url: str, client: Any = None, low_water: float = LOW_WATER
    ) -> None:
        self._lock = threading.Lock()
        self._jobs: list[tuple[dt.date, int, int, int, int, int]] = []  # days to flush and release
        self._max_worst = 0  # micro-currency, largest worst case seen today
        super().__init__(cfg, url, client)
        self.low_water = low_water
        self._kick, self._closing = threading.Event(), False
        self._thread = threading.Thread(target=self._run, name="exploration-ledger", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ request path (no I/O)
    def reserve(self, worst: float) -> str | None:
        """Hold ``worst`` (currency) from the local lease; never a Redis call (see module docstring)."""
        w = math.ceil(worst * MICRO)
        with self._lock:
            self._max_worst = max(self._max_worst, w)
            ok = self._lease >= w
            if ok:
                self._lease -= w
                self._open = w
            low = self._lease < self.low_water * self._target()
            kick = low and (not self._starved or self.cfg.daily_share * self._pend_served >= w)
        if kick:
            self._kick.set()
        if ok:
            return None
        if not self.available:
            return "ledger_unavailable"
        return "exhausted" if self._starved else "lease_renewing"

    def _settle(self, cost: float, explored: bool) -> None:
        with self._lock:
            super()._settle(cost, explored)

    def _serve(self, revenue: float) -> None:
        with self._lock:
            self._pend_served += max(math.floor(revenue * MICRO), 0)
            self._pend_requests += 1
            self._since_sync += 1
            due = self._since_sync >= self.cfg.ledger.sync_every
        if due:
            self._kick.set()

    def _new_day(self, old: dt.date | None) -> None:
        with self._lock:
            if old is not None and self._held + self._pend_served + self._pend_requests > 0:
                self._jobs.append(
                    (
                        old,
                        self._pend_served,
                        self._pend_spent,
                        -self._held,
                        self._pend_explored,
                        self._pend_requests,
                    )
                )
            self._reset(new_day=True)
            self._max_worst = 0
        self._kick.set()

    def _target(self) -> int:
        return math.ceil(self.cfg.ledger.lease_factor * self._max_worst)

    # ------------------------------------------------------------ renewer thread
    def _run(self) -> None:
        while True:
            self._kick.wait()
            self._kick.clear()
            closing = self._closing
            try:
                self._flush_old_days()
                if self.day is not None and (self.available or closing):
                    self._renew(release=closing)
            except Exception:  # noqa: BLE001 - a bug must not end renewals; the request path never waits anyway
                log.exception("exploration ledger renewal failed")
            if closing:
                return

    def _flush_old_days(self) -> None:
        with self._lock:
            jobs, self._jobs = self._jobs, []
        for day, served, spent, held_delta, explored, requests in jobs:
            self._call(
                day, served, spent, held_delta, 0, explored, requests
            )  # failure: leaked, safe

    def _renew(self, release: bool) -> None:
        """One script call for today: flush pending deltas, top the lease up (or release it all)."""
        with self._lock:
            day = self.day
            served, spent, explored, requests = (
                self._pend_served,
                self._pend_spent,
                self._pend_explored,
                self._pend_requests,
            )
            self._pend_served = self._pend_spent = self._pend_explored = self._pend_requests = 0
            self._since_sync = 0
            if release:  # shutdown: give back the unspent lease too
                held_delta, self._lease = -(spent + self._lease), 0
            else:
                held_delta = -spent
            self._held += held_delta
            want = 0 if release else max(self._target() - self._lease - self._open, 0)
        got = self._call(day, served, spent, held_delta, want, explored, requests)
        if got is None:
            return  # what we hold stays reserved in Redis: keep spending it; no new grant for a while
        grant, cap = got
        with self._lock:
            if self.day != day:  # the day rolled during the call: that grant belongs to yesterday
                if grant and day is not None:
                    self._jobs.append((day, 0, 0, -grant, 0, 0))
                    self._kick.set()
                return
            self._lease += grant
            self._held += grant
            self._cap, self._want = cap, max(self._want, want)
            self._starved = grant < want

    def close(self, timeout_s: float = 2.0) -> None:
        """Flush pending deltas and release the lease (in the renewer thread), then stop it."""
        self._closing = True
        self._kick.set()
        self._thread.join(timeout_s)
