"""The training pipeline's distributed step, end to end on one machine: ``train_stage`` with two
workers creates a ``PyTorchJob`` on a fake Kubernetes API server on loopback, whose "operator"
runs the job's own command line (``torchrun -m checkout_recs.models.ddp ...``, one local process
per replica: world size 2), and fetches what rank 0 published; the result is compared with the
same stage trained in-process. A job that fails surfaces as ``TrainingJobFailed``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checkout_recs.deploy.training_job import (
    Cluster,
    TrainingJobFailed,
    link_inputs,
    train_stage,
)
from checkout_recs.models.ranker import RankerModel
from tests.fixtures_models import make_model_inputs, tiny_train_config
from tests.fixtures_ops_servers import FakeJobOperator, custom_jobs_api

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]
JOBS = re.compile(r"/apis/kubeflow\.org/v1/namespaces/([^/]+)/pytorchjobs(?:/([^/?]+))?")


class FakeTrainingOperator(FakeJobOperator):
    """The PyTorchJob part of an API server, and an operator that runs each job's Master
    container command with ``torchrun --standalone``, one process per replica."""

    initial_status = {"conditions": [{"type": "Created", "status": "True"}]}

    def run(self, namespace: str, name: str) -> None:
        obj = self.jobs[(namespace, name)]
        specs = obj["spec"]["pytorchReplicaSpecs"]
        world = sum(int(s.get("replicas", 1)) for s in specs.values())
        (c,) = specs["Master"]["template"]["spec"]["containers"]
        assert c["command"] == ["torchrun"]
        args = [a for a in c["args"] if not a.startswith("--nproc-per-node")]
        env = {**os.environ, **{e["name"]: e["value"] for e in c.get("env", []) if "value" in e}}
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone",
             f"--nproc-per-node={world}", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        done = "Succeeded" if proc.returncode == 0 else "Failed"
        with self.lock:
            obj["status"] = {
                "conditions": [
                    {"type": "Created", "status": "True"},
                    {"type": done, "status": "True", "message": proc.stderr[-400:]},
                ]
            }
            obj["log"] = proc.stdout


@pytest.fixture(scope="module")
def fake_api() -> Iterator[tuple[str, FakeTrainingOperator]]:
    op = FakeTrainingOperator()
    with custom_jobs_api(op, JOBS) as url:
        yield url, op


@pytest.fixture(scope="module")
def trained(fake_api, tmp_path_factory) -> dict[str, Any]:
    url, op = fake_api
    root = tmp_path_factory.mktemp("ddp")
    paths = make_model_inputs(root / "inputs", seed=5)
    ranker_in = root / "ranker-in"
    ranker_in.mkdir()
    (ranker_in / "training_set.parquet").symlink_to(paths["training_set"])
    retrieval_in = link_inputs(
        root / "retrieval-in", {"labels": paths["labels"], "features": paths["features"]}
    )
    cfg = tiny_train_config(7)
    cluster = Cluster(
        2, str(root / "store"), "ghcr.io/checkout-recs/components:test", "train-ns", url
    )
    return {
        "root": root,
        "op": op,
        "cluster": cluster,
        "paths": paths,
        "local": train_stage("ranker", ranker_in, root / "local-ranker", cfg),
        "ranker": train_stage("ranker", ranker_in, root / "ddp-ranker", cfg, cluster),
        "retrieval": train_stage("retrieval", retrieval_in, root / "ddp-retrieval", cfg, cluster),
    }


def test_each_stage_ran_as_a_job_of_two_processes(trained):
    jobs = trained["op"].jobs
    assert len(jobs) == 2 and all(ns == "train-ns" for ns, _ in jobs)
    for (_, name), obj in jobs.items():
        assert obj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
        assert (
            f"--job={name}"
            in obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
                "args"
            ]
        )
    for stage in ("ranker", "retrieval"):
        out = trained[stage]
        assert out["workers"] == 2 and out["metrics"][f"{stage}_world_size"] == 2
        assert out["job"].startswith(f"train-{stage}-")


def test_the_outputs_land_where_the_in_process_step_puts_them(trained):
    root = trained["root"]
    for rel in ("ranker/weights.safetensors", "ranker.pt", "metrics.json"):
        assert (root / "ddp-ranker" / rel).exists(), rel
    assert (root / "ddp-retrieval" / "two_tower" / "weights.safetensors").exists()
    RankerModel.load(root / "ddp-ranker" / "ranker")  # loads as the bundle writer reads it


def test_two_ranks_train_a_ranker_as_good_as_one_process(trained):
    local, ddp = trained["local"]["metrics"], trained["ranker"]["metrics"]
    # each rank saw half of the requests; the gradients were averaged: same model class, same AUCs
    # within the noise of a 3,600-row validation split
    for k in ("auc_click", "auc_purchase"):
        assert ddp[k] == pytest.approx(local[k], abs=0.05), (k, ddp[k], local[k])
        assert ddp[k] > 0.6


def test_a_failing_job_is_an_error_with_the_reason(trained, tmp_path):
    bad = tmp_path / "bad-in"
    bad.mkdir()
    (bad / "training_set.parquet").write_text("not parquet")
    with pytest.raises(TrainingJobFailed, match="failed"):
        train_stage("ranker", bad, tmp_path / "out", tiny_train_config(7), trained["cluster"])
