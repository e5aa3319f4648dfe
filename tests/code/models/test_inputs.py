"""``listing_snapshot`` reads the listing and seller views a key range at a time; its frame is
the whole-view path's (each view read whole, ``latest_per_entity``), value for value, dtype for
dtype, row for row, on the demo's feature views. ``iter_listing_snapshot``'s blocks are its rows,
block by block, also where listings miss their content or seller rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from checkout_recs.features import view_latest
from checkout_recs.models.inputs import (
    find_validated_listings,
    iter_listing_snapshot,
    latest_per_entity,
    listing_snapshot,
    read_table,
)
from tests.fixtures_features import demo_features, missing_joined_rows  # noqa: F401


def whole_view_snapshot(features_dir: Path, labels_dir: Path) -> pd.DataFrame:
    """The reference: ``listing_snapshot`` as it was, every view read whole."""
    feats = latest_per_entity(read_table(features_dir / "listing.parquet"), "listing_id")
    snapshot_time = pd.to_datetime(feats["event_timestamp"], utc=True).max()
    feats = feats.drop(columns=["event_timestamp"])
    found = find_validated_listings(features_dir, labels_dir)
    assert found is not None
    listings = read_table(found)
    extra = [c for c in ("title", "quantity", "listed_at") if c in listings]
    feats = feats.merge(
        listings[["listing_id", *extra]].drop_duplicates("listing_id"), on="listing_id", how="left"
    )
    feats["title"] = feats["title"].fillna("")
    sellers = latest_per_entity(read_table(features_dir / "seller.parquet"), "seller_id")
    feats = feats.merge(sellers.drop(columns=["event_timestamp"]), on="seller_id", how="left")
    feats["snapshot_time"] = snapshot_time
    return feats.sort_values("listing_id").reset_index(drop=True)


@pytest.mark.parametrize("range_rows", [1_000, view_latest.RANGE_ROWS])
def test_listing_snapshot_equals_the_whole_view_path(
    demo_features,
    monkeypatch: pytest.MonkeyPatch,
    range_rows: int,  # noqa: F811
) -> None:
    monkeypatch.setattr(view_latest, "RANGE_ROWS", range_rows)
    features, labels = demo_features["features"], demo_features["labels"]
    got = listing_snapshot(features, labels_dir=labels)
    expected = whole_view_snapshot(features, labels)
    assert len(got) > 1000 and got["title"].ne("").all()
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("block_rows", [97, 1 << 20])
def test_snapshot_blocks_are_the_snapshot_rows(
    demo_features,
    monkeypatch: pytest.MonkeyPatch,
    block_rows: int,  # noqa: F811
) -> None:
    monkeypatch.setattr(view_latest, "RANGE_ROWS", 1_000)
    features, labels = demo_features["features"], demo_features["labels"]
    expected = listing_snapshot(features, labels_dir=labels)
    blocks = list(iter_listing_snapshot(features, labels_dir=labels, block_rows=block_rows))
    assert [len(b) for b in blocks[:-1]] == [block_rows] * (len(blocks) - 1)
    assert len(blocks) == (1 if block_rows > len(expected) else -(-len(expected) // block_rows))
    for block in blocks:
        pd.testing.assert_series_equal(block.dtypes, expected.dtypes)
        assert block.index.equals(pd.RangeIndex(len(block)))
    pd.testing.assert_frame_equal(pd.concat(blocks, ignore_index=True), expected)


def test_snapshot_blocks_where_listings_miss_their_joined_rows(
    demo_features,
    tmp_path: Path,  # noqa: F811
) -> None:
    """A block with a listing that misses its content or seller row has float64 / object joined
    columns, the other blocks their own dtypes; together, the whole frame's values."""
    full = listing_snapshot(demo_features["features"], labels_dir=demo_features["labels"])
    features, labels = missing_joined_rows(demo_features, tmp_path)
    expected = listing_snapshot(features, labels_dir=labels)
    assert expected["title"].eq("").sum() >= 5
    turned = [c for c in expected if expected[c].dtype != full[c].dtype]
    assert turned and all(expected[c].dtype in ("float64", object) for c in turned)
    blocks = list(iter_listing_snapshot(features, labels_dir=labels, block_rows=200))
    assert all(blocks[0][c].dtype == full[c].dtype for c in turned)  # no listing missing
    assert all(blocks[-1][c].dtype == expected[c].dtype for c in turned)
    pd.testing.assert_frame_equal(pd.concat(blocks, ignore_index=True), expected)


