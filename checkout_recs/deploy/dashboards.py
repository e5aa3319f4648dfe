"""Copy the Grafana dashboards of ``monitoring/dashboards/`` into the kustomize base, where the
``checkout-recs-dashboards`` ConfigMap generator reads them (kustomize reads files under the
kustomization's folder only). ``checkout-recs manifests sync-alerts`` runs it; a test fails when
a copy is stale. The Grafana sidecar loads ConfigMaps labelled ``grafana_dashboard: "1"``.
"""

from __future__ import annotations

from pathlib import Path

SOURCE_DIR = Path("monitoring/dashboards")
TARGET_DIR = Path("manifests/base/dashboards")
CONFIGMAP = "checkout-recs-dashboards"


def dashboard_files(repo: Path) -> list[Path]:
    """The dashboards (``*.json``) of ``monitoring/dashboards/``, sorted."""
    return sorted((repo / SOURCE_DIR).glob("*.json"))


def stale_dashboards(repo: Path) -> list[str]:
    """Names of the dashboards whose copy in the base is missing or differs from the source."""
    return [
        src.name
        for src in dashboard_files(repo)
        if not (repo / TARGET_DIR / src.name).exists()
        or (repo / TARGET_DIR / src.name).read_bytes() != src.read_bytes()
    ]


def sync_dashboards(repo: Path) -> list[Path]:
    """Copy every dashboard into ``manifests/base/dashboards/`` byte for byte; the written paths."""
    out = []
    for src in dashboard_files(repo):
        target = repo / TARGET_DIR / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
        out.append(target)
    return out
