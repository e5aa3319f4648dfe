"""Fixtures for the exploration ledger tests: a Redis DB 12 key space per test, and a simulated
stream of checkout requests through policy engines ("replicas") with independent accounting."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import (
    ExplorationConfig,
    ExposureConfig,
    LedgerConfig,
    PolicyConfig,
)
from checkout_recs.policy.engine import PolicyEngine
from checkout_recs.policy.ledger import ExplorationLedger
from tests.fixtures_serving import make_prepared

LEDGER_REDIS_URL = (
    "redis://127.0.0.1:6379/12"  # DB 12 + a per-test prefix: no collision with other suites
)


def drive_ledger(
    led: ExplorationLedger, seed: int, totals: np.ndarray, n: int = 400, pause_s: float = 0.0
) -> None:
    """``n`` requests against ``led``: reserve a random worst case,
    settle a random cost when granted, serve a random revenue; adds (served, spent) to
    ``totals`` float (2,), currency units. ``pause_s`` sleeps between requests."""
    import time

    rng = np.random.default_rng(seed)
    for _ in range(n):
        worst = float(rng.uniform(0.1, 2.0))
        if led.reserve(worst) is None:
            cost = float(rng.uniform(0, worst))
            led.settle(cost, explored=True)
            totals[1] += cost
        revenue = float(rng.uniform(1.0, 10.0))
        led.serve(revenue)
        totals[0] += revenue
        if pause_s:
            time.sleep(pause_s)


@pytest.fixture()
def ledger_prefix() -> Iterator[str]:
    """A fresh key prefix in DB 12 (skips when Redis does not answer); its keys are deleted after."""
    import redis

    r = redis.Redis.from_url(LEDGER_REDIS_URL, socket_timeout=1.0)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    prefix = f"test_ledger_{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = list(r.scan_iter(f"{prefix}:*"))
    if keys:
        r.delete(*keys)
    r.close()


def policy_config(
    backend: str,
    prefix: str | None,
    *,
    share: float = 0.01,
    min_budget: float = 0.0,
    eps: float = 0.5,
    url: str = LEDGER_REDIS_URL,
    **ledger: float,
) -> PolicyConfig:
    """Policy with exploration at ``eps`` for every session class, exposure off, and the ledger
    ``backend`` (``local`` or ``redis`` under ``prefix``)."""
    ledger = {"timeout_ms": 250.0, **ledger}  # a loaded test machine must not look like Redis down
    lc = LedgerConfig.model_validate(
        {
            "backend": backend,
            "url": url if backend == "redis" else None,
            "prefix": prefix or "unused",
            **ledger,
        }
    )
    expl = ExplorationConfig(
        epsilon=dict.fromkeys(("returning", "new_user", "high_value"), eps),
        daily_share=share,
        min_daily_budget=min_budget,
        ledger=lc,
    )
    return PolicyConfig(exploration=expl, exposure=ExposureConfig(enabled=False))


@dataclass
class Books:
    """Independent accounting of what the engines served and gave up, per UTC day (currency)."""

    served: dict[dt.date, float] = field(default_factory=lambda: defaultdict(float))
    spent: dict[dt.date, float] = field(default_factory=lambda: defaultdict(float))
    explored: dict[dt.date, int] = field(default_factory=lambda: defaultdict(int))

    def within_cap(self, share: float, min_budget: float) -> bool:
        """Every day: spend <= share * served + min_budget (float tolerance 1e-9)."""
        return all(self.spent[d] <= share * self.served[d] + min_budget + 1e-9 for d in self.served)


def simulate(
    engines: Sequence[PolicyEngine],
    catalog: ItemCatalog,
    n: int,
    *,
    seed: int = 1,
    start: dt.datetime = dt.datetime(2026, 11, 22, tzinfo=dt.UTC),
    step_s: float = 20.0,
    books: Books | None = None,
) -> Books:
    """``n`` requests ``step_s`` apart from ``start``, round-robin over ``engines``; returns the books."""
    books = books or Books()
    rng = np.random.default_rng(seed)
    for i in range(n):
        ts = start + dt.timedelta(seconds=i * step_s)
        rows = rng.choice(len(catalog), 80, replace=False)
        scores = rng.uniform(0.01, 0.3, 80), rng.uniform(0.05, 0.5, 80)
        prep = make_prepared(catalog, rows, timestamp=ts.isoformat())
        slate = engines[i % len(engines)].choose(prep, scores)
        day = ts.date()
        books.served[day] += float(np.sum(slate.scores))
        books.spent[day] += slate.exploration_cost
        books.explored[day] += int(slate.explored)
    return books
