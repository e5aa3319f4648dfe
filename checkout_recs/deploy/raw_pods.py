"""The pods KServe would create for an InferenceService in RawDeployment mode, from rendered manifests.

A test harness of the manifests (``make stack-up``, ``scripts/stack.py``): each component
(``spec.predictor``, ``spec.transformer``) of a rendered InferenceService becomes one ``v1/Pod``,
literally:

* **pod** — the component's ``serviceAccountName``, ``automountServiceAccountToken``,
  ``securityContext``, ``labels`` and ``volumes``, plus KServe's labels
  (``serving.kserve.io/inferenceservice``, ``component``) and, with the
  ``serving.kserve.io/enable-prometheus-scraping`` annotation, the ``prometheus.io/*`` annotations;
* **storage initializer** — when a container sets ``STORAGE_URI``: an init container
  ``storage-initializer`` with KServe's arguments ``[STORAGE_URI, /mnt/models]`` and KServe's default
  resources, writing into the emptyDir ``kserve-provision-location``, which is mounted read-only at
  ``/mnt/models`` into that container (and into a collocated ``transformer-container``). KServe's
  own image (``kserve/storage-initializer``) is not here: the init container runs
  ``python -c STORAGE_INITIALIZER_SCRIPT`` (boto3, one object at a time) in an image of ours, with the
  ``AWS_*`` variables of the container it serves (KServe takes them from the service account's
  S3 secret) and that container's ``securityContext``;
* **containers** — ``name``, ``image``, ``command``, ``args`` (a transformer's first container also
  gets KServe's ``--model_name`` / ``--predictor_host`` / ``--http_port`` / ``--workers``,
  ``entrypoints.kserve_injected_args``), ``ports``, ``env``, ``resources``, the three probes,
  ``securityContext`` and ``volumeMounts``, copied as written.

**Refused.** Every field the conversion does not honour raises ``UnsupportedField`` naming its
path (``spec.transformer.containers[0].lifecycle``): a component field that is neither a pod field
nor one of the fields KServe gives the Deployment / autoscaler rather than the pod
(``CONTROLLER_FIELDS``: replicas, scaling, concurrency, timeout, canary), an unknown container
field, an env source other than a literal or a ``secretKeyRef``, a volume other than ``configMap``
or ``emptyDir``, an InferenceService annotation not in ``ANNOTATIONS``, a component other than
predictor / transformer (an explainer), a predictor written as a ``model:`` (a serving runtime).

``for_local_run`` then adapts a converted pod to ``podman kube play`` on one machine; every change
it makes is listed in its docstring and in ``docs/deploy.md`` → *Local stack*.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from checkout_recs.deploy.entrypoints import kserve_injected_args

#: Where KServe's storage initializer puts the model, and the volume that carries it.
MODEL_DIR = "/mnt/models"
PROVISION_VOLUME = "kserve-provision-location"
STORAGE_INITIALIZER = "storage-initializer"
#: KServe's default resources of the storage initializer (``inferenceservice-config``, ``storageInitializer``).
STORAGE_INITIALIZER_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "100Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
#: The storage initializer's download, ``python -c SCRIPT <s3://bucket/prefix> <dest>``: every object
#: under the prefix to ``dest/<relative key>``; the endpoint comes from ``AWS_ENDPOINT_URL_S3``
#: (botocore reads it). Fails when the prefix is empty, as KServe's does.
STORAGE_INITIALIZER_SCRIPT = """\
import os, sys, boto3
uri, dest = sys.argv[1], sys.argv[2]
bucket, _, prefix = uri.removeprefix("s3://").partition("/")
prefix = prefix.rstrip("/") + "/"
s3, n = boto3.client("s3"), 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for obj in page.get("Contents", []):
        path = os.path.join(dest, obj["Key"][len(prefix):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, obj["Key"], path)
        n += 1
if not n:
    sys.exit(f"storage-initializer: no objects under {uri}")
print(f"storage-initializer: {n} objects from {uri} to {dest}")
"""

COMPONENTS = ("predictor", "transformer")
#: Component fields that become pod fields (``containers`` and ``labels`` handled apart).
POD_FIELDS = frozenset(
    {"serviceAccountName", "automountServiceAccountToken", "securityContext", "volumes"}
)
#: Component fields KServe gives the Deployment, the HPA or the router, not the pod.
CONTROLLER_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleMetric",
        "scaleTarget",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
    }
)
CONTAINER_FIELDS = frozenset(
    {
        "name",
        "image",
        "command",
        "args",
        "ports",
        "env",
        "resources",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
        "securityContext",
        "volumeMounts",
    }
)
ENV_FIELDS = frozenset({"name", "value", "valueFrom"})
ENV_SOURCES = frozenset({"secretKeyRef"})
VOLUME_SOURCES = frozenset({"configMap", "emptyDir"})
#: InferenceService annotations and what they do to a RawDeployment pod (None: nothing, by design).
ANNOTATIONS: Mapping[str, str | None] = {
    "serving.kserve.io/deploymentMode": None,  # the conversion is RawDeployment's, whatever it says
    "serving.kserve.io/enable-tag-routing": None,  # Serverless routing (latest-/prev- hosts), no pod field
    "serving.kserve.io/enable-prometheus-scraping": "prometheus",
}
ISVC_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec"})
METADATA_FIELDS = frozenset({"name", "namespace", "labels", "annotations"})


class UnsupportedField(ValueError):
    """A field of the InferenceService the conversion does not honour; ``path`` names it."""

    def __init__(
        self, path: str, why: str = "not honoured by the RawDeployment conversion"
    ) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path


def _only(obj: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    """Raise ``UnsupportedField`` for the first key of ``obj`` not in ``allowed``."""
    allowed = frozenset(allowed)
    for key in obj:
        if key not in allowed:
            raise UnsupportedField(f"{path}.{key}")


def _storage_uri(container: Mapping[str, Any]) -> str | None:
    """The literal ``STORAGE_URI`` value of a container (None when it sets none)."""
    return next(
        (str(e["value"]) for e in container.get("env") or [] if e.get("name") == "STORAGE_URI"),
        None,
    )


def _check_env(container: Mapping[str, Any], path: str) -> None:
    for i, e in enumerate(container.get("env") or []):
        _only(e, ENV_FIELDS, f"{path}.env[{i}]")
        _only(e.get("valueFrom") or {}, ENV_SOURCES, f"{path}.env[{i}].valueFrom")
        if e.get("name") == "STORAGE_URI" and "value" not in e:
            raise UnsupportedField(f"{path}.env[{i}]", "STORAGE_URI must be a literal value")


def convert_container(
    container: Mapping[str, Any], path: str, extra_args: list[str], mount_models: bool
) -> dict[str, Any]:
    """One component container as the pod runs it: its fields copied, ``extra_args`` appended,
    the model volume mounted read-only at ``MODEL_DIR`` when ``mount_models``."""
    _only(container, CONTAINER_FIELDS, path)
    out = copy.deepcopy(dict(container))
    if extra_args:
        out["args"] = [*out.get("args", []), *extra_args]
    if mount_models:
        out["volumeMounts"] = [
            *out.get("volumeMounts", []),
            {"name": PROVISION_VOLUME, "mountPath": MODEL_DIR, "readOnly": True},
        ]
    return out


def storage_initializer(uri: str, served: Mapping[str, Any], image: str) -> dict[str, Any]:
    """The init container that downloads ``uri`` into ``MODEL_DIR`` (``STORAGE_INITIALIZER_SCRIPT`` in
    ``image``), with the ``AWS_*`` env and the ``securityContext`` of the container it serves."""
    env = [
        copy.deepcopy(e)
        for e in served.get("env") or []
        if str(e.get("name", "")).startswith("AWS_")
    ]
    init: dict[str, Any] = {
        "name": STORAGE_INITIALIZER,
        "image": image,
        "command": ["python", "-c", STORAGE_INITIALIZER_SCRIPT],
        "args": [uri, MODEL_DIR],
        "resources": copy.deepcopy(STORAGE_INITIALIZER_RESOURCES),
        "volumeMounts": [{"name": PROVISION_VOLUME, "mountPath": MODEL_DIR}],
    }
    if env:
        init["env"] = env
    if served.get("securityContext"):
        init["securityContext"] = copy.deepcopy(served["securityContext"])
    return init


def _pod_metadata(
    isvc: Mapping[str, Any], component: str, spec: Mapping[str, Any]
) -> dict[str, Any]:
    meta = isvc.get("metadata") or {}
    name = meta.get("name", "")
    labels = {
        **(meta.get("labels") or {}),
        **(spec.get("labels") or {}),
        "serving.kserve.io/inferenceservice": name,
        "component": component,
    }
    out: dict[str, Any] = {"name": f"{name}-{component}", "labels": labels}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    if (
        str(
            (meta.get("annotations") or {}).get("serving.kserve.io/enable-prometheus-scraping")
        ).lower()
        == "true"
    ):
        out["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8080",
            "prometheus.io/path": "/metrics",
        }
    return out


def component_pod(
    isvc: Mapping[str, Any], component: str, initializer_image: str
) -> dict[str, Any]:
    """The pod of one InferenceService component (module docstring); ``UnsupportedField`` otherwise."""
    path = f"spec.{component}"
    spec = (isvc.get("spec") or {}).get(component)
    if not isinstance(spec, Mapping):
        raise UnsupportedField(path, "no such component")
    _only(spec, POD_FIELDS | CONTROLLER_FIELDS | {"containers", "labels"}, path)
    containers = spec.get("containers") or []
    if not containers:
        raise UnsupportedField(
            path, "a component without containers (a serving runtime's model:) is not converted"
        )
    for i, c in enumerate(containers):
        _only(c, CONTAINER_FIELDS, f"{path}.containers[{i}]")
        _check_env(c, f"{path}.containers[{i}]")
    uris = {u for c in containers if (u := _storage_uri(c))}
    if len(uris) > 1:
        raise UnsupportedField(f"{path}.containers", f"more than one STORAGE_URI: {sorted(uris)}")
    pod_spec: dict[str, Any] = {k: copy.deepcopy(spec[k]) for k in sorted(POD_FIELDS) if k in spec}
    for i, v in enumerate(pod_spec.get("volumes") or []):
        _only(v, VOLUME_SOURCES | {"name"}, f"{path}.volumes[{i}]")
    converted = []
    for i, c in enumerate(containers):
        args = [str(a) for a in c.get("args") or []]
        extra = kserve_injected_args(dict(isvc), component, args) if i == 0 else []
        mount = bool(uris) and (
            _storage_uri(c) is not None or c.get("name") == "transformer-container"
        )
        converted.append(convert_container(c, f"{path}.containers[{i}]", extra, mount))
    pod_spec["containers"] = converted
    if uris:
        served = next(c for c in containers if _storage_uri(c))
        pod_spec["initContainers"] = [storage_initializer(uris.pop(), served, initializer_image)]
        pod_spec["volumes"] = [
            *pod_spec.get("volumes", []),
            {"name": PROVISION_VOLUME, "emptyDir": {}},
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _pod_metadata(isvc, component, spec),
        "spec": pod_spec,
    }


def isvc_pods(isvc: Mapping[str, Any], initializer_image: str) -> list[dict[str, Any]]:
    """The pods of every component of one InferenceService (predictor first)."""
    _only(isvc, ISVC_FIELDS, "")
    meta = isvc.get("metadata") or {}
    _only(meta, METADATA_FIELDS, "metadata")
    for key in meta.get("annotations") or {}:
        if key not in ANNOTATIONS:
            raise UnsupportedField(f"metadata.annotations.{key}")
    _only(isvc.get("spec") or {}, COMPONENTS, "spec")
    return [
        component_pod(isvc, c, initializer_image)
        for c in COMPONENTS
        if c in (isvc.get("spec") or {})
    ]


def raw_pods(docs: Iterable[Mapping[str, Any]], initializer_image: str) -> list[dict[str, Any]]:
    """Pods of every InferenceService in rendered ``docs`` (other kinds are not converted)."""
    return [
        p
        for d in docs
        if d.get("kind") == "InferenceService"
        for p in isvc_pods(d, initializer_image)
    ]


def for_local_run(
    pod: Mapping[str, Any],
    host_aliases: Mapping[str, list[str]],
    host_ports: Mapping[int, int],
    extra_env: Mapping[str, str],
) -> dict[str, Any]:
    """A converted pod adapted to ``podman kube play`` on one machine (``docs/deploy.md`` → *Local stack*).

    The only changes:

    * ``hostAliases`` (``ip -> names``): cluster DNS names (Services) resolved to the address the
      pod reaches the host's loopback at (slirp4netns ``allow_host_loopback``: 10.0.2.2);
    * ``hostPort`` + ``hostIP: 127.0.0.1`` on each container port in ``host_ports``
      (container port -> host port): the Service in front of the pod;
    * ``restartPolicy: OnFailure``: podman 4.3 applies the pod's policy to init containers too, and
      ``Always`` reruns a finished storage initializer forever;
    * emptyDir volumes renamed ``<pod>-<volume>``: podman's volume names are global, the pods'
      are not (both components have a ``tmp``);
    * ``extra_env`` appended to every container and init container (the S3 credentials IRSA or a
      Secret gives a cluster pod).
    """
    out = copy.deepcopy(dict(pod))
    spec, name = out["spec"], out["metadata"]["name"]
    spec["hostAliases"] = [
        {"ip": ip, "hostnames": list(names)} for ip, names in host_aliases.items()
    ]
    spec["restartPolicy"] = "OnFailure"
    renamed = {v["name"]: f"{name}-{v['name']}" for v in spec.get("volumes", []) if "emptyDir" in v}
    for v in spec.get("volumes", []):
        v["name"] = renamed.get(v["name"], v["name"])
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        for m in c.get("volumeMounts", []):
            m["name"] = renamed.get(m["name"], m["name"])
        c["env"] = [*c.get("env", []), *({"name": k, "value": v} for k, v in extra_env.items())]
        for p in c.get("ports", []):
            if p.get("containerPort") in host_ports:
                p.update(hostPort=host_ports[p["containerPort"]], hostIP="127.0.0.1")
    return out
