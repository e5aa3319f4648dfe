"""What the cluster-job launchers share: a custom object created from a template in
``manifests/training/`` (a Kubeflow ``PyTorchJob``, ``training_job.py``; a KubeRay ``RayJob``,
``ray_job.py``), then polled until its operator reports the end.

Each launcher states its kind once (``JobKind``: API group, version, plural, how to read the
end from ``status``, the error it raises); creating, naming and polling are here.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

#: ``k8s_host`` value (or empty) meaning the pod's own service account.
IN_CLUSTER = "in-cluster"


class CustomObjects(Protocol):
    """What the launchers need of ``KubeApi``."""

    def create_custom(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...

    def get_custom(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class JobKind:
    """One kind of cluster job.

    kind : its Kubernetes kind, for messages (``PyTorchJob``).
    group, version, plural : its API coordinates.
    state : ``status`` → (``"Succeeded"`` | ``"Failed"`` | None while running, the operator's
        message), given the whole object.
    failure : the error raised when the job fails or does not finish in time.
    """

    kind: str
    group: str
    version: str
    plural: str
    state: Callable[[dict[str, Any]], tuple[str | None, str]]
    failure: type[RuntimeError]


def job_name(prefix: str, name: str = "") -> str:
    """``name``, or ``<prefix>-<UTC time>-<6 hex>`` (a valid DNS-1123 name for a lower-case,
    hyphenated ``prefix``)."""
    if name:
        return name
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:6]}"


def load_template(path: Path) -> dict[str, Any]:
    """The job of a template file in ``manifests/training/`` (YAML anchors resolved)."""
    return yaml.safe_load(Path(path).read_text())


def wait_for_job(
    api: CustomObjects,
    kind: JobKind,
    namespace: str,
    name: str,
    timeout_s: float,
    poll_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the job every ``poll_s`` s until it succeeds (returns it); ``kind.failure`` when it
    fails or ``timeout_s`` passes."""
    deadline = clock() + timeout_s
    while True:
        obj = api.get_custom(kind.group, kind.version, namespace, kind.plural, name)
        state, message = kind.state(obj)
        if state == "Succeeded":
            return obj
        if state == "Failed":
            raise kind.failure(f"{kind.kind} {namespace}/{name} failed: {message}")
        if clock() >= deadline:
            raise kind.failure(
                f"{kind.kind} {namespace}/{name} did not finish in {timeout_s:.0f} s"
            )
        sleep(poll_s)


def run_job(
    api: CustomObjects,
    kind: JobKind,
    job: dict[str, Any],
    timeout_s: float,
    poll_s: float = 10.0,
) -> dict[str, Any]:
    """Create ``job`` (its ``metadata`` names it and its namespace) and wait for its end
    (``wait_for_job``); the finished object."""
    meta = job["metadata"]
    api.create_custom(kind.group, kind.version, meta["namespace"], kind.plural, job)
    return wait_for_job(api, kind, meta["namespace"], meta["name"], timeout_s, poll_s)
