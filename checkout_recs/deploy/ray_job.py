"""The data steps' distributed path: one out-of-core step run by a KubeRay ``RayJob``.

``run_on_cluster`` creates the job from ``manifests/training/rayjob.yaml`` (the one layout:
``job_manifest`` changes only the name, the images, the entrypoint's step, ``--validated``,
``--out``, ``--buckets`` and the worker count), and waits for KubeRay to report the job's end
(``status.jobDeploymentStatus`` ``Complete`` with ``status.jobStatus`` ``SUCCEEDED``; ``Failed``
or another final job status is a failure). The RayCluster runs ``python -m
checkout_recs.data.engine --runner=ray --address=auto``: the same per-partition code as the
in-process ``local`` runner. Input and output are folders both sides reach (``s3://`` on a
cluster: a KFP artifact's URI).

``run_data_step`` is what a pipeline step calls: in this process (``cluster`` None or no workers,
the local default) or as a ``RayJob``. The API host is injectable (``KubeApi(host=...)``): tests
run it against a fake API server on loopback whose operator runs the job's entrypoint here.
"""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkout_recs.data.engine import STEPS, EngineConfig, run_step, step_for
from checkout_recs.deploy import custom_job
from checkout_recs.deploy.custom_job import IN_CLUSTER, CustomObjects, JobKind

TEMPLATE = Path(__file__).resolve().parents[2] / "manifests" / "training" / "rayjob.yaml"
MODULE = "checkout_recs.data.engine"
#: Final ``jobDeploymentStatus`` values of KubeRay v1.
FINAL = ("Complete", "Failed", "ValidationFailed")


class RayJobFailed(RuntimeError):
    """The job failed, or did not finish in time; the message has KubeRay's reason."""


