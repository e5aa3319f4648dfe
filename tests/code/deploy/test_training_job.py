"""The distributed training step's job: built from manifests/training/pytorchjob.yaml, valid
against the PyTorchJob schema and the entry point's parser, and its status read right."""

from __future__ import annotations

import pytest

from checkout_recs.deploy.custom_job import wait_for_job
from checkout_recs.deploy.manifests import validate_custom
from checkout_recs.deploy.training_job import (
    KIND,
    JobSpec,
    TrainingJobFailed,
    job_manifest,
    job_state,
    load_template,
)
from cli.manifest_contract import contract_findings
from tests.fixtures_ops import kserve_schemas  # noqa: F401
from tests.fixtures_ops_servers import ScriptedJobs

SPEC = JobSpec("retrieval", 4, "s3://bucket", "ghcr.io/checkout-recs/components:1.2.3", "train-ns")


def test_the_job_is_the_template_with_the_stage_the_image_and_the_workers(kserve_schemas):  # noqa: F811
    job = job_manifest(load_template(), SPEC, "train-x")
    assert job["metadata"]["name"] == "train-x" and job["metadata"]["namespace"] == "train-ns"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 3
    for role in ("Master", "Worker"):
        (c,) = replicas[role]["template"]["spec"]["containers"]
        assert c["image"] == SPEC.image and c["command"] == ["torchrun"]
        assert c["args"][-3:] == [
            "--stage=retrieval",
            "--artifact_root=s3://bucket",
            "--job=train-x",
        ]
        assert not any(a == "--stage=ranker" for a in c["args"])  # the template's own stage went
    assert contract_findings([job]) == []  # torchrun -m checkout_recs.models.ddp accepts it
    assert validate_custom(job, kserve_schemas) == []  # the PyTorchJob schema and its pod templates


def test_the_template_itself_is_untouched_and_one_worker_is_not_a_job():
    template = load_template()
    before = repr(template)
    job_manifest(template, SPEC, "train-y")
    assert repr(template) == before
    with pytest.raises(ValueError, match=">= 2 workers"):
        job_manifest(template, JobSpec("ranker", 1, "s3://b", "img"), "train-z")


def _job(*conditions: tuple[str, str]) -> dict:
    return {
        "status": {
            "conditions": [{"type": t, "status": s, "message": t.lower()} for t, s in conditions]
        }
    }


def test_job_state_follows_the_operators_conditions():
    assert job_state({}) == (None, "")
    assert job_state(_job(("Created", "True"), ("Running", "True"))) == (None, "")
    assert job_state(_job(("Running", "False"), ("Succeeded", "True"))) == (
        "Succeeded",
        "succeeded",
    )
    assert job_state(_job(("Failed", "True"))) == ("Failed", "failed")


def test_waiting_returns_on_success_and_raises_on_failure_or_timeout():
    clock = [0.0]
    sleep = lambda s: clock.__setitem__(0, clock[0] + s)  # noqa: E731
    api = ScriptedJobs([_job(), _job(("Running", "True")), _job(("Succeeded", "True"))])
    assert (
        job_state(wait_for_job(api, KIND, "ns", "j", 100, 10, sleep, lambda: clock[0]))[0]
        == "Succeeded"
    )
    assert api.calls == 3
    with pytest.raises(TrainingJobFailed, match="failed: failed"):
        wait_for_job(
            ScriptedJobs([_job(("Failed", "True"))]),
            KIND,
            "ns",
            "j",
            100,
            10,
            sleep,
            lambda: clock[0],
        )
    with pytest.raises(TrainingJobFailed, match="did not finish in 30 s"):
        wait_for_job(ScriptedJobs([_job()]), KIND, "ns", "j", 30, 10, sleep, lambda: clock[0])
