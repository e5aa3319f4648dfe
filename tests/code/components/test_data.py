"""``components/data.py``'s ``label_impressions_op`` run as a plain function (no kfp executor):
with no workers it labels in the step's own pod with the engine's local runner."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq

from components.data import label_impressions_op
from tests.fixtures_data import TINY, make_demo_dataset


def test_label_impressions_op_without_workers_runs_the_local_engine(tmp_path):
    run = make_demo_dataset(tmp_path, TINY)
    logged: dict[str, float] = {}
    out = tmp_path / "labelled"
    labelled = SimpleNamespace(path=str(out), uri=str(out), metadata={})
    label_impressions_op.python_func(
        ingested=SimpleNamespace(path=str(run / "ingested"), uri="s3://unused"),
        workers=0,
        buckets=3,
        namespace="unused",
        k8s_host="",
        labelled=labelled,
        metrics=SimpleNamespace(log_metric=logged.__setitem__),
    )
    rows = pq.read_table(run / "labels" / "impressions_labelled.parquet").num_rows
    assert labelled.metadata["runner"] == "local" and logged["rows"] == rows
    assert pq.read_table(out).num_rows == rows and len(list(Path(out).glob("part-*"))) == 3
