"""Geo holdout in the simulator: the DiD interval covers the simulator's true uplift, and the
results table has every row of the seed's table; the CLI writes an HTML report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def geo():
    from checkout_recs.simulate import SimConfig
    from checkout_recs.simulate.evaluate import heuristic_policy, oracle_policy
    from checkout_recs.simulate.scenario import SimWorld
    from checkout_recs.studies.geo_experiment import run_geo_experiment

    cfg = SimConfig(seed=5, n_sellers=200, n_listings=5_000, n_users=800, days=16, checkouts_per_day=120,
                    regions=("north", "south", "east", "west"))  # fmt: skip
    world = SimWorld.build(cfg)
    return run_geo_experiment(
        world,
        lambda: oracle_policy(world),
        lambda: heuristic_policy(world, 0),
        ["north", "west"],
        8,
        8,
    )


def test_did_interval_covers_true_uplift(geo) -> None:
    d = geo.did
    assert geo.true_uplift > 0.5  # the oracle reads the truth: a large, known effect
    assert d.lower <= geo.true_uplift <= d.upper
    assert d.n_pre_days == 8 and d.n_post_days == 8
    assert set(d.control_regions) == {"north", "west"}
    assert geo.panel.groupby("region")["day"].nunique().eq(16).all()


def test_results_table_rows(geo) -> None:
    t = geo.table.set_index("quantity")
    assert "truth in CI: True" in t.loc["incremental GMV (DiD, expected GMV)", "note"]
    assert "incremental GMV (DiD, realised GMV)" in t.index
    ratio_new = t.loc["new-seller exposure / opportunity"]
    assert float(ratio_new["treated"]) >= 0 and np.isfinite(float(ratio_new["holdout"]))
    assert np.isfinite(float(ratio_new["counterfactual"]))
    shown = t.loc["cold-start listings shown at least once in first week (share)"]
    assert all(0.0 <= float(shown[c]) <= 1.0 for c in ("treated", "holdout", "counterfactual"))
    median = t.loc["cold-start first-week impressions, median"]
    assert all(
        (float(median[c]) >= 1) == (float(shown[c]) > 0.5)
        for c in ("treated", "holdout", "counterfactual")
    )
    explore = t.loc["share of slots with propensity < 1 (randomised)"]
    assert (
        float(explore["treated"]) == 0.0 and float(explore["counterfactual"]) == 1.0
    )  # oracle deterministic


def test_counterfactual_run_is_the_control_policy_on_the_same_checkouts(geo) -> None:
    """Pre-period rows are identical in the experiment and its counterfactual (same streams, same
    policy), so the true uplift compares like with like."""
    pre = geo.panel["day"] < geo.start_day
    assert geo.panel.loc[pre, "gmv"].to_numpy() == pytest.approx(
        geo.counterfactual_panel.loc[pre, "gmv"].to_numpy()
    )
    post = ~pre & geo.panel["region"].map(geo.arms).eq("treatment")
    assert geo.panel.loc[post, "gmv"].sum() > geo.counterfactual_panel.loc[post, "gmv"].sum()
    assert set(geo.shown["arm"]) == {"pre", "treatment", "control"}


def test_geo_report_html(geo, tmp_path: Path) -> None:
    from checkout_recs.evaluation.experiments.report import geo_report

    path = geo_report(geo.panel, geo.arms, geo.start_day, geo.did, tmp_path / "r.html", "t")
    html = path.read_text()
    assert html.count("data:image/png;base64,") == 1 and "DiD uplift" in html


def test_results_record_the_treated_policy_config(tmp_path: Path) -> None:
    """The JSON of ``experiment simulate`` says which exposure floors the treated arm ran with."""
    from checkout_recs.studies.geo_reproduce import effective_policy_config as _policy_config

    default = _policy_config(None)["exposure"]
    assert default["min_cold_share"] > 0 and default["cold_slots"] >= 1
    f = tmp_path / "pc.json"
    f.write_text('{"exposure": {"min_cold_share": 0.5, "cold_slots": 3}}')
    got = _policy_config(f)["exposure"]
    assert (got["min_cold_share"], got["cold_slots"], got["min_new_seller_share"]) == (
        0.5,
        3,
        default["min_new_seller_share"],
    )
