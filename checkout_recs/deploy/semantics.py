"""Semantic checks on rendered manifests: what a schema cannot see.

* labels match selectors (workload selectors, Services, NetworkPolicies (ingress and egress),
  PodDisruptionBudgets and Istio AuthorizationPolicies select real pods);
* images pinned by tag (not ``latest``) or digest;
* every container sets CPU and memory requests and limits;
* pod security: non-root, read-only root filesystem, no privilege escalation, capabilities
  dropped;
* no secret in plain text (no ``Secret`` objects with data, no literal values for env vars
  named like secrets, no passwords inside URLs) and none in a command line (no ``$(VAR)`` in args
  or command where ``VAR`` comes from a Secret, directly or through another variable);
* serving containers (InferenceService components) have a readiness and a liveness probe;
* a collocated predictor (transformer and ranker in one pod, ``manifests/components/collocated``)
  is what KServe and Knative accept and what the code expects: containers named
  ``kserve-container`` and ``transformer-container``, ``STORAGE_URI`` in the first only, one
  declared port in the pod (Serverless), and the transformer's ``--predictor_url`` on loopback at
  the ranker's ``--http_port``;
* Istio ``ALLOW`` rules name their callers (a rule without ``from`` admits anyone);
* references resolve (service accounts, config maps, role bindings, ``$(VAR)`` in env and
  args) and RBAC is least
  privilege (no wildcards, no secrets, no create/delete; the exceptions are ``create`` on
  ``kubeflow.org`` ``pytorchjobs`` and ``ray.io`` ``rayjobs``, which the pipeline's distributed
  steps need, in the training namespace, whose only service account is the pipeline's own).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from checkout_recs.deploy.isvc import PREDICTOR_CONTAINER, TRANSFORMER_CONTAINER

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY)", re.I)
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_URL_PASSWORD = re.compile(r"://[^/@\s]*:(?!\$\()[^@/\s]+@")
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
_DANGEROUS_VERBS = {"create", "delete", "deletecollection", "escalate", "bind", "impersonate", "*"}
#: (apiGroup, resource) a Role may grant ``create`` on: the distributed steps' jobs (training's
#: PyTorchJob, the out-of-core data steps' RayJob).
_CREATE_ALLOWED = {("kubeflow.org", "pytorchjobs"), ("ray.io", "rayjobs")}
_ISVC_COMPONENTS = ("predictor", "transformer", "explainer")
_LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Finding:
    """One failed check: which resource, which layer of checks, and why."""

    resource: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.resource}: {self.message}"


@dataclass
class PodLike:
    """A pod spec wherever it sits (Deployment template, InferenceService component, ...)."""

    owner: str
    path: str
    spec: dict[str, Any]
    labels: dict[str, str]
    containers: list[dict[str, Any]]


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_specs(doc: dict[str, Any]) -> Iterator[PodLike]:
    """Every pod spec inside one resource, with the labels its pods will carry."""
    kind, spec, owner = doc.get("kind"), doc.get("spec", {}) or {}, _name(doc)
    if kind in _WORKLOADS:
        tpl = spec.get("template", {})
        yield _pod(owner, "spec.template.spec", tpl.get("spec", {}), tpl.get("metadata", {}))
    elif kind == "CronJob":
        tpl = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
        yield _pod(
            owner,
            "spec.jobTemplate.spec.template.spec",
            tpl.get("spec", {}),
            tpl.get("metadata", {}),
        )
    elif kind == "Pod":
        yield _pod(owner, "spec", spec, doc.get("metadata", {}))
    elif kind == "PyTorchJob":
        for role, rs in (spec.get("pytorchReplicaSpecs") or {}).items():
            tpl = rs.get("template", {})
            path = f"spec.pytorchReplicaSpecs.{role}.template.spec"
            yield _pod(owner, path, tpl.get("spec", {}), tpl.get("metadata", {}))
    elif kind == "RayJob":
        for path, tpl in rayjob_pod_templates(doc):
            yield _pod(owner, f"{path}.spec", tpl.get("spec", {}), tpl.get("metadata", {}))
    elif kind == "InferenceService":
        yield from _isvc_pods(doc)


def rayjob_pod_templates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, pod template) of a KubeRay ``RayJob``: the head, each worker group, the submitter."""
    spec = doc.get("spec", {}) or {}
    cluster = spec.get("rayClusterSpec", {}) or {}
    out = [("spec.rayClusterSpec.headGroupSpec.template", cluster.get("headGroupSpec", {}))]
    out = [(p, g.get("template", {})) for p, g in out if g]
    out += [
        (f"spec.rayClusterSpec.workerGroupSpecs.{i}.template", g.get("template", {}))
        for i, g in enumerate(cluster.get("workerGroupSpecs") or [])
    ]
    if spec.get("submitterPodTemplate"):
        out.append(("spec.submitterPodTemplate", spec["submitterPodTemplate"]))
    return out


