"""Interval coverage of every OPE estimator against a known truth: on the position-based stand-in
world and on the marketplace simulator itself.

The full studies (50 seeds, ``checkout-recs ope-coverage``) take about a minute (simulator) and
minutes (stand-in); these tests run 8-10 seeds of smaller settings and print the coverage."""

from __future__ import annotations

import pytest

from checkout_recs.studies.ope_coverage import (
    CoverageWorld,
    coverage_study,
    simulate_logs,
    true_value,
)

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
    assert (
        r["mean_width"]["dm"] < r["mean_width"]["ips"]
        and r["mean_width"]["pbm"] < r["mean_width"]["ips"]
    )


def test_every_estimator_covers_the_truth_on_the_simulator(tmp_path) -> None:  # noqa: ANN001
    """The marketplace simulator itself: exact logged propensities (checked inside ``seed_logs``),
    a known evaluation policy's true value from the hidden truth, intervals that cover it."""
    from checkout_recs.studies.ope_sim_coverage import (
        SimCoverage,
        coverage_report,
        sim_coverage_study,
    )

    r = sim_coverage_study(n_seeds=8, cov=SimCoverage(n_truth_seeds=3, n_boot=60))
    print({k: f"{v:.0%}" for k, v in r["coverage"].items()}, "truth", round(r["truth"], 4))
    assert set(r["coverage"]) == {"ips", "snips", "dm", "dr", "iips", "pbm"}
    assert r["requests_per_seed"] > 1_000
    for name, cov in r["coverage"].items():
        assert cov >= 0.75, (name, cov)
    # the evaluation policy differs from the logging one, yet every estimate is near the truth
    for name, est in r["mean_estimate"].items():
        assert abs(est - r["truth"]) < 0.5 * r["mean_width"][name], name
    assert r["mean_width"]["pbm"] < r["mean_width"]["ips"]
    html = coverage_report(r, tmp_path / "coverage.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "lowest coverage" in html