@dataclass(frozen=True)
class RayJobSpec:
    """One out-of-core data step on a Ray cluster.

    step : a step of ``checkout_recs.data.engine.STEPS`` (``labels``, ``sequences``).
    validated : the ingested folder (URI) the step reads.
    out : the folder (URI) it writes part files to.
    image : the components image the head, the workers and the submitter run.
    workers : Ray worker pods (group ``cpu``); >= 1.
    buckets : partitions of the step's key (peak memory per worker ~ input / buckets).
    window_s : ``labels``: the purchase window, s (``LabelConfig.purchase_window_s``).
    namespace : where the job is created (the pipeline's service account may create it there).
    name : the job's name; generated when empty.
    """

    step: str
    validated: str
    out: str
    image: str
    workers: int = 4
    buckets: int = 64
    window_s: int = 86_400
    namespace: str = "checkout-recs-training"
    name: str = ""

    def job_name(self) -> str:
        """``name``, or ``data-<step>-<UTC time>-<6 hex>`` (a valid DNS-1123 name)."""
        return custom_job.job_name(f"data-{self.step}", self.name)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The ``RayJob`` of ``manifests/training/rayjob.yaml`` (YAML anchors resolved)."""
    return custom_job.load_template(path)


def entrypoint(spec: RayJobSpec) -> str:
    """The job's command line: ``python -m checkout_recs.data.engine`` with ``spec``'s flags."""
    return shlex.join(
        [
            "python",
            "-m",
            MODULE,
            f"--step={spec.step}",
            f"--validated={spec.validated}",
            f"--out={spec.out}",
            "--runner=ray",
            "--address=auto",
            f"--buckets={spec.buckets}",
            f"--window_s={spec.window_s}",
        ]
    )


def job_manifest(template: dict[str, Any], spec: RayJobSpec, name: str) -> dict[str, Any]:
    """``template`` for ``spec``: name, namespace, entrypoint, every container's image and the
    first worker group's replicas (its min/max widened to include them). ``ValueError`` for an
    unknown step or fewer than one worker."""
    if spec.step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {spec.step!r}")
    if spec.workers < 1:
        raise ValueError(f"a RayJob needs >= 1 worker, got {spec.workers}")
    job = copy.deepcopy(template)
    job["metadata"] = {**job.get("metadata", {}), "name": name, "namespace": spec.namespace}
    js = job["spec"]
    js["entrypoint"] = entrypoint(spec)
    cluster = js["rayClusterSpec"]
    group = cluster["workerGroupSpecs"][0]
    group["replicas"] = spec.workers
    group["minReplicas"] = min(int(group.get("minReplicas", 1)), spec.workers)
    group["maxReplicas"] = max(int(group.get("maxReplicas", 1)), spec.workers)
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    templates = [p["template"] for p in pods] + [js.get("submitterPodTemplate") or {}]
    for tpl in templates:
        for c in (tpl.get("spec") or {}).get("containers") or []:
            c["image"] = spec.image
    return job


def job_state(obj: dict[str, Any]) -> tuple[str | None, str]:
    """(``Succeeded`` | ``Failed`` | None while running, KubeRay's message) of a ``RayJob``."""
    st = obj.get("status") or {}
    deployment, status = st.get("jobDeploymentStatus") or "", st.get("jobStatus") or ""
    message = str(st.get("message") or st.get("reason") or f"{deployment} {status}".strip())
    if deployment not in FINAL:
        return None, ""
    if deployment == "Complete" and status == "SUCCEEDED":
        return "Succeeded", message
    return "Failed", message


#: KubeRay's ``RayJob``.
KIND = JobKind("RayJob", "ray.io", "v1", "rayjobs", job_state, RayJobFailed)


def run_on_cluster(
    api: CustomObjects,
    spec: RayJobSpec,
    timeout_s: float = 6 * 3600,
    poll_s: float = 10.0,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``spec.step`` as a ``RayJob`` and wait for it.

    Returns
    -------
    dict: ``job`` (name), ``workers``, ``buckets``, ``out`` (the output folder), ``ray_job_id``
    (KubeRay's ``status.jobId``).
    """
    name = spec.job_name()
    job = job_manifest(template or load_template(), spec, name)
    done = custom_job.run_job(api, KIND, job, timeout_s, poll_s)
    return {
        "job": name,
        "workers": spec.workers,
        "buckets": spec.buckets,
        "out": spec.out,
        "ray_job_id": (done.get("status") or {}).get("jobId", ""),
    }


@dataclass(frozen=True)
class DataCluster:
    """Where a pipeline step sends an out-of-core data step: ``k8s_host`` an API URL, or
    ``"in-cluster"`` / empty for the pod's service account; ``poll_s`` how often the job's status
    is read, seconds."""

    workers: int
    image: str
    buckets: int = 64
    namespace: str = "checkout-recs-training"
    k8s_host: str = ""
    poll_s: float = 10.0


def run_data_step(
    step: str,
    ingested: str,
    out: str,
    cluster: DataCluster | None = None,
    cfg: EngineConfig | None = None,
    window_s: int = 86_400,
) -> dict[str, Any]:
    """Run ``step`` as the pipeline step asks: in this process with the engine's ``cfg`` (``cluster``
    None or no workers) or as a ``RayJob`` of ``cluster.workers`` Ray workers.

    Returns
    -------
    dict with ``out`` in both cases; ``rows`` and ``seconds`` in process, ``job`` and ``workers``
    for a RayJob.
    """
    if cluster is None or cluster.workers < 1:
        return run_step(step_for(step, window_s), ingested, out, cfg).model_dump()
    from checkout_recs.deploy.kube import KubeApi  # lazy: the kubernetes client costs ~1 s

    spec = RayJobSpec(
        step,
        ingested,
        out,
        cluster.image,
        cluster.workers,
        cluster.buckets,
        window_s,
        cluster.namespace,
    )
    host = None if cluster.k8s_host in ("", IN_CLUSTER) else cluster.k8s_host
    return run_on_cluster(KubeApi(host=host), spec, poll_s=cluster.poll_s)