def _pod(owner: str, path: str, spec: dict[str, Any], meta: dict[str, Any]) -> PodLike:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    return PodLike(owner, path, spec, dict(meta.get("labels") or {}), containers)


def _isvc_pods(doc: dict[str, Any]) -> Iterator[PodLike]:
    name = doc["metadata"]["name"]
    for comp in _ISVC_COMPONENTS:
        spec = doc.get("spec", {}).get(comp)
        if not spec:
            continue
        labels = {
            "serving.kserve.io/inferenceservice": name,
            "component": comp,
            **(spec.get("labels") or {}),
        }
        containers = list(spec.get("containers") or [])
        if spec.get("model"):
            containers.append({"name": "model", **spec["model"]})
        yield PodLike(_name(doc), f"spec.{comp}", spec, labels, containers)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _image_findings(pod: PodLike) -> Iterator[Finding]:
    for c in pod.containers:
        image = c.get("image")
        if not image:
            if c.get("name") != "model":  # a model spec may use a serving runtime's image
                yield Finding(
                    pod.owner, "image", f"{pod.path} container {c.get('name')} has no image"
                )
            continue
        last = image.rsplit("/", 1)[-1]
        if _DIGEST.search(image):
            continue
        if ":" not in last or last.endswith(":latest"):
            yield Finding(
                pod.owner, "image", f"{pod.path} image {image!r} is not pinned by tag or digest"
            )


def _resource_findings(pod: PodLike) -> Iterator[Finding]:
    for c in pod.containers:
        res = c.get("resources") or {}
        for section in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in (res.get(section) or {})]
            if missing:
                yield Finding(
                    pod.owner,
                    "resources",
                    f"{pod.path} {c.get('name')}: no {section} for {missing}",
                )


def _security_findings(pod: PodLike) -> Iterator[Finding]:
    pod_sc = pod.spec.get("securityContext") or {}
    for c in pod.containers:
        sc, who = c.get("securityContext") or {}, f"{pod.path} {c.get('name')}"
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            yield Finding(pod.owner, "pod-security", f"{who}: runAsNonRoot is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            yield Finding(
                pod.owner, "pod-security", f"{who}: allowPrivilegeEscalation is not false"
            )
        if sc.get("readOnlyRootFilesystem") is not True:
            yield Finding(pod.owner, "pod-security", f"{who}: readOnlyRootFilesystem is not true")
        if sc.get("privileged"):
            yield Finding(pod.owner, "pod-security", f"{who}: privileged")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            yield Finding(
                pod.owner, "pod-security", f"{who}: capabilities not dropped (drop: [ALL])"
            )


def _secret_env_findings(pod: PodLike) -> Iterator[Finding]:
    for c in pod.containers:
        for env in c.get("env") or []:
            value = env.get("value")
            if value is None:
                continue
            if _SECRET_NAME.search(env.get("name", "")):
                yield Finding(
                    pod.owner, "secrets", f"{pod.path} env {env['name']} holds a literal value"
                )
            if _URL_PASSWORD.search(str(value)):
                yield Finding(
                    pod.owner, "secrets", f"{pod.path} env {env['name']} has a password in a URL"
                )


