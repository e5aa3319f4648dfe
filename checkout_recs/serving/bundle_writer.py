"""The one writer of serving bundles (layout: ``bundle_layout``).

``assemble_bundle`` turns a trained model folder and the working folders into a bundle; the CLI
(``checkout-recs build-bundle``), the training pipeline's KFP component, the demo (through the
pipeline), the benchmarks and the tests' fixtures all call it. ``write_refreshed_bundle`` is the
index refresh's writer: the same bundle with a new ``index/``. Training stays in
``models.train.train_all``: callers train first, then assemble.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from checkout_recs.features.view_latest import latest_rows
from checkout_recs.models.inputs import listing_snapshot
from checkout_recs.retrieval.index import build_index
from checkout_recs.serving.bundle_layout import (
    CANDIDATE_TABLES,
    BundleInfo,
    BundleLayout,
    candidate_table_path,
)
from checkout_recs.storage import new_version


def assemble_bundle(
    model_dir: Path,
    labels_dir: Path,
    features_dir: Path,
    out_dir: Path,
    *,
    snapshot: pd.DataFrame | None = None,
    index_cfg: Any = None,
    index_version: str | None = None,
    mlflow_run_id: str | None = None,
) -> BundleInfo:
    """Write a serving bundle to ``out_dir`` (layout: ``bundle_layout``).

    Parameters
    ----------
    model_dir : Path
        A ``train_all``-shaped folder (``ranker/``, ``student/``, ``two_tower/``, ``metrics.json``),
        copied whole to ``model/``. Without ``two_tower/`` the bundle is catalogue-only: ``index/``
        holds just ``snapshot.parquet`` + ``manifest.json`` and serving uses built-in candidates.
    labels_dir : Path
        Labels folder (``co_purchase_items``, ``interactions``, ``category_pairs`` tables).
    features_dir : Path
        Features folder: ``user.parquet`` (its latest row per user becomes
        ``features/user.parquet``), ``category_pair.parquet``, and the listing / seller views
        the snapshot is built from.
    out_dir : Path
        The bundle folder (created; files already there are overwritten).
    snapshot : DataFrame, optional
        One row per listing (``models.inputs.listing_snapshot`` columns); default: built from
        ``features_dir`` (+ validated listings found next to ``labels_dir``), a block at a time
        when the bundle has a two-tower (``retrieval.index.build_index``).
    index_cfg : retrieval.index.IndexConfig, optional
        How the FAISS index is built; default ``IndexConfig()``.
    index_version : str, optional
        Version of ``index/``; default ``idx-<timestamp>``.
    mlflow_run_id : str, optional
        The training's MLflow run, recorded in ``bundle.json``.

    Returns
    -------
    BundleInfo
        What ``bundle.json`` now holds: ranker / two-tower versions (from the models'
        ``config.json``), index version, ``n_items`` (listings indexed), rows per candidate table.
    """

    layout = BundleLayout(out_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, layout.model_dir, dirs_exist_ok=True)
    if layout.two_tower_dir.is_dir():
        manifest = build_index(
            layout.two_tower_dir,
            Path(features_dir) if snapshot is None else snapshot,
            layout.index_dir,
            index_cfg,
            version=index_version,
            labels_dir=Path(labels_dir),
        )
        index_version, n_items = manifest.version, manifest.n_items
    else:
        if snapshot is None:
            snapshot = listing_snapshot(Path(features_dir), labels_dir=Path(labels_dir))
        index_version, n_items = _write_catalogue(snapshot, layout, index_version)
    tables = write_candidate_tables(labels_dir, features_dir, layout.candidates_dir)
    _write_users(Path(features_dir), layout)
    info = BundleInfo(
        ranker_version=_version(layout.ranker_dir),
        two_tower_version=_version(layout.two_tower_dir),
        index_version=index_version,
        n_items=n_items,
        candidate_tables=tables,
        mlflow_run_id=mlflow_run_id or None,
    )
    layout.write_info(info)
    return info


def write_candidate_tables(labels_dir: Path, features_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write ``retrieval.candidates.candidate_tables`` into a candidates folder ``out_dir`` (a
    bundle's ``candidates/``, file names ``bundle_layout.CANDIDATE_TABLES``).

    Returns rows written per table, int (0 for a table whose input is absent: no file).
    """
    from checkout_recs.retrieval.candidates import (
        candidate_tables,  # lazy: keeps scipy out of this module's import
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = candidate_tables(Path(labels_dir), Path(features_dir))
    for name, frame in tables.items():
        frame.to_parquet(candidate_table_path(out_dir, name), index=False)
    return {name: len(tables[name]) if name in tables else 0 for name in CANDIDATE_TABLES}


def write_refreshed_bundle(bundle_dir: Path, out_dir: Path, index: Any, version: str) -> BundleInfo:
    """Copy bundle ``bundle_dir`` to ``out_dir`` with ``index`` (a ``RetrievalIndex``) as its ``index/``.

    ``bundle.json`` keeps the source's fields and gets the new ``index_version`` (``version``),
    ``n_items`` (live listings saved) and ``refreshed_from`` (``bundle_dir``). Returns it.
    """
    src, out = BundleLayout(bundle_dir), BundleLayout(out_dir)
    shutil.copytree(src.root, out.root, ignore=shutil.ignore_patterns(src.index_dir.name))
    manifest = index.save(out.index_dir, version=version)
    info = src.read_info() if src.info_path.exists() else BundleInfo()
    info = info.model_copy(
        update={
            "index_version": manifest.version,
            "n_items": manifest.n_items,
            "refreshed_from": str(bundle_dir),
        }
    )
    out.write_info(info)
    return info


def _write_catalogue(
    snapshot: pd.DataFrame, layout: BundleLayout, version: str | None
) -> tuple[str, int]:
    """Catalogue-only ``index/``: the snapshot (one row per listing) and a manifest; returns
    (index version, listings)."""

    snap = snapshot.drop_duplicates("listing_id").reset_index(drop=True)
    layout.index_dir.mkdir(parents=True, exist_ok=True)
    snap.to_parquet(layout.snapshot, index=False)
    version = version or new_version("idx-")
    time_col = next((c for c in ("snapshot_time", "event_timestamp") if c in snap), None)
    snap_time = (
        str(pd.to_datetime(snap[time_col], utc=True).max())
        if time_col is not None and len(snap) and snap[time_col].notna().any()
        else None
    )
    layout.index_manifest.write_text(
        json.dumps(
            {
                "version": version,
                "kind": "catalogue",
                "n_items": len(snap),
                "snapshot_time": snap_time,
            },
            indent=2,
        )
    )
    return version, len(snap)


def _write_users(features_dir: Path, layout: BundleLayout) -> None:
    """``features/user.parquet``: the latest row per user of ``features_dir/user.parquet`` (if any),
    by ``user_id``, read a key range at a time (``view_latest.latest_rows``)."""

    src = features_dir / "user.parquet"
    if not src.exists():
        return
    layout.features_dir.mkdir(parents=True, exist_ok=True)
    latest_rows(src, "user_id").to_parquet(layout.user_features, index=False)


def _version(model_dir: Path) -> str | None:
    """``version`` of a saved model's ``config.json`` (ranker or two-tower), None when absent."""
    cfg = model_dir / "config.json"
    return json.loads(cfg.read_text()).get("version") if cfg.exists() else None
