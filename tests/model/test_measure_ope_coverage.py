"""Interval coverage of every OPE estimator on the position-based world with a known truth.

The full study (50 seeds, ``checkout-recs ope-coverage``) takes minutes; this test runs 10 seeds
of a smaller world and prints the coverage."""

from __future__ import annotations

import pytest

from checkout_recs.evaluation.ope_coverage import CoverageWorld, coverage_study, simulate_logs, true_value

pytestmark = pytest.mark.slow


def test_logged_propensities_are_exact_marginals() -> None:
    w = CoverageWorld(n_requests=4_000)
    logs = simulate_logs(w, seed=0)
    # every logged propensity is at least epsilon / K and the greedy slots carry 1 - eps + eps/K
    floor = w.log_epsilon / w.n_candidates
    assert logs["pscore"].min() >= floor - 1e-12
    assert set(logs["pscore"].round(6)) <= {round(floor, 6), round(1 - w.log_epsilon + floor, 6)}
    # on-policy check: mean logged clicks per request ~ the logging policy's exact value
    assert 0.5 < logs["reward"].sum() / w.n_requests < 2.0
    assert true_value(w, n=20_000) > 0


def test_every_estimator_covers_the_truth() -> None:
    r = coverage_study(n_seeds=10, world=CoverageWorld(n_requests=1_500), n_boot=60)
    print({k: f"{v:.0%}" for k, v in r["coverage"].items()}, "truth", round(r["truth"], 4))
    assert set(r["coverage"]) == {"ips", "snips", "dm", "dr", "iips", "pbm"}
    for name, cov in r["coverage"].items():
        assert cov >= 0.7, (name, cov)
    # IPS and IIPS are the same estimator written per round and per slate
    assert r["mean_estimate"]["ips"] == pytest.approx(r["mean_estimate"]["iips"])
    # the model-based estimators are the tightest
    assert r["mean_width"]["dm"] < r["mean_width"]["ips"] and r["mean_width"]["pbm"] < r["mean_width"]["ips"]
