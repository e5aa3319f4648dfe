"""The feature views built a range of entities at a time (``view_parts``, the default of
``build_feature_tables``) write the same files as the whole-table pandas builders
(``per_chunk=None``): same rows, same order, same values bit for bit, same pandas metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from checkout_recs.features.build import build_feature_tables
from checkout_recs.features.day_spill import DaySpill
from checkout_recs.features.item_views import row_index
from checkout_recs.features.tables import decayed_by_day, decayed_daily, snapshot_grid
from checkout_recs.features.view_parts import key_ranges, sorted_rows_of
from checkout_recs.simulate import SimConfig
from tests.fixtures_data import make_demo_dataset
from tests.fixtures_features import make_feature_inputs

VIEWS = ("user", "listing", "seller", "category_pair")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's size (5,000 listings), simulated, ingested and labelled."""
    return make_demo_dataset(tmp_path_factory.mktemp("view_parts_demo"), SimConfig(seed=11))


@pytest.fixture(scope="module")
def demo_whole(demo_run: Path) -> Path:
    """The demo's feature tables built whole (the plain-pandas reference)."""
    out = demo_run / "features_whole"
    build_feature_tables(demo_run / "ingested", demo_run / "labels", out, per_chunk=None)
    return out


def _assert_same_files(got: Path, want: Path) -> None:
    for view in VIEWS:
        a, b = pq.read_table(got / f"{view}.parquet"), pq.read_table(want / f"{view}.parquet")
        assert a.num_rows > 0, view
        assert a.schema.metadata == b.schema.metadata, view  # pandas metadata too
        assert a.equals(b), view
        pd.testing.assert_frame_equal(a.to_pandas(), b.to_pandas())
    report = json.loads((got / "build_report.json").read_text())
    assert report == json.loads((want / "build_report.json").read_text()) | {
        "views": {
            v: {**r, "path": str(got / f"{v}.parquet")}
            for v, r in json.loads((want / "build_report.json").read_text())["views"].items()
        }
    }


@pytest.mark.parametrize("per_chunk", [None, 1_999, 4_999])
def test_chunked_views_equal_the_whole_table_views_on_the_demo_data(
    demo_run, demo_whole, tmp_path, per_chunk
):
    if per_chunk is None:  # the default chunk size (bigger than the demo: one range)
        report = build_feature_tables(demo_run / "ingested", demo_run / "labels", tmp_path)
    else:
        report = build_feature_tables(
            demo_run / "ingested", demo_run / "labels", tmp_path, per_chunk=per_chunk
        )
    assert report["views"]["listing"]["entities"] == 5_000
    _assert_same_files(tmp_path, demo_whole)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # the spill folder is removed


def test_chunked_views_equal_the_whole_table_views_on_synthetic_edge_cases(tmp_path):
    validated, labels = make_feature_inputs(tmp_path)
    build_feature_tables(validated, labels, tmp_path / "whole", per_chunk=None)
    build_feature_tables(validated, labels, tmp_path / "parts", per_chunk=2)
    _assert_same_files(tmp_path / "parts", tmp_path / "whole")


def test_decayed_by_day_yields_decayed_daily_columns_bit_for_bit():
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    grid = snapshot_grid(start, start + pd.Timedelta(days=6))
    offsets = rng.uniform(-2 * 86_400, 9 * 86_400, 400)  # some before day 0, some after the grid
    ts = pd.Series(start + pd.to_timedelta(offsets, unit="s"))
    ent, w = rng.integers(0, 9, 400), rng.uniform(0.1, 3.0, 400)
    for weights in (None, w):
        want = decayed_daily(ent, ts, grid, 9, 5.0, weights)
        got = np.column_stack(list(decayed_by_day(ent, ts, grid, 9, 5.0, weights)))
        assert np.array_equal(got, want)
    empty = list(decayed_by_day(np.array([], int), pd.Series([], dtype=ts.dtype), grid, 4, 5.0))
    assert len(empty) == len(grid) and not np.any(empty)


def test_key_ranges_cover_every_row_and_never_split_a_key():
    keys = np.array([1, 1, 2, 3, 3, 3, 4, 7, 7, 9])
    for per in (1, 2, 3, 4, 100):
        ranges = key_ranges(keys, per)
        assert ranges[0][0] == 0 and ranges[-1][1] == len(keys)
        assert all(b0 == a1 for (_, b0), (a1, _) in zip(ranges, ranges[1:], strict=False))
        assert all(keys[b - 1] != keys[b] for _, b in ranges[:-1])
    assert key_ranges(np.array([], int), 5) == []


def test_day_spill_reads_back_ranges_in_the_write_order(tmp_path):
    order = np.array([2, 0, 3, 1])
    spill = DaySpill(tmp_path, order, days=2)
    spill.put("x", 0, np.array([10.0, 11.0, 12.0, 13.0]))
    spill.put("x", 1, np.array([20.0, 21.0, 22.0, 23.0]))
    assert np.array_equal(spill.block("x", 1, 3), [[10.0, 20.0], [13.0, 23.0]])


def test_sorted_rows_of_finds_the_rows_the_hash_index_finds():
    rng = np.random.default_rng(5)
    ids = pd.Series(rng.permutation(np.arange(0, 3_000, 3)))  # unique, unsorted
    keys = pd.Series(rng.integers(-5, 3_010, 2_000))  # some absent, below and above every id
    order = np.argsort(ids.to_numpy(), kind="stable")
    got = sorted_rows_of(ids.to_numpy()[order], order, keys)
    assert np.array_equal(got, row_index(ids, keys)) and (got == -1).any() and (got >= 0).any()
    none = sorted_rows_of(np.array([], np.int64), np.array([], np.int64), keys)
    assert np.array_equal(none, np.full(len(keys), -1))
