"""Point-in-time join and training set: no value from after an impression reaches its row."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from checkout_recs import contract
from checkout_recs.features.pit import point_in_time_join
from checkout_recs.features.training import (
    NUMERIC_FEATURE_COLUMNS,
    TRAINING_FEATURE_COLUMNS,
    VIEW_DEFAULTS,
    build_training_set,
)
from tests.fixtures_features import (  # noqa: F401
    assert_no_future_poison,
    synthetic_features,
    write_poisoned_features,
)

T0 = pd.Timestamp("2026-03-01", tz="UTC")


def _h(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def test_join_takes_latest_row_at_or_before_and_keeps_order():
    feats = pd.DataFrame(
        {
            "k": [1, 1, 1, 2],
            "event_timestamp": [_h(0), _h(10), _h(20), _h(5)],
            "v": [1.0, 2.0, 3.0, 9.0],
        }
    )
    ent = pd.DataFrame(
        {"k": [1, 2, 1, 1, 3, 2], "event_timestamp": [_h(15), _h(4), _h(10), _h(30), _h(1), _h(6)]}
    )
    out, found = point_in_time_join(ent, feats, "k", ["v"], prefix="f_")
    assert list(out["k"]) == [1, 2, 1, 1, 3, 2]  # input order, no row lost
    assert out["f_v"].tolist()[0] == 2.0 and out["f_v"].tolist()[2] == 2.0  # exact time counts
    assert out["f_v"].tolist()[3] == 3.0 and out["f_v"].tolist()[5] == 9.0
    assert np.isnan(out["f_v"].iloc[1]) and np.isnan(out["f_v"].iloc[4])  # before any row / unknown
    assert found.tolist() == [True, False, True, True, False, True]


def test_join_honours_ttl():
    feats = pd.DataFrame({"k": [1], "event_timestamp": [_h(0)], "v": [1.0]})
    ent = pd.DataFrame({"k": [1, 1], "event_timestamp": [_h(5), _h(50)]})
    out, found = point_in_time_join(ent, feats, "k", ["v"], ttl=pd.Timedelta(hours=24))
    assert found.tolist() == [True, False]


def test_training_set_rows_columns_and_counts(synthetic_features, tmp_path):  # noqa: F811
    f = synthetic_features
    rep = build_training_set(f["labels"], f["features"], f["validated"], tmp_path / "train.parquet")
    df = pd.read_parquet(tmp_path / "train.parquet")
    labelled = pd.read_parquet(f["labels"] / "impressions_labelled.parquet")
    assert rep.rows_in == rep.rows_out == len(df) == len(labelled)
    assert list(df.columns) == contract.field_names(contract.LABELLED_IMPRESSIONS) + list(
        TRAINING_FEATURE_COLUMNS
    )
    assert df[list(NUMERIC_FEATURE_COLUMNS)].notna().all().all()
    # impressions on the first day precede every end-of-day snapshot: counted, defaulted, kept
    first_day = (df["event_timestamp"] < T0 + pd.Timedelta(days=1)).sum()
    assert rep.missing_by_view["user"] >= first_day > 0
    defaulted = df[df["event_timestamp"] < T0 + pd.Timedelta(days=1)]
    assert (defaulted["user_n_purchases"] == VIEW_DEFAULTS["user"]["n_purchases"]).all()


def test_no_value_from_after_an_impression_reaches_its_row(synthetic_features, tmp_path):  # noqa: F811
    """Poison every view with a row 1 us after each impression (see ``write_poisoned_features``)."""
    f = synthetic_features
    after = write_poisoned_features(f, tmp_path / "features")
    build_training_set(f["labels"], tmp_path / "features", f["validated"], tmp_path / "t.parquet")
    assert_no_future_poison(pd.read_parquet(tmp_path / "t.parquet"), after)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 48), st.floats(-5, 5)), min_size=0, max_size=25
    ),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 60)), min_size=1, max_size=25),
    st.one_of(st.none(), st.integers(1, 30)),
)
def test_join_matches_brute_force(feature_rows, entity_rows, ttl_h):
    feats = pd.DataFrame(feature_rows, columns=["k", "h", "v"]).drop_duplicates(["k", "h"])
    feats = feats.assign(event_timestamp=feats["h"].map(_h))
    ent = pd.DataFrame(entity_rows, columns=["k", "h"]).assign(
        event_timestamp=lambda d: d["h"].map(_h)
    )
    ttl = None if ttl_h is None else pd.Timedelta(hours=ttl_h)
    out, found = point_in_time_join(
        ent[["k", "event_timestamp"]], feats[["k", "event_timestamp", "v"]], "k", ["v"], ttl=ttl
    )
    for i, (k, h) in enumerate(zip(ent["k"], ent["h"], strict=True)):
        ok = feats[
            (feats["k"] == k) & (feats["h"] <= h) & ((feats["h"] >= h - ttl_h) if ttl_h else True)
        ]
        if ok.empty:
            assert not found[i] and np.isnan(out["v"].iloc[i])
        else:
            assert found[i] and out["v"].iloc[i] == ok.sort_values("h")["v"].iloc[-1]
