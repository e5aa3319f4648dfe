"""The out-of-core engine's ``local`` runner: the partitioned labelling and purchase sequences write
the same rows as the whole-table pandas ``build_labels``, whatever the bucket count; ``add_bucket``
partitions by key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.data.engine import (
    BUCKET,
    EngineConfig,
    add_bucket,
    build_parser,
    label_step,
    run_step,
    sequences_step,
    step_for,
)
from checkout_recs.data.labels import USER_SEQUENCES
from checkout_recs.simulate import SimConfig
from tests.fixtures_data import TINY, make_demo_dataset

KEY = ["request_id", "slot"]


def _sorted(path: Path) -> pd.DataFrame:
    df = pq.read_table(path, schema=contract.LABELLED_IMPRESSIONS).to_pandas()
    return df.sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated (the demo's size), ingested and labelled with the pandas path."""
    return make_demo_dataset(tmp_path_factory.mktemp("engine_demo"), SimConfig(seed=11))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny catalogue (1,500 listings, 300 users), labelled with the pandas path."""
    return make_demo_dataset(tmp_path_factory.mktemp("engine_tiny"), TINY)


@pytest.mark.parametrize("buckets", [1, 7])
def test_local_engine_labels_equal_the_pandas_labels_on_the_demo_data(demo_run, tmp_path, buckets):
    out = tmp_path / "impressions_labelled"
    report = run_step(label_step(), demo_run / "ingested", out, EngineConfig(buckets=buckets))
    expected = _sorted(demo_run / "labels" / "impressions_labelled.parquet")
    assert report.rows == len(expected) > 10_000
    assert len(list(out.glob("part-*.parquet"))) == buckets
    assert not Path(f"{out}.shuffle").exists()  # the shuffle folder is removed
    got = _sorted(out)
    pd.testing.assert_frame_equal(got, expected)
    assert got["clicked"].sum() > 0 and got["purchased"].sum() > 0  # both joins matched rows


@pytest.mark.parametrize("buckets", [1, 5])
def test_local_engine_sequences_equal_the_pandas_sequences_on_the_demo_data(
    demo_run, tmp_path, buckets
):
    out = tmp_path / "user_sequences"
    report = run_step(sequences_step(), demo_run / "ingested", out, EngineConfig(buckets=buckets))
    expected = pq.read_table(demo_run / "labels" / "user_sequences.parquet").sort_by("user_id")
    got = pq.read_table(out, schema=USER_SEQUENCES).sort_by("user_id")
    assert report.rows == expected.num_rows > 100
    assert got.equals(expected.cast(USER_SEQUENCES))


def test_more_buckets_than_users_leaves_empty_parts_and_the_same_rows(tiny_run, tmp_path):
    out = tmp_path / "labelled"
    cfg = EngineConfig(buckets=TINY.n_users + 20, batch_rows=500)
    report = run_step(label_step(), tiny_run / "ingested" / "validated", out, cfg)
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in out.glob("part-*.parquet")]
    assert len(sizes) == cfg.buckets and 0 in sizes
    expected = _sorted(tiny_run / "labels" / "impressions_labelled.parquet")
    assert report.rows == sum(sizes) == len(expected)
    pd.testing.assert_frame_equal(_sorted(out), expected)


def test_a_rerun_replaces_the_output_and_honours_the_window(tiny_run, tmp_path):
    out = tmp_path / "labelled"
    run_step(label_step(), tiny_run / "ingested", out, EngineConfig(buckets=5))
    run_step(label_step(window_s=1), tiny_run / "ingested", out, EngineConfig(buckets=3))
    assert len(list(out.glob("part-*.parquet"))) == 3  # the first run's parts went
    got = _sorted(out)
    full = _sorted(tiny_run / "labels" / "impressions_labelled.parquet")
    assert len(got) == len(full) and (got["clicked"] == full["clicked"]).all()
    assert got["purchased"].sum() < full["purchased"].sum()  # a 1 s window attributes fewer


def test_add_bucket_casts_to_the_schema_and_partitions_by_the_key():
    schema = contract.CLICKS
    batch = pa.table(
        {
            "listing_id": pa.array([7, 8, 9], pa.int64()),
            "user_id": pa.array([0, 5, 12], pa.int64()),
            "request_id": ["a", "b", "c"],
            "event_timestamp": pa.array([0, 1, 2], pa.timestamp("ms", tz="UTC")),
            "extra": [1, 2, 3],
        }
    )
    out = add_bucket(batch, "user_id", 5, schema)
    assert out.schema.names == [*schema.names, BUCKET]
    assert out.schema.field("event_timestamp").type == contract.TS
    np.testing.assert_array_equal(out.column(BUCKET).to_numpy(), [0, 0, 2])


def test_the_entry_point_defaults_to_ray_on_the_cluster():
    args = build_parser().parse_args(["--step", "labels", "--validated", "s3://b/i", "--out", "o"])
    assert (args.runner, args.address, args.buckets) == ("ray", "auto", 16)
    assert step_for("sequences").name == "sequences" and step_for("labels", 5).name == "labels"
    with pytest.raises(ValueError, match="step must be one of"):
        step_for("features")
