"""The training pipeline's distributed step: one stage trained by a Kubeflow ``PyTorchJob``.

``train_on_cluster`` puts the stage's input in the artifact store (kind ``train-input``, version
= the job's name, with the ``TrainConfig`` the in-process step would use), creates the job from
``manifests/training/pytorchjob.yaml`` (the one layout: ``job_manifest`` changes only the name,
the image, the stage's arguments and the worker count), waits for the training operator to
report ``Succeeded`` or ``Failed``, and fetches what rank 0 published (kind ``train-output``)
into the step's output folder. The pods run ``torchrun -m checkout_recs.models.ddp``.

The API host is injectable (``KubeApi(host=...)``): tests run it against a fake API server on
loopback whose operator runs the job's own command line with ``torchrun`` on this machine.
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checkout_recs.deploy import custom_job
from checkout_recs.deploy.custom_job import IN_CLUSTER, CustomObjects, JobKind
from checkout_recs.models.ddp import CONFIG_FILE, INPUT_KIND, OUTPUT_KIND, run_stage
from checkout_recs.storage import ArtifactStore, open_store

if TYPE_CHECKING:  # the models import torch: only where a stage is trained
    from checkout_recs.models.train import TrainConfig

TEMPLATE = Path(__file__).resolve().parents[2] / "manifests" / "training" / "pytorchjob.yaml"
STAGE_FLAGS = ("--stage", "--artifact_root", "--job")


class TrainingJobFailed(RuntimeError):
    """The job failed, or did not finish in time; the message has the operator's reason."""


