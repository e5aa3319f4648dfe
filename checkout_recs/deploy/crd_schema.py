"""JSON Schemas for custom resources: from real CRD files, made strict.

A CRD's ``openAPIV3Schema`` is almost JSON Schema. Two differences matter when we check our own
manifests offline:

* the API server prunes or (with ``--validate=strict``) rejects fields a structural schema does
  not declare, but JSON Schema allows them; :func:`strict_schema` closes every object that lists
  ``properties`` and does not say ``x-kubernetes-preserve-unknown-fields`` (so a typo such as
  ``minReplica`` fails here, as it would on a cluster with strict field validation);
* ``nullable: true`` must allow ``null``.

Where the real CRDs are absent, callers may pass schemas derived some other way (see
``cli/kserve_schema.py``); :class:`CrdSchemas` records where each
schema came from so a report can say so.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_LOADER = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)  # the CRD file is 2 MB: libyaml is 8x faster

#: Where the real KServe CRDs live, relative to the repository root (CI has them there).
DEFAULT_CRD_DIR = Path("../shared/conformance/kserve-crds")


@dataclass
class CrdSchemas:
    """Strict JSON Schemas by ``(apiVersion, kind)``, and where each came from.

    Attributes
    ----------
    schemas : dict
        ``{("serving.kserve.io/v1beta1", "InferenceService"): {...json schema...}}``.
    sources : dict
        Same keys; a short human-readable origin, e.g. ``"crd:/path/file.yaml"``.
    """

    schemas: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    sources: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, api_version: str, kind: str, schema: dict[str, Any], source: str) -> None:
        """Register ``schema`` for ``apiVersion``/``kind`` (later additions win)."""
        self.schemas[(api_version, kind)] = schema
        self.sources[(api_version, kind)] = source

    def get(self, api_version: str, kind: str) -> dict[str, Any] | None:
        """The schema for a resource, or None when this kind is unknown."""
        return self.schemas.get((api_version, kind))

    def merge(self, other: CrdSchemas) -> CrdSchemas:
        """A new set with ``other``'s entries added to (and overriding) this one's."""
        out = CrdSchemas(dict(self.schemas), dict(self.sources))
        out.schemas.update(other.schemas)
        out.sources.update(other.sources)
        return out


def strict_schema(node: Any) -> Any:
    """A copy of an ``openAPIV3Schema`` with every declared object closed to unknown fields.

    Parameters
    ----------
    node : dict
        A (sub)schema from a CRD.

    Returns
    -------
    dict
        The strict JSON Schema (the input is not modified).
    """
    node = copy.deepcopy(node)
    _close(node)
    return node


def _close(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _close(item)
        return
    if not isinstance(node, dict):
        return
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    for value in node.values():
        _close(value)


def load_crd_dir(crd_dir: Path) -> CrdSchemas:
    """Strict schemas of every CRD version in the ``*.yaml`` files of ``crd_dir``.

    Parameters
    ----------
    crd_dir : Path
        Folder of CRD manifests (``apiextensions.k8s.io/v1``).

    Returns
    -------
    CrdSchemas
        Empty when the folder does not exist (the caller decides whether that is acceptable).
    """
    out = CrdSchemas()
    if not crd_dir.is_dir():
        return out
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=_LOADER):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                _add_crd(out, doc, f"crd:{path}")
    return out


def _add_crd(out: CrdSchemas, doc: dict[str, Any], source: str) -> None:
    """Every version of one ``CustomResourceDefinition`` document, made strict, into ``out``."""
    group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
    for version in doc["spec"]["versions"]:
        schema = version.get("schema", {}).get("openAPIV3Schema")
        if schema:
            out.add(f"{group}/{version['name']}", kind, strict_schema(schema), source)


def load_schema_files(schema_dir: Path) -> CrdSchemas:
    """Hand-written schemas kept in the repository (``<kind>.<group>_<version>.yaml``).

    Each file holds ``apiVersion``, ``kind``, ``source`` (a sentence on where it comes from)
    and ``schema`` (an ``openAPIV3Schema``-style document). Used for CRDs whose upstream
    definition is not vendored (PyTorchJob, PrometheusRule). A file holding a real
    ``CustomResourceDefinition`` (the KubeRay RayJob's) is read like ``load_crd_dir`` reads one.
    """
    out = CrdSchemas()
    if not schema_dir.is_dir():
        return out
    for path in sorted(schema_dir.glob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=_LOADER)
        if doc.get("kind") == "CustomResourceDefinition":
            _add_crd(out, doc, f"crd:{path.name}")
            continue
        out.add(
            doc["apiVersion"],
            doc["kind"],
            strict_schema(doc["schema"]),
            f"hand-written:{path.name}",
        )
    return out
