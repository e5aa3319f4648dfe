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
    assert {*FEATURE_COLUMNS, "propensity", "clicked", "purchased", "event_timestamp"} <= set(
        traffic.columns
    )
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


def test_decision_log_rows_become_one_row_per_slot(run: Path, tmp_path: Path) -> None:
    from monitoring.traffic import impressions_from_decisions

    imp = pd.read_parquet(run / "raw" / "impressions").sort_values(["request_id", "slot"])
    log = imp.groupby("request_id", sort=False).agg(
        user_id=("user_id", "first"), region=("region", "first"), device=("device", "first"),
        event_timestamp=("event_timestamp", "first"), policy=("policy", "first"),
        item_ids=("listing_id", list), propensities=("propensity", list),
    ).reset_index()  # fmt: skip
    log["scores"] = log["item_ids"].map(lambda ids: [1.0 / (s + 1) for s in range(len(ids))])
    log["fallback_reason"] = None
    (tmp_path / "decisions" / "v1").mkdir(parents=True)
    log.to_parquet(tmp_path / "decisions" / "v1" / "part-0.parquet")
    long = impressions_from_decisions(log)
    assert len(long) == len(imp) and long["slot"].max() == 5
    assert long.groupby("request_id")["listing_id"].nunique().eq(6).all()
    traffic = load_traffic(run, decisions=tmp_path / "decisions")
    assert len(traffic) == len(imp) and traffic["score"].between(0, 1).all()
    assert impressions_from_decisions(log.iloc[:0]).empty
