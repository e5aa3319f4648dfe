"""The out-of-core engine's ``ray`` runner on an embedded local Ray (2 CPUs, no dashboard, a
256 MB object store): Ray Data writes the same labelled impressions and purchase sequences as the
whole-table pandas path and as the ``local`` runner, on the tiny catalogue (about 20 s a step,
most of it Ray's start)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.data.engine import EngineConfig, label_step, run_step, sequences_step
from checkout_recs.data.labels import USER_SEQUENCES
from tests.fixtures_data import TINY, make_demo_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = ["request_id", "slot"]


def _sorted(path: Path) -> pd.DataFrame:
    df = pq.read_table(path, schema=contract.LABELLED_IMPRESSIONS).to_pandas()
    return df.sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("engine_ray"), TINY)


@pytest.mark.timeout(180)
def test_ray_data_labels_equal_the_pandas_and_the_local_labels(run, tmp_path):
    ray_cfg = EngineConfig(runner="ray", buckets=4, num_cpus=2, object_store_mb=256)
    report = run_step(label_step(), run / "ingested", tmp_path / "ray", ray_cfg)
    run_step(label_step(), run / "ingested", tmp_path / "local", EngineConfig(buckets=4))
    expected = _sorted(run / "labels" / "impressions_labelled.parquet")
    assert report.runner == "ray" and report.rows == len(expected)
    assert not (tmp_path / "ray.shuffle").exists()
    pd.testing.assert_frame_equal(_sorted(tmp_path / "ray"), expected)
    pd.testing.assert_frame_equal(_sorted(tmp_path / "local"), expected)


@pytest.mark.timeout(180)
def test_ray_data_sequences_equal_the_pandas_sequences(run, tmp_path):
    cfg = EngineConfig(runner="ray", buckets=3, num_cpus=2, object_store_mb=256)
    report = run_step(sequences_step(), run / "ingested", tmp_path / "ray", cfg)
    expected = pq.read_table(run / "labels" / "user_sequences.parquet").sort_by("user_id")
    got = pq.read_table(tmp_path / "ray", schema=USER_SEQUENCES).sort_by("user_id")
    assert report.rows == expected.num_rows and got.equals(expected.cast(USER_SEQUENCES))
