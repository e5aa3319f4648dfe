"""Offline and online carry the same rate lifts: the training set's row of an impression and the
serving snapshot as of that impression's time give the listing the same ``ctr_lift`` and
``cvr_lift``, and the ranker's input matrix takes them unchanged on both paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checkout_recs.features.snapshot import export_listing_snapshot
from checkout_recs.features.training import build_training_set
from checkout_recs.models.inputs import listing_snapshot
from checkout_recs.models.ranker_features import RANKER_FEATURES, ranker_matrix
from checkout_recs.serving.ranker_input import RankerInputPlan
from tests.fixtures_features import synthetic_features  # noqa: F401

LIFTS = ["ctr_lift", "cvr_lift"]


@pytest.fixture(scope="module")
def training_rows(synthetic_features, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("train") / "train.parquet"
    f = synthetic_features
    build_training_set(f["labels"], f["features"], f["validated"], out)
    return pd.read_parquet(out)


def test_the_ranker_takes_the_lifts_not_the_pooled_levels():
    assert set(LIFTS) <= set(RANKER_FEATURES)
    assert not {"ctr_smoothed", "cvr_smoothed"} & set(RANKER_FEATURES)


def test_training_row_equals_the_serving_snapshot_as_of_the_impression(
    synthetic_features,  # noqa: F811
    training_rows,
):
    sample = training_rows.sample(60, random_state=0)
    found = 0
    for _, row in sample.iterrows():
        t = pd.Timestamp(row["event_timestamp"])
        snap = export_listing_snapshot(synthetic_features["features"], t.to_pydatetime())
        online = snap[snap["listing_id"] == row["listing_id"]]
        offline = [row["listing_ctr_lift"], row["listing_cvr_lift"]]
        if online.empty:  # listed after the newest snapshot: neither path has evidence
            assert offline == [0.0, 0.0]
            continue
        found += 1
        assert (online["listing_feature_time"] <= t).all()
        np.testing.assert_array_equal(online[LIFTS].to_numpy()[0], offline)
        # and the serving assembly of the ranker's input hands the model the same numbers
        plan = RankerInputPlan(LIFTS, snap)
        served = plan.item_block[online.index[0]]
        trained = ranker_matrix(row.to_frame().T, LIFTS)[0]
        np.testing.assert_array_equal(served, trained)
    assert found > 40


def test_the_bundles_snapshot_carries_the_newest_lifts(synthetic_features):  # noqa: F811
    features = synthetic_features["features"]
    bundle = listing_snapshot(features, labels_dir=synthetic_features["labels"])
    latest = export_listing_snapshot(features, pd.Timestamp("2100-01-01", tz="UTC"))
    both = bundle.merge(latest, on="listing_id", suffixes=("", "_latest"))
    assert len(both) == len(latest) > 0
    for c in LIFTS:
        np.testing.assert_array_equal(both[c].to_numpy(), both[f"{c}_latest"].to_numpy())
