"""The exploration ledger: one contract for the local and the Redis ledger, the shared cap across
replicas (also under concurrent threads), Redis down -> no exploration and no error, day roll-over."""

from __future__ import annotations

import datetime as dt
import threading
import time

import numpy as np
import pytest

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import ExplorationConfig, LedgerConfig
from checkout_recs.policy.engine import PolicyEngine
from checkout_recs.policy.ledger import ExplorationLedger, LocalLedger, RedisLedger
from checkout_recs.policy.ledger_background import BackgroundRedisLedger
from checkout_recs.policy.ledger_factory import open_ledger
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


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    return ItemCatalog.from_frame(make_snapshot(1500, seed=5))


def _ledger(
    backend: str, prefix: str, share: float = 0.1, min_budget: float = 0.0
) -> ExplorationLedger:
    lc = LedgerConfig.model_validate(
        {
            "backend": backend,
            "prefix": prefix,
            "timeout_ms": 250,
            "url": LEDGER_REDIS_URL if backend == "redis" else None,
        }
    )
    return open_ledger(ExplorationConfig(daily_share=share, min_daily_budget=min_budget, ledger=lc))


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_ledger_contract_reserve_settle_serve_and_roll(backend, ledger_prefix):  # noqa: F811
    led = _ledger(backend, ledger_prefix)
    assert isinstance(led, LocalLedger if backend == "local" else RedisLedger)
    led.roll(DAY)
    assert led.reserve(1.0) == "exhausted"  # nothing served yet: cap 0
    led.serve(100.0)  # cap 10
    assert led.reserve(1.0) is None
    led.settle(0.6, explored=True)
    n = 0
    while (why := led.reserve(1.0)) is None:
        led.settle(1.0, explored=True)
        n += 1
    assert why == "exhausted" and n == 9  # 0.6 + 9 <= 10 < 0.6 + 10
    assert led.spent == pytest.approx(9.6) and led.explored == 10 and led.requests == 1
    assert led.reserve(0.3) is None  # what is left still fits a smaller worst case
    led.settle(0.0, explored=False)  # greedy shown: the reservation is released
    assert led.reserve(0.3) is None
    led.settle(0.0, explored=False)
    led.roll(DAY + dt.timedelta(days=1))
    assert (led.served, led.spent, led.explored) == (0.0, 0.0, 0)
    assert led.reserve(0.01) == "exhausted"  # yesterday's budget does not carry over


def test_two_replicas_share_one_cap_where_per_process_ledgers_exceed_it(catalog, ledger_prefix):  # noqa: F811
    share, budget = 0.01, 2.0
    local_cfg = policy_config("local", None, share=share, min_budget=budget)
    shared_cfg = policy_config("redis", ledger_prefix, share=share, min_budget=budget)
    local = [PolicyEngine(catalog, local_cfg, seed=s) for s in (1, 2)]
    shared = [PolicyEngine(catalog, shared_cfg, seed=s) for s in (1, 2)]
    b_local = simulate(local, catalog, 3000, step_s=20)  # ~17 simulated hours
    b_shared = simulate(shared, catalog, 3000, step_s=20)
    assert not b_local.within_cap(
        share, budget
    )  # two per-process caps: up to twice min_daily_budget
    assert b_shared.within_cap(share, budget)
    assert b_shared.explored[DAY] > 300  # the cap binds, it does not forbid
    syncs = sum(e.explorer.ledger.syncs for e in shared)  # type: ignore[attr-defined]
    assert syncs < 3000 / 3  # leases: far fewer round trips than requests


