"""Expectations on the served-traffic table the drift monitor compares, on a tiny simulated run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.simcheck import load_traffic
from monitoring.traffic import FEATURE_COLUMNS, traffic_table
from tests.fixtures_data import make_demo_dataset


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("measure_traffic"))


def test_one_row_per_impression_with_labels(run: Path) -> None:
    traffic = load_traffic(run)  # picks labels/impressions_labelled.parquet
    labelled = pd.read_parquet(run / "labels" / "impressions_labelled.parquet")
    assert len(traffic) == len(labelled) > 0
    assert {*FEATURE_COLUMNS, "propensity", "clicked", "purchased", "event_timestamp"} <= set(traffic.columns)
    assert traffic[FEATURE_COLUMNS + ["propensity"]].notna().all().all()
    assert np.isfinite(traffic["log_price"]).all()
    assert traffic["propensity"].between(0, 1, inclusive="right").all()
    assert set(traffic["seller_cohort"]) <= {"new", "established"}
    assert traffic["top_category"].str.fullmatch(r"-?\d+").all()
    assert (traffic["purchased"] <= traffic["clicked"]).all()


def test_unknown_listings_are_dropped_and_raw_layout_reads(run: Path) -> None:
    imp = pd.read_parquet(run / "raw" / "impressions")
    listings = pd.read_parquet(run / "raw" / "listings")
    ghost = imp.head(3).assign(listing_id=-1)
    t = traffic_table(pd.concat([imp, ghost]), listings)
    assert len(t) == len(imp)
    assert "clicked" not in t.columns  # raw impressions carry no labels
    assert (t["seller_cohort"] == "unknown").all()  # no sellers table given
