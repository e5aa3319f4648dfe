"""Point-in-time join and training set: no value from after an impression reaches its row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.features.pit import point_in_time_join
from checkout_recs.features.training import (
    NUMERIC_FEATURE_COLUMNS,
    TRAINING_FEATURE_COLUMNS,
    VIEW_DEFAULTS,
    build_training_set,
)
from tests.fixtures_features import synthetic_features  # noqa: F401

T0 = pd.Timestamp("2026-03-01", tz="UTC")


def _h(hours: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hours)


def test_join_takes_latest_row_at_or_before_and_keeps_order():
    feats = pd.DataFrame({"k": [1, 1, 1, 2], "event_timestamp": [_h(0), _h(10), _h(20), _h(5)], "v": [1.0, 2.0, 3.0, 9.0]})
    ent = pd.DataFrame({"k": [1, 2, 1, 1, 3, 2], "event_timestamp": [_h(15), _h(4), _h(10), _h(30), _h(1), _h(6)]})
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
    assert list(df.columns) == contract.field_names(contract.LABELLED_IMPRESSIONS) + list(TRAINING_FEATURE_COLUMNS)
    assert df[list(NUMERIC_FEATURE_COLUMNS)].notna().all().all()
    # impressions on the first day precede every end-of-day snapshot: counted, defaulted, kept
    first_day = (df["event_timestamp"] < T0 + pd.Timedelta(days=1)).sum()
    assert rep.missing_by_view["user"] >= first_day > 0
    defaulted = df[df["event_timestamp"] < T0 + pd.Timedelta(days=1)]
    assert (defaulted["user_n_purchases"] == VIEW_DEFAULTS["user"]["n_purchases"]).all()


def test_no_value_from_after_an_impression_reaches_its_row(synthetic_features, tmp_path):  # noqa: F811
    """Poison every view with a row 1 us after each impression, its value encoding that time.

    A poison row is legitimately visible to later impressions of the same entity, so each row
    may only carry poison stamped at or before its own time, and never its own impression's.
    """
    f = synthetic_features
    feats = tmp_path / "features"
    feats.mkdir()
    imp = pd.read_parquet(f["labels"] / "impressions_labelled.parquet")
    listings = pd.read_parquet(f["validated"] / "listings")
    imp = imp.merge(listings[["listing_id", "seller_id"]], on="listing_id", how="left")
    after = (imp["event_timestamp"] + pd.Timedelta(microseconds=1)).reset_index(drop=True)
    code = np.arange(len(imp))
    for view, key, col, value in (("user", "user_id", "n_purchases", 10**9 + code),
                                  ("listing", "listing_id", "views_decayed", -1.0 - code),
                                  ("seller", "seller_id", "seller_sales_velocity", -1.0 - code)):
        base = pd.read_parquet(f["features"] / f"{view}.parquet")
        rows = base.drop_duplicates(key).set_index(key).reindex(imp[key]).reset_index()
        rows[col], rows["event_timestamp"] = value, after.to_numpy()
        pd.concat([base, rows.dropna(subset=["event_timestamp"])]).to_parquet(feats / f"{view}.parquet")
    (feats / "category_pair.parquet").write_bytes((f["features"] / "category_pair.parquet").read_bytes())
    build_training_set(f["labels"], feats, f["validated"], tmp_path / "t.parquet")
    df = pd.read_parquet(tmp_path / "t.parquet")
    seen = 0
    for col, decode in (("user_n_purchases", lambda v: v - 10**9), ("listing_views_decayed", lambda v: -v - 1),
                        ("seller_sales_velocity", lambda v: -v - 1)):
        poisoned = (df[col] >= 10**9) if col == "user_n_purchases" else (df[col] < 0)
        src = decode(df.loc[poisoned, col]).astype(int).to_numpy()
        assert (after.iloc[src].to_numpy() <= df.loc[poisoned, "event_timestamp"].to_numpy()).all(), col
        assert not (src == df.index[poisoned].to_numpy()).any(), col
        seen += int(poisoned.sum())
    assert seen > 0  # the poison is reachable at all: the check above can fail
