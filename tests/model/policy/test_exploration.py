"""Behaviour of the policy: exact propensities, the money cap on exploration, exposure constraints."""

from __future__ import annotations

import datetime as dt

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
from tests.fixtures_ledger import LEDGER_REDIS_URL, ledger_prefix  # noqa: F401
from tests.fixtures_serving import make_prepared, make_snapshot


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    return ItemCatalog.from_frame(make_snapshot(1500, seed=5))


def _scores(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0.01, 0.3, n), rng.uniform(0.05, 0.5, n)


@pytest.fixture(params=["local", "redis"])
def ledger(request) -> LedgerConfig:
    """The per-process ledger, or the shared Redis one (DB 12, fresh prefix, keys deleted after)."""
    if request.param == "local":
        return LedgerConfig(backend="local")
    prefix = request.getfixturevalue("ledger_prefix")
    return LedgerConfig(
        backend="redis", url=LEDGER_REDIS_URL, prefix=prefix, timeout_ms=250
    )  # loaded CI box


@pytest.mark.slow
def test_logged_propensities_equal_empirical_slot_frequencies(catalog, ledger):
    cfg = PolicyConfig(
        exploration=ExplorationConfig(
            epsilon={"returning": 0.5},
            min_daily_budget=1e9,
            pool_size=8,
            temperature=0.3,
            ledger=ledger,
        ),
        exposure=ExposureConfig(enabled=False),
    )
    eng = PolicyEngine(catalog, cfg, seed=11)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(catalog), 120, replace=False)
    scores = _scores(rng, 120)
    n = 4000
    shown: list[int] = []
    logged: dict[int, float] = {}
    for _ in range(n):
        slate = eng.choose(make_prepared(catalog, rows), scores)
        x = int(slate.rows[-1])
        shown.append(x)
        p = float(slate.propensity[-1])
        assert logged.setdefault(x, p) == pytest.approx(p)  # same state, same propensity
        assert np.all(slate.propensity[:-1] == 1.0)
    items, counts = np.unique(shown, return_counts=True)
    assert len(items) > 3  # exploration really happened
    assert sum(logged.values()) == pytest.approx(1.0, abs=1e-9)  # every possible item was seen
    for x, c in zip(items.tolist(), counts.tolist(), strict=True):
        p = logged[x]
        assert abs(c / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3


def test_exploration_spend_never_exceeds_its_cap_over_a_simulated_day(catalog, ledger):
    cfg = PolicyConfig(
        exploration=ExplorationConfig(
            epsilon={"returning": 0.5, "new_user": 0.5, "high_value": 0.5},
            daily_share=0.01,
            pool_size=20,
            ledger=ledger,
        ),
        exposure=ExposureConfig(enabled=False),
    )
    eng = PolicyEngine(catalog, cfg, seed=3)
    rng = np.random.default_rng(1)
    start = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    ledger = eng.explorer.ledger
    days_spent = []
    prev = (0.0, 0.0, 0)  # (spent, served, explored) after the previous request
    for i in range(3000):
        ts = start + dt.timedelta(seconds=i * 40)  # ~1.4 simulated days
        rows = rng.choice(len(catalog), 80, replace=False)
        day_before = ledger.day
        eng.choose(make_prepared(catalog, rows, timestamp=ts.isoformat()), _scores(rng, 80))
        if day_before is not None and ledger.day != day_before:
            days_spent.append(prev)
        assert ledger.spent <= ledger.cap(cfg.exploration) + 1e-9
        prev = (ledger.spent, ledger.served, ledger.explored)
    assert (
        ledger.explored > 0 and days_spent and days_spent[0][2] > 10
    )  # the cap binds but does not forbid
    spent, served, _ = days_spent[0]
    assert spent <= 0.01 * served + 1e-9


def test_exploration_is_off_for_the_fallback_and_when_disabled(catalog):
    cfg = PolicyConfig(
        exploration=ExplorationConfig(enabled=False, min_daily_budget=1e12),
        exposure=ExposureConfig(enabled=False),
    )
    eng = PolicyEngine(catalog, cfg)
    rng = np.random.default_rng(2)
    rows = rng.choice(len(catalog), 60, replace=False)
    for _ in range(200):
        s = eng.choose(make_prepared(catalog, rows), _scores(np.random.default_rng(9), 60))
        assert not s.explored and np.all(s.propensity == 1.0)
    fb = eng.choose(make_prepared(catalog, np.empty(0, np.int64), fb_rows=rows), None)
    assert len(fb.rows) == 6 and np.all(fb.propensity == 1.0)


def _new_share(catalog, slates) -> float:
    rows = np.concatenate(slates)
    return float((catalog.seller_is_new[rows] | catalog.cold[rows]).mean())


def test_min_share_for_new_sellers_holds_when_quality_allows(catalog):
    rng = np.random.default_rng(4)
    is_new = catalog.seller_is_new | catalog.cold

    def run(enabled: bool) -> float:
        cfg = PolicyConfig(
            exploration=ExplorationConfig(enabled=False),
            exposure=ExposureConfig(
                enabled=enabled, min_new_seller_share=0.15, min_quality=0.0, skew_penalty=0.0
            ),
        )
        eng = PolicyEngine(catalog, cfg)
        out = []
        for _ in range(400):
            rows = rng.choice(len(catalog), 100, replace=False)
            pc, pp = _scores(rng, 100)
            pc = np.where(is_new[rows], pc * 0.2, pc)  # the model buries new sellers
            out.append(eng.choose(make_prepared(catalog, rows), (pc, pp)).rows)
        return _new_share(catalog, out)

    assert run(False) < 0.10
    assert run(True) >= 0.15 - 0.01


def test_max_share_per_seller_is_enforced(catalog):
    cfg = PolicyConfig(
        exploration=ExplorationConfig(enabled=False),
        exposure=ExposureConfig(
            max_seller_share=0.05,
            seller_share_min_slots=60,
            min_new_seller_share=0.0,
            skew_penalty=0.0,
        ),
    )
    eng = PolicyEngine(catalog, cfg)
    rng = np.random.default_rng(5)
    star = int(catalog.seller_id[0])
    star_rows = np.flatnonzero(catalog.seller_id == star)
    shown = []
    for _ in range(300):
        rows = np.unique(np.concatenate([star_rows, rng.choice(len(catalog), 80, replace=False)]))
        pc, pp = _scores(rng, len(rows))
        pc = np.where(
            catalog.seller_id[rows] == star, 0.99, pc
        )  # the star seller always scores best
        shown.append(eng.choose(make_prepared(catalog, rows), (pc, pp)).rows)
    all_rows = np.concatenate(shown)
    share = float((catalog.seller_id[all_rows] == star).mean())
    assert share <= 0.05 + 6 / len(all_rows)
    assert share > 0.02  # capped, not banned


def test_audit_bucket_skew_is_penalised(catalog):
    cfg = PolicyConfig(
        exploration=ExplorationConfig(enabled=False),
        exposure=ExposureConfig(
            min_new_seller_share=0.0,
            skew_penalty=2.0,
            audit_buckets=4,
            seller_share_min_slots=10_000,
        ),
    )
    eng = PolicyEngine(catalog, cfg)
    buckets = eng.exposure.bucket(catalog.seller_id)
    rng = np.random.default_rng(6)
    favoured = buckets == 0

    def share(engine) -> float:
        out = []
        for _ in range(300):
            rows = rng.choice(len(catalog), 100, replace=False)
            pc, pp = _scores(rng, 100)
            pc = np.where(favoured[rows], pc * 3, pc)
            out.append(engine.choose(make_prepared(catalog, rows), (pc, pp)).rows)
        return float(favoured[np.concatenate(out)].mean())

    base = PolicyEngine(
        catalog,
        PolicyConfig(
            exploration=ExplorationConfig(enabled=False), exposure=ExposureConfig(enabled=False)
        ),
    )
    assert share(eng) < share(base) - 0.05
