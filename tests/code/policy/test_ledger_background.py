"""The background-renewed Redis ledger (serving): the request path never calls Redis, and the
shared cap, exact sums, Redis-down and day roll-over guarantees of ``RedisLedger`` still hold."""

from __future__ import annotations

import datetime as dt
import gc
import threading
import time
from typing import Any

import numpy as np
import pytest

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import ExplorationConfig, LedgerConfig
from checkout_recs.policy.engine import PolicyEngine
from checkout_recs.policy.ledger_background import BackgroundRedisLedger
from tests.fixtures_ledger import (
    LEDGER_REDIS_URL,
    Books,
    drive_ledger,
    ledger_prefix,  # noqa: F401
    policy_config,
    simulate,
)
from tests.fixtures_serving import make_snapshot

DAY = dt.date(2026, 11, 22)
START = dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    return ItemCatalog.from_frame(make_snapshot(1500, seed=5))


class _Recorder:
    """Wraps the ledger's script: records the calling thread of every round trip, optionally slow."""

    def __init__(self, script: Any, delay_s: float = 0.0) -> None:
        self.script, self.delay_s = script, delay_s
        self.threads: list[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay_s)
        return self.script(*args, **kwargs)


def _engine(
    catalog: ItemCatalog, prefix: str, seed: int = 1, **cfg: Any
) -> tuple[PolicyEngine, BackgroundRedisLedger]:
    pcfg = policy_config("redis", prefix, **cfg)
    pcfg.exploration.ledger.renewal = (
        "background"  # chosen by configuration, opened once by the explorer
    )
    eng = PolicyEngine(catalog, pcfg, seed=seed)
    led = eng.explorer.ledger
    assert isinstance(led, BackgroundRedisLedger)
    return eng, led


def _run(
    eng: PolicyEngine,
    catalog: ItemCatalog,
    chunks: int,
    per: int = 20,
    pause_s: float = 0.01,
    start: dt.datetime = START,
    step_s: float = 20.0,
    books: Books | None = None,
) -> tuple[Books, list[float]]:
    """``chunks`` x ``per`` requests, pausing between chunks (the renewer gets time); per-chunk ms."""
    books, ms = books or Books(), []
    for c in range(chunks):
        t0 = time.perf_counter()
        simulate(
            [eng],
            catalog,
            per,
            seed=c,
            start=start + dt.timedelta(seconds=c * per * step_s),
            step_s=step_s,
            books=books,
        )
        ms.append((time.perf_counter() - t0) * 1e3 / per)
        time.sleep(pause_s)
    return books, ms


def test_the_request_path_makes_no_redis_call(catalog, ledger_prefix):  # noqa: F811
    eng, led = _engine(catalog, ledger_prefix, share=0.02, min_budget=5.0)
    rec = led._script = _Recorder(led._script)
    books, _ = _run(eng, catalog, 30)
    led.close()
    assert rec.threads and set(rec.threads) == {
        "exploration-ledger"
    }  # every round trip off the caller
    assert books.explored[DAY] > 30 and books.within_cap(0.02, 5.0)
    shared = led.totals(DAY)
    assert shared["held"] == 0  # close released the lease
    assert shared["spent"] == pytest.approx(books.spent[DAY], abs=1e-6 * 600)
    assert shared["served"] == pytest.approx(books.served[DAY], abs=1e-6 * 600)


def test_a_slow_redis_never_delays_a_request(catalog, ledger_prefix):  # noqa: F811
    eng, led = _engine(catalog, ledger_prefix, share=0.02, min_budget=5.0, lease_factor=1.0)
    rec = led._script = _Recorder(led._script, delay_s=0.15)  # every round trip takes 150 ms
    worst = 0.0
    gc.disable()  # time what the ledger costs, not a collection of the test process's heap
    try:
        for k in range(300):
            t0 = time.perf_counter()
            simulate([eng], catalog, 1, seed=k, start=START + dt.timedelta(seconds=20 * k))
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.002)
    finally:
        gc.enable()
    led.close()
    assert len(rec.threads) >= 3  # renewals happened while requests went on
    assert worst < 0.1  # never a whole round trip on the request path


def test_background_replicas_in_threads_never_exceed_the_cap(ledger_prefix):  # noqa: F811
    cfg = ExplorationConfig(
        daily_share=0.05,
        min_daily_budget=0.0,
        ledger=LedgerConfig(
            backend="redis",
            url=LEDGER_REDIS_URL,
            prefix=ledger_prefix,
            lease_factor=2.0,
            sync_every=5,
            timeout_ms=250,
        ),
    )
    totals = np.zeros((6, 2))  # per replica: served, spent
    leds = [BackgroundRedisLedger(cfg, LEDGER_REDIS_URL) for _ in range(6)]

    def worker(i: int) -> None:
        leds[i].roll(DAY)
        drive_ledger(leds[i], i, totals[i], pause_s=0.0005)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for led in leds:
        led.close()
    served, spent = totals.sum(axis=0)
    assert 0.3 * 0.05 * served < spent <= 0.05 * served + 1e-9  # the cap holds and still binds
    shared = leds[0].totals(DAY)
    assert shared["held"] == 0
    assert shared["spent"] == pytest.approx(spent, abs=1e-6 * 2400)
    assert shared["served"] == pytest.approx(served, abs=1e-6 * 2400)


def test_redis_down_costs_the_request_path_nothing(catalog):
    eng, led = _engine(catalog, "down", url="redis://127.0.0.1:1/12", min_budget=1e6, timeout_ms=50)
    books, ms = _run(eng, catalog, 10, per=20, pause_s=0.02)
    led.close()
    assert books.explored[DAY] == 0 and led.failures >= 1
    assert max(ms) < 50  # per request, with each failed round trip costing 50 ms in the renewer


def test_day_rollover_releases_yesterday_in_the_background(catalog, ledger_prefix):  # noqa: F811
    eng, led = _engine(catalog, ledger_prefix, share=0.01, min_budget=2.0)
    start = dt.datetime(2026, 11, 22, 22, tzinfo=dt.UTC)
    books, _ = _run(eng, catalog, 30, per=20, start=start, step_s=30.0)  # 5 simulated hours
    led.close()
    nxt = DAY + dt.timedelta(days=1)
    assert led.day == nxt and books.explored[DAY] > 5 and books.explored[nxt] > 5
    for day in (DAY, nxt):
        t = led.totals(day)
        assert t["held"] == 0 and t["spent"] == pytest.approx(books.spent[day], abs=1e-3)
        assert t["spent"] <= 0.01 * t["served"] + 2.0 + 1e-9