def _secret_arg_findings(pod: PodLike) -> Iterator[Finding]:
    """A ``$(VAR)`` in args/command whose value comes from a Secret puts the secret in the pod spec
    the kubelet expands and in every process listing: secrets go through env only."""
    for c in pod.containers:
        secret: set[str] = set()
        for env in c.get("env") or []:
            from_secret = "secretKeyRef" in (env.get("valueFrom") or {})
            if from_secret or set(_VAR_REF.findall(str(env.get("value") or ""))) & secret:
                secret.add(env.get("name", ""))
        for arg in (c.get("args") or []) + (c.get("command") or []):
            for ref in set(_VAR_REF.findall(str(arg))) & secret:
                yield Finding(
                    pod.owner,
                    "secrets",
                    f"{pod.path} {c.get('name')}: argument uses $({ref}), which "
                    "holds a secret (read it from the environment instead)",
                )


def _env_ref_findings(pod: PodLike) -> Iterator[Finding]:
    """``$(VAR)`` in env values must name a variable defined earlier; in args/command, any."""
    for c in pod.containers:
        defined: list[str] = []
        for env in c.get("env") or []:
            for ref in _VAR_REF.findall(str(env.get("value") or "")):
                if ref not in defined:
                    yield Finding(
                        pod.owner,
                        "references",
                        f"{pod.path} env {env['name']} uses $({ref}) before it is defined",
                    )
            defined.append(env.get("name", ""))
        for arg in (c.get("args") or []) + (c.get("command") or []):
            for ref in _VAR_REF.findall(str(arg)):
                if ref not in defined:
                    yield Finding(
                        pod.owner,
                        "references",
                        f"{pod.path} {c.get('name')}: $({ref}) is not an env var",
                    )


def _reference_findings(pod: PodLike, names: dict[str, set[str]]) -> Iterator[Finding]:
    sa = pod.spec.get("serviceAccountName")
    if sa and sa != "default" and sa not in names["ServiceAccount"]:
        yield Finding(pod.owner, "references", f"{pod.path} service account {sa!r} is not defined")
    for vol in pod.spec.get("volumes") or []:
        cm = (vol.get("configMap") or {}).get("name")
        if cm and cm not in names["ConfigMap"]:
            yield Finding(pod.owner, "references", f"{pod.path} config map {cm!r} is not defined")
        pvc = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if pvc and pvc not in names["PersistentVolumeClaim"]:
            yield Finding(
                pod.owner, "references", f"{pod.path} volume claim {pvc!r} is not defined"
            )


def _selector_findings(doc: dict[str, Any], pods: list[PodLike]) -> Iterator[Finding]:
    kind, spec, who = doc.get("kind"), doc.get("spec", {}) or {}, _name(doc)
    all_labels = [p.labels for p in pods]
    if kind in _WORKLOADS:
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        tpl = (spec.get("template", {}).get("metadata") or {}).get("labels") or {}
        if not sel or not _matches(sel, tpl):
            yield Finding(who, "selectors", f"selector {sel} does not match template labels {tpl}")
    elif kind == "Service" and spec.get("type") != "ExternalName":
        sel = spec.get("selector") or {}
        if not sel or not any(_matches(sel, lab) for lab in all_labels):
            yield Finding(who, "selectors", f"selector {sel} matches no pod in this build")
    elif kind == "NetworkPolicy":
        sels = [(spec.get("podSelector") or {}).get("matchLabels") or {}]
        peers = [p for rule in spec.get("ingress") or [] for p in rule.get("from") or []]
        peers += [p for rule in spec.get("egress") or [] for p in rule.get("to") or []]
        sels += [
            (p.get("podSelector") or {}).get("matchLabels")
            for p in peers
            if "podSelector" in p and "namespaceSelector" not in p
        ]
        for sel in sels:
            if sel is not None and not any(_matches(sel, lab) for lab in all_labels):
                yield Finding(who, "selectors", f"pod selector {sel} matches no pod in this build")
    elif kind in ("PodDisruptionBudget", "AuthorizationPolicy"):
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        if not sel or not any(_matches(sel, lab) for lab in all_labels):
            yield Finding(who, "selectors", f"selector {sel} matches no pod in this build")