def test_replicas_in_concurrent_threads_never_exceed_the_cap(catalog, ledger_prefix):  # noqa: F811
    share, budget = 0.01, 1.0
    cfg = policy_config("redis", ledger_prefix, share=share, min_budget=budget)
    books = [Books() for _ in range(4)]
    errors: list[BaseException] = []

    def replica(i: int) -> None:
        try:
            simulate(
                [PolicyEngine(catalog, cfg, seed=i)],
                catalog,
                600,
                seed=i,
                step_s=60,
                books=books[i],
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    served = sum(b.served[DAY] for b in books)
    spent = sum(b.spent[DAY] for b in books)
    assert spent <= share * served + budget + 1e-9
    assert spent > 0.8 * (
        share * served + budget
    )  # the cap binds, and leases do not starve replicas
    assert sum(b.explored[DAY] for b in books) > 100


def test_ledger_level_threads_hammering_one_day_stay_within_the_cap(ledger_prefix):  # noqa: F811
    cfg = ExplorationConfig(
        daily_share=0.05,
        min_daily_budget=0.0,
        ledger=LedgerConfig(
            backend="redis",
            url=LEDGER_REDIS_URL,
            prefix=ledger_prefix,
            lease_factor=1.0,
            sync_every=5,
            timeout_ms=250,
        ),
    )
    totals = np.zeros((6, 2))  # per thread: served, spent

    def worker(i: int) -> None:
        led = RedisLedger(cfg, LEDGER_REDIS_URL)
        led.roll(DAY)
        drive_ledger(led, i, totals[i])
        led.roll(DAY + dt.timedelta(days=1))  # flushes the day and releases the lease

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served, spent = totals.sum(axis=0)
    assert spent <= 0.05 * served + 1e-9
    assert spent > 0.5 * 0.05 * served  # most of the budget was usable despite six replicas
    shared = RedisLedger(cfg, LEDGER_REDIS_URL).totals(DAY)
    assert shared["held"] == 0  # every lease came back at the roll-over
    assert shared["spent"] == pytest.approx(spent, abs=1e-6 * 2400)  # rounded up, per charge
    assert shared["served"] == pytest.approx(served, abs=1e-6 * 2400)  # rounded down, per request


def test_redis_down_explores_nothing_and_never_raises(catalog):
    cfg = policy_config(
        "redis", "down", url="redis://127.0.0.1:1/12", min_budget=1e6, timeout_ms=50
    )
    eng = PolicyEngine(catalog, cfg, seed=3)
    t0 = time.perf_counter()
    books = simulate([eng], catalog, 200)
    elapsed = time.perf_counter() - t0
    assert books.explored[DAY] == 0 and books.spent[DAY] == 0.0
    led = eng.explorer.ledger
    assert (
        isinstance(led, RedisLedger) and led.failures == 1
    )  # one try, then back off: no retry storm
    assert elapsed < 5.0
    from tests.fixtures_serving import make_prepared

    rows = np.random.default_rng(0).choice(len(catalog), 80, replace=False)
    slate = eng.choose(make_prepared(catalog, rows), (np.full(80, 0.1), np.full(80, 0.2)))
    assert len(slate.rows) == 6 and np.all(slate.propensity == 1.0) and not slate.explored
    assert slate.notes["exploration"]["budget"] == "ledger_unavailable"
    assert slate.notes["exploration"]["eps"] == 0.0


def test_day_rollover_starts_a_new_key_and_flushes_yesterday(catalog, ledger_prefix):  # noqa: F811
    cfg = policy_config("redis", ledger_prefix, share=0.01)
    eng = PolicyEngine(catalog, cfg, seed=4)
    books = simulate(
        [eng], catalog, 1200, start=dt.datetime(2026, 11, 22, 20, tzinfo=dt.UTC), step_s=30
    )
    led = eng.explorer.ledger
    assert isinstance(led, RedisLedger)
    nxt = DAY + dt.timedelta(days=1)
    assert led.day == nxt and books.explored[DAY] > 10 and books.explored[nxt] > 10
    assert books.within_cap(0.01, 0.0)
    old = led.totals(DAY)
    assert old["held"] == 0 and old["spent"] == pytest.approx(books.spent[DAY], abs=1e-3)
    assert led.totals(nxt)["served"] <= books.served[nxt]  # flushed lazily, never over-counted
    ttl = led.redis.ttl(led.key(DAY))
    assert 0 < ttl <= cfg.exploration.ledger.ttl_days * 86400


def test_config_selects_the_ledger():
    assert isinstance(open_ledger(ExplorationConfig()), LocalLedger)  # embedded default: in-process
    auto = ExplorationConfig(ledger=LedgerConfig(url=LEDGER_REDIS_URL))
    inline = open_ledger(auto)
    assert (
        type(inline) is RedisLedger
    )  # renewal "inline" by default: offline code stays deterministic
    forced = ExplorationConfig(
        ledger=LedgerConfig(backend="local", url=LEDGER_REDIS_URL, renewal="background")
    )
    assert isinstance(open_ledger(forced), LocalLedger)  # renewal concerns a shared ledger only
    background = open_ledger(
        ExplorationConfig(ledger=LedgerConfig(url=LEDGER_REDIS_URL, renewal="background"))
    )
    try:
        assert isinstance(
            background, BackgroundRedisLedger
        )  # serving: round trips in a renewer thread
    finally:
        background.close()
    with pytest.raises(ValueError, match="needs ledger.url"):
        open_ledger(ExplorationConfig(ledger=LedgerConfig(backend="redis")))


def test_redis_lost_mid_day_stops_exploring_then_recovers(catalog, ledger_prefix):  # noqa: F811
    cfg = policy_config("redis", ledger_prefix, min_budget=1e6, retry_after_s=0.0, sync_every=50)
    eng = PolicyEngine(catalog, cfg, seed=5)
    led = eng.explorer.ledger
    assert isinstance(led, RedisLedger)
    start = dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC)
    assert simulate([eng], catalog, 100, start=start).explored[DAY] > 20
    healthy = led._script
    dead = policy_config("redis", "x", url="redis://127.0.0.1:1/12", timeout_ms=50)
    led._script = RedisLedger(
        dead.exploration, "redis://127.0.0.1:1/12"
    )._script  # Redis "goes away"
    failures = led.failures
    lost = simulate([eng], catalog, 200, seed=2, start=start + dt.timedelta(hours=1))
    assert led.failures > failures  # noticed at the next round trip (<= sync_every requests later)
    assert (
        lost.explored[DAY] <= 20
    )  # only the lease already held (4 worst cases) could still be spent
    led._script = healthy  # Redis is back: exploration resumes on the next lease
    back = simulate([eng], catalog, 100, seed=3, start=start + dt.timedelta(hours=2))
    assert back.explored[DAY] > 20
