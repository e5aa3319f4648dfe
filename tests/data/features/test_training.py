"""Expectations on the feature tables and the training set built from the simulated demo run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from checkout_recs import contract
from checkout_recs.features.pit import VIEW_KEYS
from checkout_recs.features.training import NUMERIC_FEATURE_COLUMNS, build_training_set
from tests.fixtures_features import demo_features  # noqa: F401

pytestmark = pytest.mark.slow


def _view(demo, name: str) -> pd.DataFrame:
    return pd.read_parquet(demo["features"] / f"{name}.parquet")


@pytest.mark.parametrize("view", ["user", "listing", "seller", "category_pair"])
def test_no_nulls_and_one_row_per_entity_and_snapshot(demo_features, view):  # noqa: F811
    df = _view(demo_features, view)
    assert len(df) > 0
    scalar = [c for c in df.columns if not c.startswith("recent_")]
    assert df[scalar].notna().all().all()
    keys = [VIEW_KEYS[view]] if view in VIEW_KEYS else ["category_a", "category_b"]
    assert not df.duplicated([*keys, "event_timestamp"]).any()


def test_snapshots_are_end_of_day_and_inside_the_event_window(demo_features):  # noqa: F811
    report = json.loads((demo_features["features"] / "build_report.json").read_text())
    for view in ("user", "listing", "seller"):
        ts = _view(demo_features, view)["event_timestamp"]
        assert (ts.dt.hour == 23).all() and (ts.dt.microsecond == 999_999).all()
        assert (
            ts.min().isoformat() == report["window"][0]
            and ts.max().isoformat() == report["window"][1]
        )


def test_listing_ranges(demo_features):  # noqa: F811
    df = _view(demo_features, "listing")
    assert df["ctr_smoothed"].between(0, 1, inclusive="neither").all()
    assert df["cvr_smoothed"].between(0, 1, inclusive="neither").all()
    assert (
        (df[["views_decayed", "clicks_decayed", "purchases_decayed", "age_days"]] >= 0).all().all()
    )
    assert (df["price"] > 0).all() and df["take_rate"].between(0, 1, inclusive="neither").all()
    listings = pd.read_parquet(demo_features["validated"] / "validated" / "listings")
    assert set(df["listing_id"]) <= set(listings["listing_id"])
    # category context: a log lift around 0 (shrunk to the pooled CTR), a price centred per category
    assert df["category_ctr_lift"].abs().max() < 3 and df["category_ctr_lift"].std() > 0
    # rate lifts: the listing against its snapshot's prior, exactly 0 without evidence
    assert np.isfinite(df[["ctr_lift", "cvr_lift"]]).all().all() and df["cvr_lift"].std() > 0
    assert (df.loc[df["views_decayed"] == 0, "ctr_lift"] == 0).all()
    assert (df.loc[df["clicks_decayed"] == 0, "cvr_lift"] == 0).all()
    day_level = df.groupby("event_timestamp")["cvr_smoothed"].median()
    day_lift = df.groupby("event_timestamp")["cvr_lift"].median()
    assert np.ptp(day_lift) <= np.ptp(np.log(day_level))  # the day's level drops out
    last = df[df["event_timestamp"] == df["event_timestamp"].max()]
    assert last.groupby("category_id")["price_vs_category"].median().abs().max() < 1e-9
    assert np.allclose(
        last["price_vs_category"],
        np.log(last["price"])
        - np.log(last["price"]).groupby(last["category_id"]).transform("median"),
    )


def test_user_and_seller_ranges(demo_features):  # noqa: F811
    u = _view(demo_features, "user")
    assert (u["n_purchases"] >= 0).all() and u["mobile_share"].between(0, 1).all()
    assert u["days_since_last_purchase"].between(0, 365).all()
    assert (u["recent_listing_ids"].map(len) <= contract.RECENT_SEQUENCE_LEN).all()
    assert (u["recent_listing_ids"].map(len) == u["recent_category_ids"].map(len)).all()
    assert ((u["n_purchases"] == 0) == (u["top_category_id"] == -1)).all()
    s = _view(demo_features, "seller")
    assert s["seller_rating"].between(1, 5).all() and (s["seller_sales_velocity"] >= 0).all()
    assert s["seller_is_new"].isin([0, 1]).all() and s["seller_linked_history"].isin([0, 1]).all()
    assert ((s["seller_age_days"] < 30) == (s["seller_is_new"] == 1)).all()


def test_counts_never_decrease_within_a_user(demo_features):  # noqa: F811
    u = _view(demo_features, "user").sort_values(["user_id", "event_timestamp"])
    assert (u.groupby("user_id")["n_purchases"].diff().fillna(0) >= 0).all()


def test_training_set_expectations(demo_features, tmp_path):  # noqa: F811
    rep = build_training_set(
        demo_features["labels"],
        demo_features["features"],
        demo_features["validated"],
        tmp_path / "train.parquet",
    )
    df = pd.read_parquet(tmp_path / "train.parquet")
    assert rep.rows_in == rep.rows_out == len(df)
    assert not df.duplicated(["request_id", "slot"]).any()
    assert np.isfinite(df[list(NUMERIC_FEATURE_COLUMNS)].to_numpy(dtype=float)).all()
    assert (df["listing_price"] == df["price"]).all()  # the view's price is the impression's price
    assert df["basket_size"].ge(0).all() and df["price_ratio"].between(0, 100).all()
    assert sum(rep.missing_by_view.values()) < 0.5 * 3 * len(df)  # most rows find their features


def test_snapshot_category_columns_match_the_view_formulas():
    from checkout_recs.features.item_views import snapshot_category_columns

    snap = pd.DataFrame(
        {
            "price": [10.0, 20.0, 40.0, 5.0],
            "category_id": [1, 1, 1, 2],
            "top_category_id": [0, 0, 0, 9],
            "views_decayed": [100.0, 100.0, 100.0, 100.0],
            "clicks_decayed": [20.0, 20.0, 20.0, 1.0],
        }
    )
    out = snapshot_category_columns(snap)
    assert np.allclose(out["price_vs_category"], [np.log(0.5), 0.0, np.log(2.0), 0.0])
    lift = out["category_ctr_lift"].to_numpy()
    assert (
        lift[0] == lift[1] == lift[2] > 0 > lift[3]
    )  # the busy category above the pool, the other below
