"""Shared fixtures of the ops area (manifests). Import explicitly:

    from tests.fixtures_ops import rendered, kserve_schemas  # noqa: F401

The fake servers (Kubernetes API, KFP API, metrics) are in ``tests/fixtures_ops_servers.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from checkout_recs.deploy.crd_schema import CrdSchemas, load_crd_dir, load_schema_files

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
CRD_DIR = REPO.parent / "shared" / "conformance" / "kserve-crds"


@pytest.fixture(scope="session")
def kserve_schemas() -> CrdSchemas:
    """Real KServe CRD schemas (+ hand-written PyTorchJob/PrometheusRule subsets).

    Where ``../shared/conformance/kserve-crds`` is absent, says so loudly (a warning in the
    test summary) and uses the schema derived from the kserve SDK's model classes.
    """
    real = load_crd_dir(CRD_DIR)
    if not real.schemas:
        from cli.kserve_schema import kserve_sdk_schemas

        warnings.warn(
            f"real KServe CRDs absent at {CRD_DIR}: validating against the kserve SDK-derived schema",
            UserWarning,
            stacklevel=1,
        )
        real = kserve_sdk_schemas()
    return load_schema_files(MANIFESTS / "schemas").merge(real)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Every kustomize target rendered once: ``{"overlays/staging": [docs...], ...}``."""
    from checkout_recs.deploy.manifests import build, discover_targets

    return {str(t.relative_to(MANIFESTS)): build(t) for t in discover_targets(MANIFESTS)}


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    """The first rendered resource of ``kind`` (and ``name``); KeyError when none."""
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    raise KeyError(f"{kind}/{name}")
