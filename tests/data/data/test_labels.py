"""Labels: purchase attribution, and point-in-time correctness of the daily snapshots."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.data.labels import (
    LabelConfig,
    build_labels,
    co_purchase_events,
    decayed_snapshots,
    label_impressions,
    negative_samples,
)
from tests.fixtures_data import make_demo_dataset

T0 = pd.Timestamp("2026-10-01 12:00", tz="UTC")


def _imp(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "order_id": None,
            "user_id": 1,
            "listing_id": np.arange(10, 10 + n),
            "slot": np.arange(n) % 6,
            "policy": "p",
            "propensity": 0.5,
            "region": "north",
            "device": "web",
            "event_timestamp": T0,
        }
    )


def test_purchase_is_attributed_only_after_the_click_and_within_the_window() -> None:
    imp = _imp(4)
    clicks = pd.DataFrame(
        {
            "request_id": ["r0", "r1", "r2"],
            "user_id": 1,
            "listing_id": [10, 11, 12],
            "event_timestamp": T0 + pd.Timedelta(minutes=1),
        }
    )
    purchases = pd.DataFrame(
        {
            "purchase_id": ["a", "b", "c", "d"],
            "user_id": 1,
            "listing_id": [10, 11, 12, 13],
            "price": 5.0,
            "event_timestamp": [
                T0 + pd.Timedelta(minutes=5),  # attributed
                T0 - pd.Timedelta(minutes=5),  # before the click
                T0 + pd.Timedelta(days=3),  # after the window
                T0 + pd.Timedelta(minutes=5),
            ],
        }
    )  # never clicked
    listings = pd.DataFrame(
        {"listing_id": [10, 11, 12, 13], "price": [1.0, 2.0, 3.0, 4.0], "take_rate": 0.1}
    )
    lab = label_impressions(imp, clicks, purchases, listings, LabelConfig().purchase_window_s)
    assert lab.clicked.tolist() == [1, 1, 1, 0]
    assert lab.purchased.tolist() == [1, 0, 0, 0]
    assert lab.price.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert list(lab.columns) == contract.field_names(contract.LABELLED_IMPRESSIONS)


def test_decayed_strength_uses_only_events_up_to_the_snapshot() -> None:
    events = pd.DataFrame(
        {
            "a": [1, 1, 1],
            "b": [2, 2, 2],
            "event_timestamp": [T0, T0 + pd.Timedelta(days=1), T0 + pd.Timedelta(days=3)],
        }
    )
    snaps = decayed_snapshots(events, half_life_days=2.0, min_strength=0.0)
    first_midnight = T0.floor("D") + pd.Timedelta(days=1)
    s1 = snaps.loc[snaps.event_timestamp == first_midnight, "strength"].item()
    assert s1 == pytest.approx(2 ** (-0.5 / 2.0))  # one event, half a day old
    s2 = snaps.loc[
        snaps.event_timestamp == first_midnight + pd.Timedelta(days=1), "strength"
    ].item()
    assert s2 == pytest.approx(2 ** (-1.5 / 2.0) + 2 ** (-0.5 / 2.0))
    assert snaps.event_timestamp.nunique() == 4


def test_co_purchase_events_are_ordered_pairs_of_one_user_within_the_window() -> None:
    buys = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "listing_id": [10, 11, 12, 13],
            "event_timestamp": [T0, T0, T0 + pd.Timedelta(days=10), T0],
        }
    )
    ev = co_purchase_events(buys, window_days=7)
    assert sorted(zip(ev.a, ev.b, strict=True)) == [
        (10, 11),
        (11, 10),
    ]  # same basket both ways; 12 too late


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("labels"))


def test_snapshots_do_not_change_when_later_events_are_removed(run: Path, tmp_path: Path) -> None:
    """Point-in-time: cutting every event after T leaves every row stamped <= T unchanged."""
    full = run / "labels"
    pairs = pq.read_table(full / "category_pairs.parquet").to_pandas()
    cut = sorted(pairs.event_timestamp.unique())[1]  # end of the second day
    truncated = tmp_path / "ingested" / "validated"
    shutil.copytree(run / "ingested" / "validated", truncated)
    for table in ("orders", "clicks", "purchases", "impressions"):
        df = pq.read_table(truncated / table).to_pandas()
        keep = df[df.event_timestamp <= cut]
        assert len(keep) < len(df)
        shutil.rmtree(truncated / table)
        (truncated / table).mkdir()
        pq.write_table(
            pq.read_table(run / "ingested" / "validated" / table).from_pandas(
                keep, schema=contract.RAW_TABLES[table], preserve_index=False
            ),
            truncated / table / "part-00000.parquet",
        )
    build_labels(truncated.parent, tmp_path / "labels")
    for name in ("category_pairs", "co_purchase_items"):
        a = pq.read_table(full / f"{name}.parquet").to_pandas()
        b = pq.read_table(tmp_path / "labels" / f"{name}.parquet").to_pandas()
        a, b = (
            x[x.event_timestamp <= cut]
            .sort_values(list(x.columns[:2]) + ["event_timestamp"])
            .reset_index(drop=True)
            for x in (a, b)
        )
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b)


def test_labels_carry_propensities_through(run: Path) -> None:
    lab = pq.read_table(run / "labels" / "impressions_labelled.parquet").to_pandas()
    raw = pq.read_table(run / "ingested" / "validated" / "impressions").to_pandas()
    merged = raw.merge(lab, on=["request_id", "slot"], suffixes=("", "_lab"))
    assert len(merged) == len(raw)
    assert np.array_equal(merged.propensity.to_numpy(), merged.propensity_lab.to_numpy())
    assert lab.clicked.sum() == pq.read_table(run / "ingested" / "validated" / "clicks").num_rows


def test_negatives_are_point_in_time_same_region_and_never_the_positive(run: Path) -> None:
    neg = pq.read_table(run / "labels" / "negatives.parquet").to_pandas()
    listings = pq.read_table(run / "ingested" / "validated" / "listings").to_pandas()
    users = pq.read_table(run / "ingested" / "validated" / "users").to_pandas()
    m = neg.merge(
        listings[["listing_id", "listed_at", "region"]],
        left_on="negative_listing_id",
        right_on="listing_id",
        suffixes=("", "_neg"),
    ).merge(users[["user_id", "region"]], on="user_id", suffixes=("_listing", "_user"))
    assert len(m) == len(neg) > 0
    assert (m.listed_at <= m.event_timestamp).all()
    assert (m.region_listing == m.region_user).all()
    assert (neg.listing_id != neg.negative_listing_id).all()


def test_negatives_include_a_listing_listed_at_the_event_instant_whatever_the_time_units() -> None:
    """``side="right"``: listed at the positive's very instant counts as listed before it; the
    listings' times in microseconds and the positives' in nanoseconds, one in another zone."""
    listed = pd.Series(
        [T0 - pd.Timedelta(hours=1), T0, T0 + pd.Timedelta(seconds=1), T0 - pd.Timedelta(days=1)]
    ).dt.as_unit("us")
    listings = pd.DataFrame(
        {"listing_id": [1, 2, 3, 4], "region": ["eu", "eu", "eu", "us"], "listed_at": listed}
    )
    users = pd.DataFrame({"user_id": [9], "region": ["eu"]})
    positives = pd.DataFrame(
        {
            "user_id": [9],
            "listing_id": [1],
            "event_timestamp": pd.Series([T0]).dt.tz_convert("Europe/Paris").dt.as_unit("ns"),
        }
    )
    neg = negative_samples(positives, listings, users, k=40, seed=3)
    assert set(neg["negative_listing_id"]) == {2}  # 1 is the positive, 3 comes later, 4 is "us"
    assert len(neg) == 40
