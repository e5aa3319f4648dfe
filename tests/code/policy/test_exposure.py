"""The cold-start exposure floor: share over a window, diversity and stock, the quality prior."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import ExplorationConfig, ExposureConfig, PolicyConfig
from checkout_recs.policy.engine import PolicyEngine
from checkout_recs.policy.exposure import young_mask
from tests.fixtures_serving import make_prepared, make_snapshot


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    return ItemCatalog.from_frame(make_snapshot(1500, seed=9))


def _engine(catalog: ItemCatalog, explore: bool = False, **exposure: float | None) -> PolicyEngine:
    base: dict[str, float | None] = {
        "min_new_seller_share": 0.0,
        "skew_penalty": 0.0,
        "min_quality": 0.0,
    }
    cfg = PolicyConfig(
        exploration=ExplorationConfig(enabled=explore, min_daily_budget=1e9),
        exposure=ExposureConfig.model_validate({**base, **exposure}),
    )
    return PolicyEngine(catalog, cfg, seed=3)


def _requests(catalog: ItemCatalog, n: int, k: int, seed: int, bury: float = 0.2):
    """``n`` requests of ``k`` candidates whose model under-scores cold listings by ``bury``."""
    rng = np.random.default_rng(seed)
    cold = catalog.cold
    for _ in range(n):
        rows = rng.choice(len(catalog), k, replace=False)
        pc, pp = rng.uniform(0.01, 0.3, k), rng.uniform(0.05, 0.5, k)
        yield rows, np.where(cold[rows], pc * bury, pc), pp


def _cold_share(catalog: ItemCatalog, engine: PolicyEngine, reqs) -> float:
    shown = [engine.choose(make_prepared(catalog, r), (pc, pp)).rows for r, pc, pp in reqs]
    return float(catalog.cold[np.concatenate(shown)].mean())


def test_cold_start_is_young_and_little_shown(catalog):
    age = catalog.frame["age_days"].to_numpy()
    assert np.array_equal(young_mask(catalog, 14.0), catalog.cold)
    assert np.array_equal(young_mask(catalog, 7.0), age < 7.0)
    eng = _engine(catalog, cold_max_impressions=2)
    rows = np.flatnonzero(catalog.cold)[:3]
    assert eng.exposure.is_cold(rows).all()
    eng.exposure.record(rows[:1])
    assert eng.exposure.is_cold(rows).all()  # one impression < 2
    eng.exposure.record(rows[:2])
    assert eng.exposure.is_cold(rows).tolist() == [False, True, True]
    assert eng.exposure.cold_share() == pytest.approx(1.0)  # cold when served


def test_impression_limit_spreads_first_impressions(catalog):
    def distinct(limit: int | None) -> int:
        eng = _engine(catalog, min_cold_share=0.2, cold_slots=1, cold_max_impressions=limit)
        shown = [
            eng.choose(make_prepared(catalog, r), (pc, pp)).rows
            for r, pc, pp in _requests(catalog, 200, 100, 8)
        ]
        rows = np.concatenate(shown)
        return len(np.unique(rows[catalog.cold[rows]]))

    age_only, limited = distinct(None), distinct(1)
    print(f"distinct cold listings shown: age only {age_only}, at most 1 impression {limited}")
    assert limited > age_only


def test_cold_floor_holds_its_share_over_a_window(catalog):
    off = _cold_share(
        catalog, _engine(catalog, min_cold_share=0.0), _requests(catalog, 300, 100, seed=1)
    )
    eng = _engine(catalog, min_cold_share=0.25, cold_slots=2, cold_max_impressions=None)
    on = _cold_share(catalog, eng, _requests(catalog, 300, 100, seed=1))
    print(f"cold-start share of slots: floor off {off:.3f}, floor 0.25 on {on:.3f}")
    assert off < 0.15
    assert on >= 0.25 - 0.01


def test_cold_floor_is_counted_apart_from_the_new_seller_floor(catalog):
    eng = _engine(
        catalog,
        min_new_seller_share=0.2,
        min_cold_share=0.2,
        cold_slots=2,
        cold_max_impressions=None,
    )
    reqs = list(_requests(catalog, 300, 100, seed=2))
    shown = np.concatenate(
        [eng.choose(make_prepared(catalog, r), (pc, pp)).rows for r, pc, pp in reqs]
    )
    print(
        f"new-seller share {catalog.seller_is_new[shown].mean():.3f}, cold share {catalog.cold[shown].mean():.3f}"
    )
    assert catalog.cold[shown].mean() >= 0.19
    assert catalog.seller_is_new[shown].mean() >= 0.19
    assert eng.exposure.cold_share() == pytest.approx(catalog.cold[shown].mean())


@pytest.mark.parametrize("explore", [False, True])
def test_floors_keep_six_distinct_in_stock_diverse_and_exact(catalog, explore):
    eng = _engine(
        catalog, explore=explore, min_new_seller_share=0.5, min_cold_share=0.6, cold_slots=3
    )
    rng = np.random.default_rng(5)
    reserved = 0
    for rows, pc, pp in _requests(catalog, 200, 14, seed=3, bury=0.05):
        fb = rng.choice(np.setdiff1d(np.arange(len(catalog)), rows), 30, replace=False)
        slate = eng.choose(make_prepared(catalog, rows, fb_rows=fb), (pc, pp))
        assert len(slate.rows) == 6 and len(set(slate.rows.tolist())) == 6
        assert set(slate.rows.tolist()) <= set(rows.tolist()) | set(fb.tolist())  # in stock
        assert np.bincount(catalog.seller_id[slate.rows]).max() <= 1
        assert np.bincount(catalog.category_id[slate.rows]).max() <= 2
        assert np.all(slate.propensity[:5] == 1.0) and 0 < slate.propensity[5] <= 1.0
        assert slate.sources[5] not in (
            "cold_start",
            "new_seller",
        )  # the exploration slot stays greedy
        n = len(slate.notes.get("exposure_reserved", []))
        reserved += n
        assert [s in ("cold_start", "new_seller") for s in slate.sources].count(True) == n
        if n:
            assert slate.notes["exposure_cost"] >= 0.0
    assert reserved > 100


def test_reserved_slots_sit_before_the_exploration_slot_and_cost_is_given_up_revenue(catalog):
    eng_on = _engine(catalog, min_cold_share=1.0, cold_slots=2)
    eng_off = _engine(catalog, min_cold_share=0.0)
    hits = 0
    for rows, pc, pp in _requests(catalog, 60, 60, seed=4, bury=0.02):
        prep = make_prepared(catalog, rows)
        on, off = eng_on.choose(prep, (pc, pp)), eng_off.choose(prep, (pc, pp))
        k = len(on.notes.get("exposure_reserved", []))
        if k == 0:
            continue
        hits += 1
        assert on.sources[5 - k : 5] == ["cold_start"] * k
        assert list(on.rows[: 5 - k]) == list(off.rows[: 5 - k]) and on.rows[5] == off.rows[5 - k]
        assert on.notes["exposure_cost"] == pytest.approx(off.scores.sum() - on.scores.sum())
    assert hits > 30


def test_cold_floor_does_not_fire_below_the_quality_prior(catalog):
    on = _engine(catalog, min_cold_share=1.0, cold_slots=3, min_quality=0.5)
    off = _engine(catalog, min_cold_share=0.0)
    for rows, pc, pp in _requests(
        catalog, 100, 80, seed=6, bury=1e-4
    ):  # cold listings worth ~nothing
        prep = make_prepared(catalog, rows)
        a, b = on.choose(prep, (pc, pp)), off.choose(prep, (pc, pp))
        assert "exposure_reserved" not in a.notes
        assert np.array_equal(a.rows, b.rows)


def test_least_shown_first_gives_the_reserved_slot_to_the_cold_listing_shown_least(catalog):
    rows, pc, pp = next(_requests(catalog, 1, 200, seed=11, bury=0.05))
    picked = {}
    for order in ("best", "least_shown"):
        eng = _engine(
            catalog, min_cold_share=1.0, cold_slots=1, cold_max_impressions=3, cold_order=order
        )
        first = eng.choose(make_prepared(catalog, rows), (pc, pp)).notes["exposure_reserved"]
        # served (recorded): that listing now has one impression, still cold (< 3)
        again = eng.choose(make_prepared(catalog, rows), (pc, pp)).notes["exposure_reserved"]
        picked[order] = (first, again, eng.exposure.listing_counts.get(again[0], 0))
    assert picked["best"][1] == picked["best"][0]  # best first: the same listing again
    assert picked["least_shown"][1] != picked["least_shown"][0]  # least shown first: another one...
    assert picked["least_shown"][2] == 1  # ...whose only impression is this one


def test_least_shown_first_spreads_cold_impressions_more_evenly(catalog):
    def counts(order: str) -> np.ndarray:
        eng = _engine(
            catalog, min_cold_share=0.3, cold_slots=2, cold_max_impressions=3, cold_order=order
        )
        shown = np.concatenate(
            [
                eng.choose(make_prepared(catalog, r), (pc, pp)).rows
                for r, pc, pp in _requests(catalog, 300, 100, seed=12)
            ]
        )
        cold = shown[catalog.cold[shown]]
        return np.bincount(cold, minlength=len(catalog))[np.flatnonzero(catalog.cold)]

    best, spread = counts("best"), counts("least_shown")
    print(
        f"cold listings shown at least once: best first {np.mean(best > 0):.3f}, least shown first "
        f"{np.mean(spread > 0):.3f}; total cold impressions {best.sum()} vs {spread.sum()}"
    )
    assert np.mean(spread > 0) > np.mean(best > 0)
