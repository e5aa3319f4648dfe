"""Assignment, delta-method and bootstrap comparisons, power, DiD and guardrails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from checkout_recs.evaluation.experiments.ab import (
    analyze_ab,
    assign_by_user_hash,
    compare_delta,
    design_geo_holdout,
    hash_fraction,
    minimum_detectable_effect,
    required_units_per_arm,
    sessions_from_impressions,
    unit_totals,
)
from checkout_recs.evaluation.experiments.did import diff_in_diff
from checkout_recs.evaluation.experiments.guardrails import evaluate_guardrails
from tests.fixtures_measure import ab_sessions, geo_panel


def test_user_hash_is_stable_balanced_and_experiment_specific() -> None:
    users = np.arange(20_000)
    a = assign_by_user_hash(users, "exp-a", 0.3)
    assert np.array_equal(a, assign_by_user_hash(users, "exp-a", 0.3))
    assert a.mean() == pytest.approx(0.3, abs=0.015)
    b = assign_by_user_hash(users, "exp-b", 0.3)
    assert 0.05 < (a & b).mean() < 0.13  # independent splits overlap ~9%
    u = hash_fraction(users, "x")
    assert u.min() >= 0 and u.max() < 1
    with pytest.raises(ValueError):
        assign_by_user_hash(users, "x", 1.0)


def test_geo_holdout_pairs_regions_of_similar_size() -> None:
    gmv = pd.Series({"a": 100.0, "b": 95.0, "c": 50.0, "d": 48.0, "e": 10.0, "f": 9.0})
    arms = design_geo_holdout(gmv, holdout_share=0.5, seed=1)
    assert sorted(arms.values()).count("control") == 3
    for pair in (("a", "b"), ("c", "d"), ("e", "f")):
        assert {arms[r] for r in pair} == {"control", "treatment"}
    with pytest.raises(ValueError):
        design_geo_holdout(pd.Series({"only": 1.0}))


def test_ab_detects_a_planted_ctr_lift_and_not_a_null() -> None:
    lifted = analyze_ab(ab_sessions(seed=1, ctr_lift=0.2))
    row = lifted[(lifted.metric == "ctr") & (lifted.method == "delta")].iloc[0]
    assert row.lift_lower < 0.2 < row.lift_upper and row.lift_lower > 0 and row.p_value < 0.01
    boot = lifted[(lifted.metric == "ctr") & (lifted.method == "bootstrap")].iloc[0]
    assert boot.lift_lower > 0 and abs(boot.lift - row.lift) < 1e-12
    null = analyze_ab(ab_sessions(seed=2, ctr_lift=0.0))
    ctr = null[null.metric == "ctr"]
    assert ((ctr.lift_lower < 0) & (ctr.lift_upper > 0)).all()
    assert set(null.metric) == {"revenue_per_session", "gmv_per_session", "ctr", "conversion"}


def test_delta_method_coverage_over_seeds() -> None:
    covered = []
    for seed in range(40):
        units = unit_totals(ab_sessions(seed=100 + seed, n_users=1_500, ctr_lift=0.1), "user_id")
        r = compare_delta(units, "ctr")
        covered.append(r.lift_lower <= 0.1 <= r.lift_upper)
    assert np.mean(covered) >= 0.85


def test_sessions_from_labelled_impressions() -> None:
    li = pd.DataFrame(
        {
            "request_id": ["a"] * 6 + ["b"] * 6,
            "user_id": [1] * 6 + [2] * 6,
            "listing_id": range(12),
            "region": "north",
            "policy": "ranker",
            "event_timestamp": pd.Timestamp("2026-10-01", tz="UTC"),
            "clicked": [1, 1, 0, 0, 0, 0] + [0] * 6,
            "purchased": [1, 0, 0, 0, 0, 0] + [0] * 6,
            "price": 20.0,
            "take_rate": 0.1,
        }
    )
    s = sessions_from_impressions(li).set_index("request_id")
    assert (
        s.loc["a", "clicks"] == 2
        and s.loc["a", "gmv"] == 20.0
        and s.loc["a", "revenue"] == pytest.approx(2.0)
    )
    assert s.loc["b", "impressions"] == 6 and s["sessions"].sum() == 2


def test_power_and_sample_size_are_inverse() -> None:
    mde = minimum_detectable_effect(10.0, 30.0, 20_000)
    assert 0.05 < mde < 0.15
    assert required_units_per_arm(10.0, 30.0, mde) == pytest.approx(20_000, rel=0.001)
    assert minimum_detectable_effect(10.0, 30.0, 80_000) == pytest.approx(mde / 2, rel=1e-6)
    assert minimum_detectable_effect(0.0, 1.0, 100) == float("inf")


@pytest.mark.slow
def test_did_recovers_planted_uplift_within_ci() -> None:
    covered = []
    for seed in range(20):
        panel, arms = geo_panel(seed, uplift=0.143)
        r = diff_in_diff(panel, arms, start=28, n_bootstrap_samples=100, seed=seed)
        covered.append(r.lower <= 0.143 <= r.upper)
        assert r.n_pre_days == 28 and r.n_post_days == 28
    assert np.mean(covered) >= 0.85
    panel, arms = geo_panel(0, uplift=0.143)
    r = diff_in_diff(panel, arms, start=28, n_bootstrap_samples=200)
    assert r.uplift == pytest.approx(0.143, abs=0.03) and r.lower > 0.1
    assert r.boot_lower < r.uplift < r.boot_upper
    assert r.parallel_trends.passed and r.incremental_total > 0


def test_did_flags_broken_parallel_trends_and_level_scale() -> None:
    panel, arms = geo_panel(3, uplift=0.0, trend_gap=0.6)
    r = diff_in_diff(panel, arms, start=28, n_bootstrap_samples=50)
    assert not r.parallel_trends.passed
    panel, arms = geo_panel(4, uplift=0.1)
    lvl = diff_in_diff(panel, arms, start=28, scale="level", n_bootstrap_samples=50)
    assert lvl.lower < 0.1 < lvl.upper
    with pytest.raises(ValueError, match="pre"):
        diff_in_diff(panel, arms, start=55)
    with pytest.raises(ValueError, match="no control"):
        diff_in_diff(panel, {r: "treatment" for r in arms}, start=28)


def test_guardrails_continue_hold_rollback() -> None:
    ok = {
        "requests": 5_000,
        "p95_latency_ms": 40,
        "error_rate": 0.001,
        "fallback_rate": 0.02,
        "gmv_ratio": 1.02,
    }
    assert evaluate_guardrails(ok).action == "continue"
    slow = evaluate_guardrails({**ok, "p95_latency_ms": 180})
    assert slow.action == "rollback" and slow.breaches[0].name == "p95_latency_ms"
    assert evaluate_guardrails({**ok, "fallback_rate": 0.5}).action == "rollback"
    doubtful = evaluate_guardrails({**ok, "gmv_ratio": 0.95, "gmv_ratio_upper": 1.01})
    assert doubtful.action == "hold" and "floor" in doubtful.summary()
    assert (
        evaluate_guardrails({**ok, "gmv_ratio": 0.9, "gmv_ratio_upper": 0.95}).action == "rollback"
    )
    assert evaluate_guardrails({**ok, "requests": 10}).action == "hold"
    assert evaluate_guardrails(ok, {"max_p95_latency_ms": 30}).action == "rollback"
    with pytest.raises(ValidationError):
        evaluate_guardrails({**ok, "error_rate": 2.0})