def _rbac_findings(doc: dict[str, Any], names: dict[str, set[str]]) -> Iterator[Finding]:
    kind, who = doc.get("kind"), _name(doc)
    if kind in ("Role", "ClusterRole"):
        if kind == "ClusterRole":
            yield Finding(
                who, "rbac", "cluster-wide role: the deploy step needs a namespaced Role only"
            )
        for rule in doc.get("rules") or []:
            if "*" in (rule.get("apiGroups") or []) + (rule.get("resources") or []):
                yield Finding(who, "rbac", f"wildcard in rule {rule}")
            if "secrets" in (rule.get("resources") or []):
                yield Finding(who, "rbac", "grants access to secrets")
            bad = _DANGEROUS_VERBS & set(rule.get("verbs") or [])
            targets = {
                (g, r) for g in rule.get("apiGroups") or [] for r in rule.get("resources") or []
            }
            if bad == {"create"} and targets and targets <= _CREATE_ALLOWED:
                bad = set()
            if bad:
                yield Finding(who, "rbac", f"grants {sorted(bad)}")
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        ref = doc.get("roleRef", {})
        if ref.get("name") not in names.get(ref.get("kind", ""), set()):
            yield Finding(
                who, "references", f"roleRef {ref.get('kind')}/{ref.get('name')} is not defined"
            )
        for s in doc.get("subjects") or []:
            if s.get("kind") == "ServiceAccount" and s.get("name") not in names["ServiceAccount"]:
                yield Finding(
                    who, "references", f"subject service account {s.get('name')!r} is not defined"
                )


def _isvc_findings(doc: dict[str, Any]) -> Iterator[Finding]:
    for comp in _ISVC_COMPONENTS:
        spec = doc.get("spec", {}).get(comp)
        if not spec:
            continue
        lo, hi = spec.get("minReplicas"), spec.get("maxReplicas")
        if not (isinstance(lo, int) and isinstance(hi, int) and lo <= hi):
            yield Finding(
                _name(doc),
                "autoscaling",
                f"{comp}: need minReplicas <= maxReplicas, got {lo}, {hi}",
            )
        for key in ("scaleTarget", "scaleMetric", "timeout"):
            if key not in spec:
                yield Finding(_name(doc), "autoscaling", f"{comp}: {key} is not set")
        pct = spec.get("canaryTrafficPercent")
        if pct is not None and not 0 <= pct <= 100:
            yield Finding(_name(doc), "canary", f"{comp}: canaryTrafficPercent {pct} not in 0..100")


def _authz_findings(doc: dict[str, Any]) -> Iterator[Finding]:
    """Istio ALLOW rules must name their callers and what they may call."""
    spec, who = doc.get("spec") or {}, _name(doc)
    if spec.get("action", "ALLOW") != "ALLOW":
        return
    if not spec.get("rules"):
        yield Finding(who, "authorization", "ALLOW policy without rules: denies every request")
    for i, rule in enumerate(spec.get("rules") or []):
        if not rule.get("from"):
            yield Finding(who, "authorization", f"rule {i} has no 'from': admits any caller")
        if not rule.get("to"):
            yield Finding(
                who, "authorization", f"rule {i} has no 'to': admits every path and method"
            )


def _probe_findings(doc: dict[str, Any]) -> Iterator[Finding]:
    """Serving containers need a readiness probe (traffic) and a liveness probe (restart)."""
    for comp in _ISVC_COMPONENTS:
        for c in (doc.get("spec", {}).get(comp) or {}).get("containers") or []:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    yield Finding(
                        _name(doc), "probes", f"{comp} container {c.get('name')}: no {probe}"
                    )


