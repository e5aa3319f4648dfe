"""Fairness audit on a tiny simulated run, and the measurement CLI commands end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from checkout_recs.evaluation.fairness import (
    audit_bucket,
    disparity_ratio,
    position_weight,
    run_audit,
    seller_cohort,
)
from tests.fixtures_data import make_demo_dataset

pytestmark = pytest.mark.slow  # a tiny simulation + matplotlib


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("measure_fair"))


def test_building_blocks() -> None:
    assert position_weight(np.array([0, 1, 5])) == pytest.approx(
        [1.0, 1 / np.log2(3), 1 / np.log2(7)]
    )
    assert seller_cohort(np.array([1.0, 100.0, 400.0])).tolist() == ["new", "regular", "incumbent"]
    b = audit_bucket(pd.Series([np.nan, 3.0, 4.7]), pd.Series([True, False, False]))
    assert b.tolist() == ["unrated|linked", "rated<4|own", "rated>=4.5|own"]
    live = pd.Series({"new": 10, "regular": 0, "incumbent": 40})
    assert disparity_ratio(pd.Series({"new": 5.0, "incumbent": 40.0}), live) == pytest.approx(0.5)
    assert np.isnan(disparity_ratio(pd.Series({"regular": 1.0}), live, "regular"))


def test_audit_shares_add_up(run: Path) -> None:
    imp = pd.read_parquet(run / "labels" / "impressions_labelled.parquet")
    audit = run_audit(
        imp, pd.read_parquet(run / "raw" / "listings"), pd.read_parquet(run / "raw" / "sellers")
    )
    assert audit.by_cohort["exposure_share"].sum() == pytest.approx(1.0)
    assert audit.by_bucket["impressions"].sum() == audit.by_cohort["impressions"].sum() == len(imp)
    assert audit.by_cohort["clicks"].sum() == imp["clicked"].sum()
    daily = audit.daily.groupby("day")["exposure_share"].sum()
    assert np.allclose(daily, 1.0)
    pub = audit.published.set_index("cohort")
    assert pub.loc["incumbent", "disparity_vs_incumbent"] == pytest.approx(1.0)


def test_cli_fairness_experiment_and_bad_input(run: Path, tmp_path: Path) -> None:
    from cli.app import app

    r = CliRunner()
    res = r.invoke(app, ["fairness", "--run", str(run), "--out", str(tmp_path / "fair")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "fair" / "fairness_report.html").read_text()
    assert "data:image/png;base64," in html and "incumbent" in html
    summary = json.loads((tmp_path / "fair" / "fairness_summary.json").read_text())
    assert {row["cohort"] for row in summary["published"]} <= {"new", "regular", "incumbent"}

    design = tmp_path / "design.json"
    res = r.invoke(
        app, ["experiment", "design", "--name", "t1", "--run", str(run), "--out", str(design)]
    )
    assert res.exit_code == 0, res.output
    spec = json.loads(design.read_text())
    assert spec["unit"] == "user" and all(v > 0 for v in spec["mde_gmv_per_unit"].values())
    res = r.invoke(
        app,
        [
            "experiment",
            "analyze",
            "--design",
            str(design),
            "--run",
            str(run),
            "--out",
            str(tmp_path / "ab"),
        ],
    )
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "ab" / "results.json").read_text())
    assert {x["metric"] for x in results} == {
        "revenue_per_session",
        "gmv_per_session",
        "ctr",
        "conversion",
    }

    res = r.invoke(app, ["experiment", "design", "--name", "g", "--run", str(run), "--out", str(tmp_path / "g.json"),
                         "--unit", "region"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert set(json.loads((tmp_path / "g.json").read_text())["arms"].values()) == {
        "control",
        "treatment",
    }
    res = r.invoke(app, ["experiment", "analyze", "--design", str(tmp_path / "g.json"), "--run", str(run),
                         "--out", str(tmp_path / "geo")])  # fmt: skip
    assert res.exit_code == 2 and "--start" in res.output
    res = r.invoke(
        app, ["fairness", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 1


def test_cli_monitor_same_traffic_is_quiet(run: Path, tmp_path: Path) -> None:
    from cli.app import app

    args = ["monitor", "--reference", str(run), "--current", str(run), "--out", str(tmp_path / "m")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "no drift confirmed" in res.output
    summary = json.loads((tmp_path / "m" / "traffic_summary.json").read_text())
    assert summary["confirmed"] is False and {o["metric"] for o in summary["outcomes"]} == {
        "ctr",
        "conversion",
    }
    assert (tmp_path / "m" / "features" / "drift_report.html").is_file()
    res = CliRunner().invoke(app, ["monitor", "--reference", str(tmp_path / "none"), "--current", str(run),
                                   "--out", str(tmp_path / "m2")])  # fmt: skip
    assert res.exit_code == 1
