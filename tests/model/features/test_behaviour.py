"""Behaviour of the features: cold start gets sane values, directions, invariances, snapshot SLA."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from checkout_recs.features.on_demand import Basket, InteractionTables, interaction_features
from checkout_recs.features.sla import SNAPSHOT_SLA, snapshot_age_ok
from checkout_recs.features.snapshot import SNAPSHOT_COLUMNS, export_listing_snapshot
from tests.fixtures_features import START, synthetic_features  # noqa: F401


def _last_listing_snapshot(features) -> pd.DataFrame:
    df = pd.read_parquet(features / "listing.parquet")
    return df[df["event_timestamp"] == df["event_timestamp"].max()]


def test_cold_listing_gets_the_population_rate_not_zero(synthetic_features):  # noqa: F811
    snap = _last_listing_snapshot(synthetic_features["features"])
    cold = snap[snap["views_decayed"] == 0]
    shown = snap[snap["views_decayed"] > 2]
    assert len(cold) > 0 and len(shown) > 0
    assert cold["ctr_smoothed"].nunique() == 1  # every cold listing gets the same prior mean
    prior = cold["ctr_smoothed"].iloc[0]
    assert shown["ctr_smoothed"].min() < prior < shown["ctr_smoothed"].max()
    pooled = shown["clicks_decayed"].sum() / shown["views_decayed"].sum()
    assert abs(prior - pooled) < 0.5 * pooled


def test_more_clicks_at_equal_views_means_higher_ctr(synthetic_features):  # noqa: F811
    snap = _last_listing_snapshot(synthetic_features["features"])
    s = snap[snap["views_decayed"] > 0].sort_values("views_decayed")
    rate = s["clicks_decayed"] / s["views_decayed"]
    corr = np.corrcoef(rate, s["ctr_smoothed"])[0, 1]
    assert corr > 0.8


def test_interaction_features_follow_the_items_not_their_order():
    cp = pd.DataFrame(
        {"category_a": [1, 1, 2], "category_b": [2, 3, 3], "co_purchase_strength": [3.0, 1.0, 4.0]}
    )
    co = pd.DataFrame({"listing_a": [10], "listing_b": [20], "strength": [1.5]})
    tables = InteractionTables.from_frames(cp, co)
    basket = Basket(np.array([10, 11]), np.array([1, 2]), np.array([0, 0]), np.array([20.0, 40.0]))
    ids, cats, tops, prices = (
        np.array([20, 21, 22]),
        np.array([2, 3, 9]),
        np.array([0, 0, 1]),
        np.array([30.0, 15.0, 60.0]),
    )
    base = interaction_features(basket, ids, cats, tops, prices, tables)
    perm = np.array([2, 0, 1])
    shuffled = interaction_features(basket, ids[perm], cats[perm], tops[perm], prices[perm], tables)
    for k in base:
        assert np.allclose(base[k][perm], shuffled[k]), k
    # direction: a stronger complement scores higher; an unknown category scores zero
    assert (
        base["complement_strength"][1]
        > base["complement_strength"][0]
        > base["complement_strength"][2]
        == 0
    )
    assert base["co_purchase_strength"][0] > 0 == base["co_purchase_strength"][1]


def test_listing_snapshot_is_one_row_per_listing_as_of(synthetic_features):  # noqa: F811
    as_of = START + pd.Timedelta(days=4, hours=6)
    snap = export_listing_snapshot(synthetic_features["features"], as_of.to_pydatetime())
    assert list(snap.columns) == list(SNAPSHOT_COLUMNS)
    assert snap["listing_id"].is_unique and len(snap) > 0
    assert (snap["listing_feature_time"] <= as_of).all() and (
        snap["seller_feature_time"].dropna() <= as_of
    ).all()
    assert (
        snap["snapshot_time"] == START + pd.Timedelta(days=4) - pd.Timedelta(microseconds=1)
    ).all()
    listing = pd.read_parquet(synthetic_features["features"] / "listing.parquet")
    live = listing[listing["event_timestamp"] <= as_of]["listing_id"].nunique()
    assert len(snap) == live


def test_snapshot_age_check_flags_stale_and_future_snapshots():
    t = dt.datetime(2026, 3, 5, 23, 59, tzinfo=dt.UTC)
    assert snapshot_age_ok(t, t + dt.timedelta(hours=20))
    assert snapshot_age_ok(t, t + SNAPSHOT_SLA)
    assert not snapshot_age_ok(
        t, t + SNAPSHOT_SLA + dt.timedelta(minutes=1)
    )  # stale -> stale_features
    assert not snapshot_age_ok(
        t, t - dt.timedelta(hours=1)
    )  # a snapshot from the future is refused
    assert snapshot_age_ok(t.replace(tzinfo=None), t + dt.timedelta(hours=1))  # naive = UTC
