"""Reading a KServe InferenceService object: components, layout, bundle URI, traffic split, readiness.

Pure functions over the object as the API server returns it (a dict); the rollout
(``checkout_recs.deploy.rollout``) patches and watches, these tell it what it sees.

Two layouts serve the pair (transformer + ranker):

* ``collocated`` (production): one predictor component whose pod holds ``kserve-container`` (the
  ranker, with ``STORAGE_URI``) and ``transformer-container``; one revision, one traffic split, so
  every request is answered by the transformer and ranker of one bundle;
* ``split``: a transformer component and a predictor component, each with its own revisions and
  its own ``canaryTrafficPercent`` split, drawn independently per request by KServe: during a
  canary at p %, a share 2p(1-p) of requests pairs a transformer of one bundle with the ranker of
  the other.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

COMPONENTS = ("transformer", "predictor", "explainer")
#: KServe's container names in a collocated predictor (the model volume is mounted into both).
PREDICTOR_CONTAINER, TRANSFORMER_CONTAINER = "kserve-container", "transformer-container"
Layout = Literal["collocated", "split", "predictor-only"]


def components_of(isvc: dict[str, Any]) -> list[str]:
    """Components present in the spec (transformer first)."""
    return [c for c in COMPONENTS if isvc.get("spec", {}).get(c)]


def layout(isvc: dict[str, Any]) -> Layout:
    """``collocated`` (a ``transformer-container`` in the predictor), ``split`` (a transformer
    component) or ``predictor-only``."""
    spec = isvc.get("spec", {})
    if any(
        c.get("name") == TRANSFORMER_CONTAINER
        for c in (spec.get("predictor") or {}).get("containers") or []
    ):
        return "collocated"
    return "split" if spec.get("transformer") else "predictor-only"


def transformer_container(isvc: dict[str, Any]) -> dict[str, Any] | None:
    """The transformer's container: ``transformer-container`` of the predictor when collocated,
    else the transformer component's first container; None without a transformer."""
    spec = isvc.get("spec", {})
    for c in (spec.get("predictor") or {}).get("containers") or []:
        if c.get("name") == TRANSFORMER_CONTAINER:
            return c
    return next(iter((spec.get("transformer") or {}).get("containers") or []), None)


def storage_uri(isvc: dict[str, Any]) -> str | None:
    """The bundle URI the predictor loads (``STORAGE_URI`` env, else ``model.storageUri``)."""
    pred = isvc.get("spec", {}).get("predictor", {})
    for c in pred.get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") == "STORAGE_URI":
                return e.get("value")
    return (pred.get("model") or {}).get("storageUri")


def latest_traffic(
    isvc: dict[str, Any], component: str
) -> tuple[str | None, int | None, str | None]:
    """``(latest revision, its percent, previous revision)`` from the component's status."""
    traffic = (isvc.get("status", {}).get("components", {}).get(component) or {}).get(
        "traffic"
    ) or []
    latest = next((t for t in traffic if t.get("latestRevision")), None)
    prev = next((t for t in traffic if not t.get("latestRevision")), None)
    if latest is None:
        return None, None, prev and prev.get("revisionName")
    return (
        latest.get("revisionName"),
        int(latest.get("percent") or 0),
        prev and prev.get("revisionName"),
    )


def is_ready_at(isvc: dict[str, Any], percent: int) -> bool:
    """True when the controller has applied this generation and the latest revision of every
    component gets ``percent`` of the traffic (100: all of it)."""
    meta, status = isvc.get("metadata", {}), isvc.get("status", {})
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return ready and all(latest_traffic(isvc, c)[1] == percent for c in components_of(isvc))


def rolled_back(isvc: dict[str, Any]) -> bool:
    """True when the controller has applied this generation and, in every component that still
    has a previous revision, the latest revision gets no traffic."""
    meta, status = isvc.get("metadata", {}), isvc.get("status", {})
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    for c in components_of(isvc):
        _, pct, prev = latest_traffic(isvc, c)
        if prev is not None and pct not in (0, None):
            return False
    return True


def containers_with_uri(spec: dict[str, Any], uri: str) -> list[dict[str, Any]]:
    """A copy of a component's containers with every ``STORAGE_URI`` env set to ``uri``."""
    containers = copy.deepcopy(spec.get("containers") or [])
    for c in containers:
        for e in c.get("env") or []:
            if e.get("name") == "STORAGE_URI":
                e["value"] = uri
    return containers
