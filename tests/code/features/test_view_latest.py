"""``latest_rows`` keeps the rows, columns and dtypes of the whole-file path
(``latest_per_entity(pd.read_parquet(path), key)``), sorted by key, whatever the range size:
on a file that is not sorted, with ties on the time, missing times, nulls only in rows that are
not kept, a folder of parts, and on the demo's feature views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from checkout_recs.features.view_latest import iter_latest_rows, key_range_filters, latest_rows
from checkout_recs.models.inputs import latest_per_entity
from tests.fixtures_features import demo_features  # noqa: F401


def whole_file(path: Path, key: str) -> pd.DataFrame:
    """The reference: the file read whole, the newest row per key, sorted by key."""
    out = latest_per_entity(pd.read_parquet(path), key)
    return out.sort_values(key, kind="stable").reset_index(drop=True)


def _view(n_keys: int, days: int, seed: int) -> pd.DataFrame:
    """A view-like frame: shuffled rows, duplicated (key, time) pairs with different values, a
    missing time, and an int / bool column whose only nulls sit in rows that are not newest."""
    rng = np.random.default_rng(seed)
    keys = np.repeat(np.arange(n_keys, dtype=np.int64) * 7 + 3, days)
    t = pd.Timestamp("2026-10-01", tz="UTC") + pd.to_timedelta(
        np.tile(np.arange(days), n_keys), "D"
    )
    df = pd.DataFrame({"entity_id": keys, "event_timestamp": t.astype("datetime64[us, UTC]")})
    df["value"] = rng.normal(size=len(df))
    df["label"] = [f"v{i}" for i in range(len(df))]
    df["count"] = pd.array(rng.integers(0, 100, len(df)), dtype="Int64")
    df["flag"] = pd.array(rng.integers(0, 2, len(df)).astype(bool), dtype="boolean")
    oldest = df["event_timestamp"] == df["event_timestamp"].min()
    df.loc[oldest & (df["entity_id"] % 2 == 1), ["count", "flag"]] = pd.NA
    df.loc[len(df) // 2 + days // 2, "event_timestamp"] = pd.NaT  # a missing time: the newest
    dup = df[df["event_timestamp"] == df["event_timestamp"].max()].head(5).copy()
    dup["value"] = -1.0  # ties on the time, later in the file: these rows win
    return pd.concat([df.sample(frac=1.0, random_state=seed), dup], ignore_index=True)


@pytest.mark.parametrize("pandas_metadata", [True, False])
@pytest.mark.parametrize("range_rows", [1, 37, 10**9])
def test_latest_rows_equal_the_whole_file_path(
    tmp_path: Path, range_rows: int, pandas_metadata: bool
) -> None:
    path = tmp_path / "view.parquet"
    table = pa.Table.from_pandas(_view(120, 9, seed=3), preserve_index=False)
    if not pandas_metadata:  # no nullable dtypes named: int -> float64, bool -> object
        table = table.replace_schema_metadata(None)
    pq.write_table(table, path, row_group_size=50)
    expected = whole_file(path, "entity_id")
    got = latest_rows(path, "entity_id", range_rows=range_rows)
    pd.testing.assert_frame_equal(got, expected)
    want = ("Int64", "boolean") if pandas_metadata else (np.float64, object)
    assert (expected["count"].dtype, expected["flag"].dtype) == want
    assert expected["count"].notna().all() and (got["value"] == -1.0).sum() == 5
    parts = list(iter_latest_rows(path, "entity_id", range_rows=range_rows))
    assert (len(parts) == 1) if range_rows > 10**6 else (len(parts) > 1)
    for part in parts:  # each range has the whole file's dtypes, not its own rows'
        pd.testing.assert_series_equal(part.dtypes, expected.dtypes)
        assert part.index.equals(pd.RangeIndex(len(part)))
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), expected)


def test_latest_rows_of_a_folder_of_parts(tmp_path: Path) -> None:
    df = _view(60, 5, seed=4)
    (tmp_path / "view").mkdir()
    for i, a in enumerate(range(0, len(df), 100)):
        df.iloc[a : a + 100].to_parquet(tmp_path / "view" / f"part-{i}.parquet", index=False)
    got = latest_rows(tmp_path / "view", "entity_id", range_rows=40)
    pd.testing.assert_frame_equal(got, whole_file(tmp_path / "view", "entity_id"))


def test_key_ranges_cover_every_row_once(tmp_path: Path) -> None:
    path = tmp_path / "view.parquet"
    pq.write_table(pa.Table.from_pandas(_view(100, 4, seed=5)), path, row_group_size=30)
    dataset = ds.dataset(path, format="parquet")
    filters = key_range_filters(dataset, "entity_id", 45)
    assert len(filters) > 1
    counts = [dataset.count_rows(filter=f) for f in filters]
    assert sum(counts) == dataset.count_rows() and max(counts) < 100


def test_latest_rows_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        latest_rows(tmp_path / "absent.parquet", "entity_id")


@pytest.mark.parametrize(
    ("view", "key"), [("listing", "listing_id"), ("seller", "seller_id"), ("user", "user_id")]
)
def test_latest_rows_of_the_demo_views(demo_features, view: str, key: str) -> None:  # noqa: F811
    path = demo_features["features"] / f"{view}.parquet"
    got = latest_rows(path, key, range_rows=500)
    pd.testing.assert_frame_equal(got, whole_file(path, key))
