"""The out-of-core data step's distributed path, end to end on one machine: ``run_data_step`` with
a cluster creates a ``RayJob`` on a fake Kubernetes API server on loopback, whose "operator" runs
the job's own entrypoint (``python -m checkout_recs.data.engine --runner=ray ...``) on an embedded
local Ray instead of ``--address=auto``, and reports KubeRay's status; the labelled impressions
equal the pandas path's. A job that fails surfaces as ``RayJobFailed`` with the reason."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.deploy.ray_job import DataCluster, RayJobFailed, run_data_step
from tests.fixtures_data import TINY, make_demo_dataset
from tests.fixtures_ops_servers import FakeJobOperator, custom_jobs_api

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
JOBS = re.compile(r"/apis/ray\.io/v1/namespaces/([^/]+)/rayjobs(?:/([^/?]+))?")
IMAGE = "ghcr.io/checkout-recs/components:test"


class FakeKubeRay(FakeJobOperator):
    """The RayJob part of an API server, and an operator that runs each job's entrypoint here."""

    initial_status = {"jobDeploymentStatus": "Initializing"}

    def run(self, namespace: str, name: str) -> None:
        obj = self.jobs[(namespace, name)]
        argv = shlex.split(obj["spec"]["entrypoint"])
        assert argv[0] == "python"
        with self.lock:
            obj["status"] = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
        proc = subprocess.run(
            [sys.executable, *argv[1:], "--address="],  # an embedded Ray, not a cluster's
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        ok = proc.returncode == 0
        with self.lock:
            obj["status"] = {
                "jobDeploymentStatus": "Complete" if ok else "Failed",
                "jobStatus": "SUCCEEDED" if ok else "FAILED",
                "jobId": f"{name}-1",
                "message": "" if ok else proc.stderr[-400:],
            }
            obj["log"] = proc.stdout


@pytest.fixture(scope="module")
def fake_api() -> Iterator[tuple[str, FakeKubeRay]]:
    op = FakeKubeRay()
    with custom_jobs_api(op, JOBS) as url:
        yield url, op


def _sorted(path: Path) -> pd.DataFrame:
    df = pq.read_table(path, schema=contract.LABELLED_IMPRESSIONS).to_pandas()
    return df.sort_values(["request_id", "slot"]).reset_index(drop=True)


@pytest.mark.timeout(300)
def test_the_rayjob_labels_what_pandas_labels(fake_api, tmp_path):
    url, op = fake_api
    run = make_demo_dataset(tmp_path, TINY)
    cluster = DataCluster(2, IMAGE, buckets=3, namespace="data-ns", k8s_host=url, poll_s=0.5)
    out = run_data_step("labels", str(run / "ingested"), str(tmp_path / "ooc"), cluster)
    assert out["job"].startswith("data-labels-") and out["ray_job_id"] == f"{out['job']}-1"
    ((ns, name), obj), *_ = op.jobs.items()
    assert ns == "data-ns" and name == out["job"]
    assert obj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 2
    assert '"runner": "ray"' in obj["log"] and '"rows": ' in obj["log"]
    expected = _sorted(run / "labels" / "impressions_labelled.parquet")
    pd.testing.assert_frame_equal(_sorted(tmp_path / "ooc"), expected)


@pytest.mark.timeout(300)
def test_a_failing_job_is_an_error_with_the_reason(fake_api, tmp_path):
    url, _ = fake_api
    bad = tmp_path / "ingested" / "validated" / "impressions"
    bad.mkdir(parents=True)
    (bad / "part-0.parquet").write_text("not parquet")
    cluster = DataCluster(1, IMAGE, buckets=2, namespace="data-ns", k8s_host=url, poll_s=0.5)
    with pytest.raises(RayJobFailed, match="failed"):
        run_data_step("labels", str(tmp_path / "ingested"), str(tmp_path / "out"), cluster)
