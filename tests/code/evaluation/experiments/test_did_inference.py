"""Geo DiD checks beside the day-level intervals: permutation over region assignments, placebo
periods, HAC and region-clustered intervals, and their report (the power table: test_geo_power.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from checkout_recs.evaluation.experiments.did import diff_in_diff
from checkout_recs.evaluation.experiments.did_inference import (
    cluster_interval,
    geo_inference,
    hac_interval,
    newey_west_lags,
    placebo_periods,
    region_permutation_test,
)
from checkout_recs.evaluation.experiments.report import geo_report
from tests.fixtures_measure import geo_panel


def _panel(seed: int = 0, uplift: float = 0.143, n_regions: int = 4, days: int = 14):
    return geo_panel(seed, uplift=uplift, n_regions=n_regions, pre_days=days, post_days=days)


def test_four_regions_give_six_assignments_and_a_floor_on_the_p_value() -> None:
    panel, arms = _panel()
    p = region_permutation_test(panel, arms, start=14)
    assert p.n_assignments == 6 and p.exhaustive
    assert p.min_p_one_sided == pytest.approx(1 / 6) and p.min_p_two_sided == pytest.approx(2 / 6)
    # a clear +14.3% effect is the most extreme assignment, yet p cannot go below the floor
    assert p.p_one_sided == pytest.approx(1 / 6) and p.p_two_sided == pytest.approx(2 / 6)
    assert sum(a["observed"] for a in p.assignments) == 1
    assert p.observed_uplift == pytest.approx(
        diff_in_diff(panel, arms, 14, n_bootstrap_samples=10).uplift
    )
    # each assignment's mirror (arms swapped) has the opposite log effect
    by_set = {tuple(a["treated"]): np.log1p(a["uplift"]) for a in p.assignments}
    regions = sorted(arms)
    for treated, effect in by_set.items():
        mirror = tuple(r for r in regions if r not in treated)
        assert by_set[mirror] == pytest.approx(-effect, abs=1e-12)


def test_more_regions_lower_the_floor_and_sampling_keeps_the_observed_assignment() -> None:
    panel, arms = _panel(n_regions=8)
    p = region_permutation_test(panel, arms, start=14)
    assert p.n_assignments == 70 and p.p_one_sided == pytest.approx(1 / 70)
    sampled = region_permutation_test(panel, arms, start=14, max_assignments=30, seed=1)
    assert not sampled.exhaustive and sampled.n_assignments == 30
    assert sum(a["observed"] for a in sampled.assignments) == 1
    null_panel, null_arms = _panel(seed=5, uplift=0.0, n_regions=8)
    assert region_permutation_test(null_panel, null_arms, start=14).p_two_sided > 0.05


def test_placebo_periods_find_nothing_before_the_start() -> None:
    panel, arms = _panel(seed=2, n_regions=6, days=28)
    pl = placebo_periods(panel, arms, start=28, min_days=3)
    assert len(pl.starts) == 28 - 2 * 3 + 1 and pl.starts[0] == 3
    assert abs(pl.mean_uplift) < 0.05 and pl.share_covering_zero >= 0.7
    assert pl.p_in_time == 0.0  # every placebo estimate is smaller than the planted +14.3%
    with pytest.raises(ValueError, match="pre-period"):
        placebo_periods(panel, arms, start=4, min_days=3)


def test_hac_keeps_the_did_estimate_and_cluster_matches_it_on_the_level_scale() -> None:
    panel, arms = _panel(seed=3, n_regions=6, days=28)
    did = diff_in_diff(panel, arms, 28, n_bootstrap_samples=10)
    hac = hac_interval(panel, arms, 28)
    assert hac.uplift == pytest.approx(did.uplift, rel=1e-9) and hac.lower < hac.uplift < hac.upper
    assert (
        hac.df == 56 - 2
        and newey_west_lags(56) == 3
        and f"{newey_west_lags(56)} lags" in hac.method
    )
    assert hac.lower < 0.143 < hac.upper
    level = diff_in_diff(panel, arms, 28, scale="level", n_bootstrap_samples=10)
    cl = cluster_interval(panel, arms, 28, scale="level")
    assert cl.uplift == pytest.approx(level.uplift, rel=1e-9) and cl.df == 6 - 1
    log = cluster_interval(panel, arms, 28)
    assert log.uplift == pytest.approx(did.uplift, abs=0.01) and log.lower < log.uplift < log.upper


def test_cluster_regression_is_skipped_with_a_reason_when_logs_cannot_be_taken() -> None:
    panel, arms = _panel(seed=4)
    panel.loc[(panel["region"] == "r0") & (panel["day"] == 3), "gmv"] = 0.0
    with pytest.raises(ValueError, match="> 0"):
        cluster_interval(panel, arms, 14)
    inf = geo_inference(panel.assign(gmv=panel["gmv"] + (panel["gmv"] == 0)), arms, 14)
    assert inf.cluster is not None
    inf_level = geo_inference(panel, arms, 14, scale="level")
    assert inf_level.cluster is not None and inf_level.cluster_note == ""


def test_geo_report_shows_the_checks(tmp_path: Path) -> None:
    panel, arms = _panel()
    did = diff_in_diff(panel, arms, 14, n_bootstrap_samples=10)
    path = geo_report(
        panel, arms, 14, did, tmp_path / "r.html", "t", inference=geo_inference(panel, arms, 14)
    )
    html = path.read_text()
    for heading in (
        "Permutation over region assignments",
        "Placebo periods",
        "Power by number of regions",
        "HAC (Newey-West",
        "clustered by region (4 clusters)",
        "smallest possible",
    ):
        assert heading in html
