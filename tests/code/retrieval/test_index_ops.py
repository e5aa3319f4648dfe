"""Units of the index's array helpers: merging shard results, keeping snapshot dtypes on
append, row-sliced ``.npy`` and parquet writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from checkout_recs.retrieval.index_ops import (
    MappedRows,
    concat_rows,
    save_frame_rows,
    save_rows,
    top_per_query,
)


def test_top_per_query_merges_shards_best_first_missing_last():
    ids = np.array([[5, -1, 7, 9]])
    sc = np.array([[0.2, 9.0, 0.8, 0.2]], np.float32)
    got, s = top_per_query(ids, sc, 3)
    assert got.tolist() == [[7, 5, 9]] and s.tolist()[0][0] == np.float32(0.8)


def test_concat_rows_keeps_categorical_and_numeric_dtypes():
    base = pd.DataFrame({"region": pd.Categorical(["eu"]), "age": np.float32([1.0])})
    out = concat_rows(base, [pd.DataFrame({"region": ["us"], "age": [2.5]})])
    assert isinstance(out["region"].dtype, pd.CategoricalDtype) and out["age"].dtype == np.float32
    assert out["region"].tolist() == ["eu", "us"]


def test_save_rows_writes_the_selected_rows_in_blocks(tmp_path):
    a = np.arange(20, dtype=np.float16).reshape(10, 2)
    save_rows(tmp_path / "x.npy", a, np.array([0, 3, 4, 9]), block=3)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), a[[0, 3, 4, 9]])


def _snapshot_like(n: int) -> pd.DataFrame:
    """A frame with the dtypes a listing snapshot has (nullable ints, strings, floats, UTC times)
    plus a categorical, with missing values."""
    rng = np.random.default_rng(3)
    ids = pd.array(np.arange(n) * 7, dtype="Int64")
    ids[::5] = pd.NA
    title = pd.array([f"t{i}" for i in range(n)], dtype="string")
    title[1::4] = pd.NA
    return pd.DataFrame(
        {
            "listing_id": ids,
            "title": title,
            "price": rng.random(n),
            "score": rng.random(n).astype(np.float32),
            "top_category_id": np.arange(n, dtype=np.int32),
            "listed_at": pd.Timestamp("2026-10-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
            "tier": pd.Categorical(rng.choice(["a", "b", "c"], n)),
        }
    )


@pytest.mark.parametrize("block", [1, 3, 1 << 20])
@pytest.mark.parametrize("pick", ["all", "some", "none"])
def test_save_frame_rows_reads_back_as_the_whole_frame_written_at_once(
    tmp_path: Path, block: int, pick: str
) -> None:
    frame = _snapshot_like(11)
    rows = {"all": None, "some": np.array([0, 2, 3, 9, 10]), "none": np.empty(0, np.int64)}[pick]
    save_frame_rows(tmp_path / "blocks.parquet", frame, rows, block)
    whole = frame if rows is None else frame.iloc[rows]
    whole.reset_index(drop=True).to_parquet(tmp_path / "whole.parquet", index=False)
    got, expected = (
        pd.read_parquet(tmp_path / "blocks.parquet"),
        pd.read_parquet(tmp_path / "whole.parquet"),
    )
    pd.testing.assert_frame_equal(got, expected)
    assert pq.read_schema(tmp_path / "blocks.parquet").equals(
        pq.read_schema(tmp_path / "whole.parquet"), check_metadata=True
    )
    n = len(whole)
    groups = pq.ParquetFile(tmp_path / "blocks.parquet").metadata.num_row_groups
    assert groups == max(1, -(-n // block))  # converted and written a block at a time


def test_save_frame_rows_writes_a_frame_with_object_columns_whole(tmp_path: Path) -> None:
    frame = _snapshot_like(6).assign(flag=[True, None, False, True, None, True])
    save_frame_rows(tmp_path / "f.parquet", frame, np.array([1, 4]), block=1)
    expected = frame.iloc[[1, 4]].reset_index(drop=True)
    expected.to_parquet(tmp_path / "e.parquet", index=False)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "f.parquet"), pd.read_parquet(tmp_path / "e.parquet")
    )
    assert pd.read_parquet(tmp_path / "f.parquet")["flag"].dtype == object  # only Nones: inferred


def test_mapped_rows_read_what_the_file_holds(tmp_path):
    """``MappedRows`` gives the rows of a raw file and of an ``.npy`` file as copies, for an int,
    a slice and an array of rows, and holds no map between reads."""
    arr = np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32)
    arr.tofile(tmp_path / "raw.f32")
    np.save(tmp_path / "a.npy", arr)
    rows = np.array([999, 3, 3, 500])
    for m in (
        MappedRows(tmp_path / "raw.f32", np.float32, arr.shape),
        MappedRows.npy(tmp_path / "a.npy"),
    ):
        assert len(m) == 1000 and m.shape == arr.shape and m.dtype == np.float32
        np.testing.assert_array_equal(m[rows], arr[rows])
        np.testing.assert_array_equal(m[10:20], arr[10:20])
        np.testing.assert_array_equal(m[7], arr[7])
        out = m[:5]
        assert isinstance(out, np.ndarray) and not isinstance(out, np.memmap)
        out[:] = 0  # a copy: the file is untouched
        np.testing.assert_array_equal(m[:5], arr[:5])
