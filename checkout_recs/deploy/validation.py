"""Validate every kustomize target of ``manifests/``: the entry point of ``make validate-manifests``.

The schemas used when the real KServe CRDs are absent come from the caller (``fallback``): the
CLI passes the ones derived from the kserve SDK (``cli.kserve_schema``), so the core imports no
kserve and no face.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from checkout_recs.deploy.crd_schema import CrdSchemas, load_crd_dir, load_schema_files
from checkout_recs.deploy.manifests import (
    K8S_VERSION,
    TargetReport,
    discover_targets,
    validate_target,
)


def load_schemas(
    manifests_dir: Path,
    crd_dir: Path,
    require_crds: bool = False,
    fallback: Callable[[], CrdSchemas] | None = None,
) -> tuple[CrdSchemas, str | None]:
    """Schemas for every custom kind we render, and a note when a fallback was used.

    Parameters
    ----------
    manifests_dir : Path
        Holds ``schemas/`` (hand-written PyTorchJob and PrometheusRule subsets).
    crd_dir : Path
        The real KServe CRDs (``../shared/conformance/kserve-crds`` from the repository root).
    require_crds : bool
        Raise ``FileNotFoundError`` instead of falling back when ``crd_dir`` has no CRDs.
    fallback : callable, optional
        Schemas used when the real CRDs are absent (the CLI passes those derived from the kserve
        SDK). Without one, absent CRDs raise ``FileNotFoundError`` as with ``require_crds``.

    Returns
    -------
    (schemas, note)
        ``note`` is None when the real CRDs were used, else a sentence saying what replaced them.
    """
    real = load_crd_dir(crd_dir)
    note = None
    if not real.schemas:
        if require_crds or fallback is None:
            raise FileNotFoundError(
                f"no KServe CRDs under {crd_dir} (see ../shared/conformance/README.md)"
            )
        real = fallback()
        note = (
            f"real KServe CRDs not found under {crd_dir}: InferenceService validated against "
            f"{next(iter(real.sources.values()), 'nothing')} instead"
        )
    return load_schema_files(manifests_dir / "schemas").merge(real), note


def validate_all(
    manifests_dir: Path, schemas: CrdSchemas, version: str = K8S_VERSION
) -> list[TargetReport]:
    """Build and validate every overlay and the training kustomization; one report per target."""
    return [validate_target(t, schemas, version) for t in discover_targets(manifests_dir)]
