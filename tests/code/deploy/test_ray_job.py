"""The out-of-core data step's RayJob: built from manifests/training/rayjob.yaml, valid against
the real KubeRay RayJob CRD and the engine entry point's parser, and its status read right."""

from __future__ import annotations

import shlex

import pytest
import yaml

from checkout_recs.data.engine import build_parser
from checkout_recs.deploy.custom_job import wait_for_job
from checkout_recs.deploy.manifests import validate_custom
from checkout_recs.deploy.ray_job import (
    KIND,
    RayJobFailed,
    RayJobSpec,
    job_manifest,
    job_state,
    load_template,
)
from checkout_recs.deploy.semantics import semantic_findings
from cli.manifest_contract import contract_findings
from tests.fixtures_ops import MANIFESTS, kserve_schemas  # noqa: F401
from tests.fixtures_ops_servers import ScriptedJobs

EXPECT = ("ray.io", "v1", "rayjobs")
SERVICE_ACCOUNT = yaml.safe_load((MANIFESTS / "training" / "serviceaccount.yaml").read_text())
IMAGE = "ghcr.io/checkout-recs/components:1.2.3"
SPEC = RayJobSpec("labels", "s3://b/ingested", "s3://b/out/x", IMAGE, 20, 128, 3600, "data-ns")


def _containers(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    templates = [p["template"] for p in pods] + [job["spec"]["submitterPodTemplate"]]
    return [c for t in templates for c in t["spec"]["containers"]]


def test_the_job_is_the_template_with_the_step_the_image_and_the_workers(kserve_schemas):  # noqa: F811
    job = job_manifest(load_template(), SPEC, "data-x")
    assert job["metadata"]["name"] == "data-x" and job["metadata"]["namespace"] == "data-ns"
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 20 and group["minReplicas"] <= 20 <= group["maxReplicas"]
    assert {c["image"] for c in _containers(job)} == {IMAGE}
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "checkout_recs.data.engine"]
    args = build_parser().parse_args(argv[3:])
    assert (args.step, args.validated, args.out) == ("labels", "s3://b/ingested", "s3://b/out/x")
    assert (args.runner, args.address, args.buckets, args.window_s) == ("ray", "auto", 128, 3600)
    assert validate_custom(job, kserve_schemas) == []  # the KubeRay CRD and the pod templates
    assert contract_findings([job]) == []  # the engine's parser accepts the entrypoint
    assert semantic_findings([job, SERVICE_ACCOUNT]) == []  # pinned image, resources, security


def test_the_template_itself_is_untouched_and_bad_specs_are_refused():
    template = load_template()
    before = repr(template)
    job_manifest(template, SPEC, "data-y")
    assert repr(template) == before
    with pytest.raises(ValueError, match=">= 1 worker"):
        job_manifest(template, RayJobSpec("labels", "a", "b", IMAGE, 0), "data-z")
    with pytest.raises(ValueError, match="step must be one of"):
        job_manifest(template, RayJobSpec("features", "a", "b", IMAGE), "data-z")


def test_the_checks_see_the_rayjobs_pods(kserve_schemas):  # noqa: F811
    job = job_manifest(load_template(), SPEC, "data-x")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["securityContext"] = {}
    del job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["resources"]
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replica"] = 3  # a typo
    messages = [f.message for f in semantic_findings([job, SERVICE_ACCOUNT])]
    assert any("headGroupSpec" in m for m in messages)
    assert any("submitterPodTemplate" in m for m in messages)
    assert any("'replica' was unexpected" in e for e in validate_custom(job, kserve_schemas))
    job["spec"]["entrypoint"] += " --buckets=many"
    assert any("refuses" in f.message for f in contract_findings([job]))


def _job(deployment: str = "", status: str = "", message: str = "") -> dict:
    st = {"jobDeploymentStatus": deployment, "jobStatus": status, "message": message}
    return {"status": {k: v for k, v in st.items() if v}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({}, (None, "")),
        (_job("Initializing"), (None, "")),
        (_job("Running", "RUNNING"), (None, "")),
        (_job("Running", "FAILED"), (None, "")),  # KubeRay may still retry (backoffLimit)
        (_job("Complete", "SUCCEEDED", "done"), ("Succeeded", "done")),
        (_job("Complete", "STOPPED"), ("Failed", "Complete STOPPED")),
        (_job("Failed", "FAILED", "exit 1"), ("Failed", "exit 1")),
        (_job("ValidationFailed", message="bad spec"), ("Failed", "bad spec")),
    ],
)
def test_job_state_follows_kuberay_status(obj, expected):
    assert job_state(obj) == expected


def test_waiting_returns_on_success_and_raises_on_failure_or_timeout():
    clock = [0.0]
    sleep = lambda s: clock.__setitem__(0, clock[0] + s)  # noqa: E731
    api = ScriptedJobs([_job(), _job("Running", "RUNNING"), _job("Complete", "SUCCEEDED")], EXPECT)
    done = wait_for_job(api, KIND, "ns", "j", 100, 10, sleep, lambda: clock[0])
    assert job_state(done)[0] == "Succeeded" and api.calls == 3
    with pytest.raises(RayJobFailed, match="failed: oom"):
        wait_for_job(
            ScriptedJobs([_job("Failed", message="oom")], EXPECT),
            KIND,
            "ns",
            "j",
            100,
            10,
            sleep,
            clock.pop,
        )
    clock[:] = [0.0]
    with pytest.raises(RayJobFailed, match="did not finish in 30 s"):
        wait_for_job(
            ScriptedJobs([_job("Running")], EXPECT),
            KIND,
            "ns",
            "j",
            30,
            10,
            sleep,
            lambda: clock[0],
        )
