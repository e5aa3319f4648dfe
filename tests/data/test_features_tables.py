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
        assert ts.min().isoformat() == report["window"][0] and ts.max().isoformat() == report["window"][1]


def test_listing_ranges(demo_features):  # noqa: F811
    df = _view(demo_features, "listing")
    assert df["ctr_smoothed"].between(0, 1, inclusive="neither").all()
    assert df["cvr_smoothed"].between(0, 1, inclusive="neither").all()
    assert (df[["views_decayed", "clicks_decayed", "purchases_decayed", "age_days"]] >= 0).all().all()
    assert (df["price"] > 0).all() and df["take_rate"].between(0, 1, inclusive="neither").all()
    listings = pd.read_parquet(demo_features["validated"] / "validated" / "listings")
    assert set(df["listing_id"]) <= set(listings["listing_id"])


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
    rep = build_training_set(demo_features["labels"], demo_features["features"], demo_features["validated"],
                             tmp_path / "train.parquet")
    df = pd.read_parquet(tmp_path / "train.parquet")
    assert rep.rows_in == rep.rows_out == len(df)
    assert not df.duplicated(["request_id", "slot"]).any()
    assert np.isfinite(df[list(NUMERIC_FEATURE_COLUMNS)].to_numpy(dtype=float)).all()
    assert (df["listing_price"] == df["price"]).all()  # the view's price is the impression's price
    assert df["basket_size"].ge(0).all() and df["price_ratio"].between(0, 100).all()
    assert sum(rep.missing_by_view.values()) < 0.5 * 3 * len(df)  # most rows find their features
