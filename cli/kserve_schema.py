"""Fallback InferenceService schema derived from the kserve SDK's model classes.

Used by ``checkout-recs manifests validate`` only when the real CRDs
(``../shared/conformance/kserve-crds``) are absent. The SDK's swagger-generated classes list
every field (``attribute_map``) and its type (``openapi_types``); walking them from
``V1beta1InferenceService`` gives a strict JSON Schema of the same shape as the CRD's, minus
the CRD's enums, patterns and required lists (so it is weaker, and the report says which
schema was used). Types the installed SDKs do not define are left open and counted.

Lives beside the command modules (not in ``checkout_recs/deploy``) because it imports kserve.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import importlib
import re
from typing import Any

_SCALARS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string"},
    "date": {"type": "string"},
    "object": {},
    "ResourceQuantity": {"type": ["integer", "number", "string"]},
    "V1Time": {"type": "string"},
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Deriver:
    def __init__(self) -> None:
        import kserve.models as kserve_models  # heavy (~10 s on 2 cores): only on the fallback path
        import kubernetes.client.models as k8s_models

        self.modules = [kserve_models, k8s_models]
        self.defs: dict[str, dict[str, Any]] = {}
        self.open_types: set[str] = set()

    def _class(self, name: str) -> Any:
        for mod in self.modules:
            cls = getattr(mod, name, None)
            if cls is not None:
                return cls
        try:  # some kserve models are not re-exported by kserve.models
            return getattr(importlib.import_module(f"kserve.models.{_snake(name)}"), name)
        except (ImportError, AttributeError):
            return None

    def type_schema(self, t: str) -> dict[str, Any]:
        t = t.strip()
        if t in _SCALARS:
            return dict(_SCALARS[t])
        if t.startswith("list[") and t.endswith("]"):
            return {"type": "array", "items": self.type_schema(t[5:-1])}
        if t.startswith("dict(") and t.endswith(")"):
            return {
                "type": "object",
                "additionalProperties": self.type_schema(t[5:-1].split(",", 1)[1]),
            }
        return self.ref(t)

    def ref(self, name: str) -> dict[str, Any]:
        if name not in self.defs:
            cls = self._class(name)
            if cls is None or not hasattr(cls, "openapi_types"):
                self.open_types.add(name)
                self.defs[name] = {"type": "object"}
            else:
                self.defs[name] = {}  # placeholder breaks cycles
                props = {
                    cls.attribute_map[attr]: self.type_schema(t)
                    for attr, t in cls.openapi_types.items()
                }
                self.defs[name] = {
                    "type": "object",
                    "properties": props,
                    "additionalProperties": False,
                }
        return {"$ref": f"#/$defs/{name}"}


def kserve_sdk_isvc_schema() -> tuple[dict[str, Any], set[str]]:
    """Strict JSON Schema of ``serving.kserve.io/v1beta1`` InferenceService from the SDK.

    Returns
    -------
    (schema, open_types)
        ``schema`` validates a whole InferenceService document; ``open_types`` names the
        referenced types the installed SDKs do not define, which the schema leaves open.
    """
    d = _Deriver()
    root = d.ref("V1beta1InferenceService")
    schema = {**root, "$defs": d.defs}
    # metadata is checked separately as a core ObjectMeta; status is never rendered.
    return schema, d.open_types


def kserve_sdk_schemas() -> Any:
    """The fallback as a ``CrdSchemas`` set, its source naming the SDK and its open types."""
    from importlib.metadata import version

    from checkout_recs.deploy.crd_schema import CrdSchemas

    schema, open_types = kserve_sdk_isvc_schema()
    out = CrdSchemas()
    source = f"kserve-sdk {version('kserve')} model classes (fallback; {len(open_types)} types left open)"
    out.add("serving.kserve.io/v1beta1", "InferenceService", schema, source)
    return out