def test_left_join_columns_is_a_left_merge_in_place() -> None:
    """Values, dtypes and row order of ``merge(how="left")`` on a many-to-one key: matched rows,
    a key the right side lacks (int → float64, bool → object, nullable and datetime missing), a
    key repeated on the left, left rows not in key order."""
    from checkout_recs.models.inputs import left_join_columns

    left = pd.DataFrame(
        {"seller_id": pd.array([3, 1, 7, 3, 1], dtype="Int64"), "x": [0.5, 1.5, 2.5, 3.5, 4.5]}
    )
    right = pd.DataFrame(
        {
            "seller_id": pd.array([1, 3, 5], dtype="Int64"),
            "n": [10, 30, 50],
            "flag": [True, False, True],
            "score": pd.array([1, None, 5], dtype="Int64"),
            "since": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"], utc=True),
            "name": pd.array(["a", "c", "e"], dtype="string"),
        }
    )
    expected = left.merge(right, on="seller_id", how="left")
    got = left.copy()
    left_join_columns(got, right, "seller_id")
    pd.testing.assert_frame_equal(got, expected)
    assert got["n"].dtype == "float64" and got["flag"].dtype == object  # key 7 is missing

    every = left[left["seller_id"] != 7].reset_index(drop=True)
    expected = every.merge(right, on="seller_id", how="left")
    left_join_columns(every, right, "seller_id")
    pd.testing.assert_frame_equal(every, expected)
    assert every["n"].dtype == "int64" and every["flag"].dtype == bool  # every key matched


def test_left_join_columns_refuses_a_column_both_frames_hold() -> None:
    from checkout_recs.models.inputs import left_join_columns

    left = pd.DataFrame({"k": [1, 2], "v": [1.0, 2.0]})
    with pytest.raises(ValueError, match="v"):
        left_join_columns(left, pd.DataFrame({"k": [1], "v": [3.0]}), "k")
    assert list(left.columns) == ["k", "v"]


def test_snapshot_blocks_take_the_snapshot_time_of_the_latest_rows_when_a_time_is_missing(
    demo_features,
    tmp_path: Path,  # noqa: F811
) -> None:
    """A missing ``event_timestamp`` counts as a listing's newest row: ``snapshot_time`` is then
    the newest time among the latest rows (here: the newest listing's only row is the missing
    one, so the column's maximum belongs to no latest row), as ``listing_snapshot`` takes it."""
    features = tmp_path / "features"
    features.mkdir()
    listing = pd.read_parquet(demo_features["features"] / "listing.parquet")
    newest = listing["event_timestamp"] == listing["event_timestamp"].max()
    listing.loc[newest, "event_timestamp"] = listing["event_timestamp"].max() - pd.Timedelta(days=1)
    last = listing["listing_id"].max()
    listing.loc[listing["listing_id"] == last, "event_timestamp"] = listing[
        "event_timestamp"
    ].max() + pd.Timedelta(days=3)
    extra = listing[listing["listing_id"] == last].tail(1).assign(event_timestamp=pd.NaT)
    pd.concat([listing, extra], ignore_index=True).to_parquet(
        features / "listing.parquet", index=False
    )
    shutil.copy(demo_features["features"] / "seller.parquet", features / "seller.parquet")
    labels = demo_features["labels"]
    expected = listing_snapshot(features, labels_dir=labels)
    blocks = list(iter_listing_snapshot(features, labels_dir=labels, block_rows=500))
    got = pd.concat(blocks, ignore_index=True)
    column_max = pd.to_datetime(listing["event_timestamp"], utc=True).max()
    assert expected["snapshot_time"].iloc[0] < column_max  # the case the fallback exists for
    pd.testing.assert_frame_equal(got, expected)