def _flag(args: list[Any], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in ``args`` (the last one wins), else None."""
    value = None
    for i, a in enumerate(str(x) for x in args):
        if a.startswith(name + "="):
            value = a.split("=", 1)[1]
        elif a == name and i + 1 < len(args):
            value = str(args[i + 1])
    return value


def _collocation_findings(doc: dict[str, Any]) -> Iterator[Finding]:
    """A predictor with a transformer container: KServe's names, one STORAGE_URI (the ranker's),
    one declared port (Knative, Serverless), and the transformer calling the ranker on loopback."""
    pred = doc.get("spec", {}).get("predictor") or {}
    containers = pred.get("containers") or []
    if len(containers) < 2:
        return
    who, by_name = _name(doc), {c.get("name"): c for c in containers}
    ranker, transformer = by_name.get(PREDICTOR_CONTAINER), by_name.get(TRANSFORMER_CONTAINER)
    if ranker is None or transformer is None:
        yield Finding(
            who,
            "collocation",
            f"predictor containers {sorted(map(str, by_name))}: KServe needs "
            f"{PREDICTOR_CONTAINER!r} and {TRANSFORMER_CONTAINER!r} (the model volume is mounted by name)",
        )
        return
    if any(e.get("name") == "STORAGE_URI" for e in transformer.get("env") or []):
        yield Finding(
            who,
            "collocation",
            f"{TRANSFORMER_CONTAINER} sets STORAGE_URI: KServe refuses it "
            f"(the pod's one download is {PREDICTOR_CONTAINER}'s)",
        )
    mode = (doc.get("metadata", {}).get("annotations") or {}).get(
        "serving.kserve.io/deploymentMode", "Serverless"
    )
    ports = sum(len(c.get("ports") or []) for c in containers)
    if mode == "Serverless" and ports != 1:
        yield Finding(
            who,
            "collocation",
            f"{ports} container ports declared: Knative serves exactly one per pod "
            f"(the transformer's)",
        )
    url, port = (
        _flag(transformer.get("args") or [], "--predictor_url"),
        _flag(ranker.get("args") or [], "--http_port"),
    )
    if url is None or not any(url.rstrip("/") == f"http://{h}:{port}" for h in _LOOPBACK):
        yield Finding(
            who,
            "collocation",
            f"{TRANSFORMER_CONTAINER} --predictor_url={url} does not reach "
            f"{PREDICTOR_CONTAINER} --http_port={port} on loopback",
        )


def _plain_secret_findings(doc: dict[str, Any]) -> Iterator[Finding]:
    if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
        yield Finding(
            _name(doc), "secrets", "Secret with data in the repository (use External Secrets)"
        )
    if doc.get("kind") == "ConfigMap":
        for key in doc.get("data") or {}:
            if _SECRET_NAME.search(key):
                yield Finding(_name(doc), "secrets", f"config map key {key!r} looks like a secret")


def semantic_findings(docs: list[dict[str, Any]]) -> list[Finding]:
    """Every semantic problem in one rendered build (empty list when there is none).

    Parameters
    ----------
    docs : list of dict
        The resources of one kustomize build (references resolve within the build only).
    """
    names: dict[str, set[str]] = {}
    for d in docs:
        names.setdefault(d.get("kind", ""), set()).add(d.get("metadata", {}).get("name"))
    for k in ("ServiceAccount", "ConfigMap", "Role", "ClusterRole", "PersistentVolumeClaim"):
        names.setdefault(k, set())
    pods = [p for d in docs for p in pod_specs(d)]
    out: list[Finding] = []
    for pod in pods:
        for check in (
            _image_findings,
            _resource_findings,
            _security_findings,
            _secret_env_findings,
            _secret_arg_findings,
            _env_ref_findings,
        ):
            out.extend(check(pod))
        out.extend(_reference_findings(pod, names))
    for doc in docs:
        out.extend(_selector_findings(doc, pods))
        out.extend(_rbac_findings(doc, names))
        out.extend(_plain_secret_findings(doc))
        if doc.get("kind") == "InferenceService":
            out.extend(_isvc_findings(doc))
            out.extend(_probe_findings(doc))
            out.extend(_collocation_findings(doc))
        if doc.get("kind") == "AuthorizationPolicy":
            out.extend(_authz_findings(doc))
    return out