@dataclass(frozen=True)
class JobSpec:
    """One distributed training job.

    stage : ``ranker`` or ``retrieval`` (``checkout_recs.models.ddp.STAGES``).
    workers : processes in all (one Master + ``workers - 1`` Worker pods, one process each); >= 2.
    artifact_root : the store both the launcher and the pods reach (``s3://`` in a cluster).
    image : the components image the pods run (the pipeline's own).
    namespace : where the job is created (the pipeline's service account may create jobs there).
    name : the job's name and the version of its input and output; generated when empty.
    """

    stage: str
    workers: int
    artifact_root: str
    image: str
    namespace: str = "checkout-recs-training"
    name: str = ""

    def job_name(self) -> str:
        """``name``, or ``train-<stage>-<UTC time>-<6 hex>`` (a valid DNS-1123 name)."""
        return custom_job.job_name(f"train-{self.stage}", self.name)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The ``PyTorchJob`` of ``manifests/training/pytorchjob.yaml`` (YAML anchors resolved)."""
    return custom_job.load_template(path)


def job_manifest(template: dict[str, Any], spec: JobSpec, name: str) -> dict[str, Any]:
    """``template`` for ``spec``: name, namespace, image, the stage flags of the ``pytorch``
    container (other arguments kept) and ``workers - 1`` Worker replicas. ``ValueError`` when
    ``spec.workers < 2`` (one process trains in the pipeline's own pod)."""
    if spec.workers < 2:
        raise ValueError(f"a distributed job needs >= 2 workers, got {spec.workers}")
    job = copy.deepcopy(template)
    job["metadata"] = {**job.get("metadata", {}), "name": name, "namespace": spec.namespace}
    replicas = job["spec"]["pytorchReplicaSpecs"]
    replicas["Worker"]["replicas"] = spec.workers - 1
    for role in ("Master", "Worker"):
        replicas[role]["template"] = copy.deepcopy(replicas[role]["template"])
        for c in replicas[role]["template"]["spec"]["containers"]:
            if c["name"] != "pytorch":
                continue
            c["image"] = spec.image
            kept = [a for a in c.get("args", []) if not str(a).startswith(STAGE_FLAGS)]
            c["args"] = [
                *kept,
                f"--stage={spec.stage}",
                f"--artifact_root={spec.artifact_root}",
                f"--job={name}",
            ]
    return job


def job_state(obj: dict[str, Any]) -> tuple[str | None, str]:
    """(``Succeeded`` | ``Failed`` | None while running, the condition's message) of a job."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Succeeded", "Failed") and cond.get("status") == "True":
            return cond["type"], str(cond.get("message") or cond.get("reason") or "")
    return None, ""


#: The Kubeflow training operator's ``PyTorchJob``.
KIND = JobKind("PyTorchJob", "kubeflow.org", "v1", "pytorchjobs", job_state, TrainingJobFailed)


def train_on_cluster(
    api: CustomObjects,
    store: ArtifactStore,
    spec: JobSpec,
    input_dir: Path,
    train_config_json: str,
    out_dir: Path,
    timeout_s: float = 6 * 3600,
    poll_s: float = 10.0,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``spec.stage`` as a ``PyTorchJob`` and put its output in ``out_dir``.

    Parameters
    ----------
    input_dir : the stage's input folder (``training_set.parquet``, or ``labels/`` + ``features/``);
        published with ``train_config.json`` added.
    train_config_json : the ``TrainConfig`` (JSON) the in-process step would use.
    out_dir : receives the stage's output folder (as the in-process stage writes it).

    Returns
    -------
    dict: ``job`` (name), ``workers``, ``metrics`` (the output's ``metrics.json``), ``version``.
    """
    name = spec.job_name()
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        staged = Path(tmp) / "input"
        stage_input(Path(input_dir), staged, train_config_json)
        store.publish(INPUT_KIND, name, staged)
    custom_job.run_job(
        api, KIND, job_manifest(template or load_template(), spec, name), timeout_s, poll_s
    )
    got = store.fetch(OUTPUT_KIND, name, Path(out_dir))
    metrics_path, stage_path = Path(got) / "metrics.json", Path(got) / "stage.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    stage = json.loads(stage_path.read_text()) if stage_path.exists() else {}
    return {
        "job": name,
        "workers": spec.workers,
        "metrics": metrics,
        "version": stage.get("version", ""),
    }


def stage_input(src: Path, dest: Path, train_config_json: str) -> None:
    """``dest`` as the job's input: a link to each of ``src``'s files (the store's ``publish``
    copies them once, through the link), a copy of each folder (``publish`` of an S3 store does
    not descend into linked folders), and ``train_config.json``."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_dir():
            shutil.copytree(p, dest / p.name)
        else:
            (dest / p.name).symlink_to(p.resolve())
    (dest / CONFIG_FILE).write_text(train_config_json)


@dataclass(frozen=True)
class Cluster:
    """Where a pipeline step sends a distributed job: ``k8s_host`` an API URL, or
    ``"in-cluster"`` / empty for the pod's service account (as the deploy step reads it)."""

    workers: int
    artifact_root: str
    image: str
    namespace: str = "checkout-recs-training"
    k8s_host: str = ""
    s3_endpoint_url: str = ""


def link_inputs(dest: Path, parts: dict[str, Path]) -> Path:
    """``dest`` holding a symbolic link per ``parts`` entry (name -> folder): the stage input
    layout of ``checkout_recs.models.ddp`` built from separate pipeline artifacts."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, path in parts.items():
        link = dest / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(path).resolve(), target_is_directory=True)
    return dest


def train_stage(
    stage: str, input_dir: Path, out_dir: Path, cfg: TrainConfig, cluster: Cluster | None = None
) -> dict[str, Any]:
    """Train ``stage`` as the pipeline step asks: in this process (``cluster`` None or fewer than
    2 workers, the local default) or as a ``PyTorchJob`` of ``cluster.workers`` processes.

    Returns
    -------
    dict with ``version`` and ``metrics`` (name -> float) in both cases, plus ``job`` and
    ``workers`` for a distributed run.
    """
    if cluster is None or cluster.workers < 2:
        return run_stage(stage, input_dir, out_dir, cfg)
    from checkout_recs.deploy.kube import KubeApi  # lazy: the kubernetes client costs ~1 s

    spec = JobSpec(stage, cluster.workers, cluster.artifact_root, cluster.image, cluster.namespace)
    return train_on_cluster(
        KubeApi(host=None if cluster.k8s_host in ("", IN_CLUSTER) else cluster.k8s_host),
        open_store(cluster.artifact_root, cluster.s3_endpoint_url or None),
        spec,
        input_dir,
        cfg.model_dump_json(),
        out_dir,
    )
