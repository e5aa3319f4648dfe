"""``RankerInputPlan.build`` equals ``ranker_matrix`` on the full frame, column for column, whatever
the order of the item / request / pair columns and whatever the values (None, NaN, inf); and the
helpers that prepare its column plan once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checkout_recs.models.ranker_features import LOG_FEATURES, ranker_matrix
from checkout_recs.serving.ranker_input import RankerInputPlan, _columns, _plain, _plain_block

N = 40
TS = pd.Timestamp("2026-12-07T12:34:00", tz="UTC")
ITEM = ["take_rate", "log_price", "age_days", "views_decayed"]
REQUEST = ["n_purchases", "avg_price_paid", "mobile_share", "basket_size", "basket_price"]
DERIVED_REQUEST = ["hour_sin", "device_ios"]
PAIR = ["complement_strength", "price_ratio", "same_category"]
DERIVED_PAIR = ["price_to_user_avg", "same_top_category_as_user"]

#: feature orders: item columns consecutive (a slice) or spread (an index array)
ORDERS = {
    "grouped": ITEM + REQUEST + DERIVED_REQUEST + PAIR + DERIVED_PAIR,
    "interleaved": [
        "n_purchases",
        "take_rate",
        "hour_sin",
        "complement_strength",
        "log_price",
        "price_to_user_avg",
        "avg_price_paid",
        "age_days",
        "price_ratio",
        "basket_size",
        "device_ios",
        "views_decayed",
        "same_top_category_as_user",
        "mobile_share",
        "same_category",
        "basket_price",
    ],
}

#: user rows: plain values; None / non-finite values (a user without a row gets no matrix at all)
USERS = {
    "plain": {"n_purchases": 4, "avg_price_paid": 31.5, "mobile_share": 0.25, "top_category_id": 2},
    "odd": {
        "n_purchases": None,
        "avg_price_paid": np.nan,
        "mobile_share": np.inf,
        "top_category_id": None,
    },
}


def _snapshot() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    price = rng.uniform(1.0, 200.0, N)  # every listing priced (the catalogue requires one)
    return pd.DataFrame(
        {
            "listing_id": np.arange(1000, 1000 + N),
            "price": price,
            "take_rate": rng.uniform(0.05, 0.2, N),
            "age_days": rng.integers(0, 400, N).astype(float),
            "views_decayed": rng.exponential(5.0, N),
            "top_category_id": rng.integers(0, 4, N),
        }
    )


def _reference(
    snap: pd.DataFrame,
    names: list[str],
    rows: np.ndarray,
    user: dict | None,
    request: dict,
    pair: dict,
    device: str,
) -> np.ndarray:
    """``ranker_matrix`` on one frame holding everything (what ``ranker_input_reference`` does)."""
    frame = snap.iloc[rows].reset_index(drop=True)
    extra = {"device": device, "event_timestamp": TS, **request, **pair}
    for k, v in (user or {}).items():
        extra["user_top_category_id" if k == "top_category_id" else k] = v
    return ranker_matrix(frame.assign(**extra), names)


@pytest.mark.parametrize("order", sorted(ORDERS))
@pytest.mark.parametrize("user", sorted(USERS))
@pytest.mark.parametrize("device", ["ios", "android"])
def test_build_equals_ranker_matrix_on_the_full_frame(order, user, device):
    snap, names = _snapshot(), ORDERS[order]
    plan = RankerInputPlan(names, snap)
    rows = np.array([5, 3, 0, 17, 39, 3, 8], np.int64)
    request = {"basket_size": 2.0, "basket_price": np.inf}
    pair = {
        "complement_strength": np.linspace(0.0, 3.0, len(rows)),
        "price_ratio": np.array([0.5, np.nan, 1.0, 2.0, -np.inf, 1.5, 0.1]),
        "same_category": np.array([1, 0, 0, 1, 0, 1, 0], np.int64),
    }
    got = plan.build(rows, USERS[user], device, TS, request, pair)
    want = _reference(snap, names, rows, USERS[user], request, pair, device)
    assert got.dtype == np.float32 and got.shape == (len(rows), len(names))
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).all()


def test_build_without_the_interaction_features_gives_zero_columns():
    snap, names = _snapshot(), ORDERS["interleaved"]
    plan = RankerInputPlan(names, snap)
    rows = np.arange(6, dtype=np.int64)
    got = plan.build(rows, USERS["plain"], "ios", TS, {}, {})
    for name in ("complement_strength", "price_ratio", "same_category", "basket_size"):
        assert (got[:, names.index(name)] == 0.0).all()


def test_the_item_columns_are_a_slice_when_consecutive():
    grouped = RankerInputPlan(ORDERS["grouped"], _snapshot())
    interleaved = RankerInputPlan(ORDERS["interleaved"], _snapshot())
    assert grouped._item_cols == slice(0, len(ITEM))
    assert isinstance(interleaved._item_cols, np.ndarray)


@pytest.mark.parametrize(
    ("idx", "want"),
    [([2, 3, 4], slice(2, 5)), ([7], slice(7, 8)), ([0, 2, 3], [0, 2, 3]), ([3, 2], [3, 2])],
)
def test_columns(idx, want):
    got = _columns(idx)
    if isinstance(want, slice):
        assert got == want
    else:
        np.testing.assert_array_equal(got, want)


def test_plain_block_equals_plain_column_by_column():
    names = ["n_purchases", "mobile_share", "avg_price_paid", "basket_size"]
    x = np.array([[3.0, 0.5, 10.0, 2.0], [np.nan, np.inf, -1.0, 0.0], [1e30, 0.1, 7.25, -np.inf]])
    log = np.array([n in LOG_FEATURES for n in names])
    got = _plain_block(x.astype(np.float32), log)
    for j, name in enumerate(names):
        np.testing.assert_array_equal(got[:, j], _plain(name, x[:, j]))
