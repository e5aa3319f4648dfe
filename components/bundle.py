"""Component of the index step: FAISS index + item snapshot + candidate tables = serving bundle."""

from kfp.dsl import Dataset, Input, Model, Output

from components._base import component


@component
def build_bundle_op(model: Input[Model], labels: Input[Dataset], features: Input[Dataset],
                    bundle: Output[Model]) -> str:
    """Assemble ``model/``, ``index/``, ``candidates/`` and ``bundle.json``. Returns the index version."""
    import json
    import shutil
    from pathlib import Path

    from checkout_recs.models.inputs import listing_snapshot
    from checkout_recs.retrieval.candidates import write_candidate_tables
    from checkout_recs.retrieval.index import build_index

    out = Path(bundle.path)
    shutil.copytree(model.path, out / "model")
    snapshot = listing_snapshot(Path(features.path), labels_dir=Path(labels.path))
    manifest = build_index(out / "model", snapshot, out / "index")
    tables = write_candidate_tables(Path(labels.path), Path(features.path), out / "candidates")
    info = {"ranker_version": model.metadata.get("ranker_version"),
            "two_tower_version": model.metadata.get("two_tower_version"),
            "index_version": manifest.version, "n_items": manifest.n_items, "candidate_tables": tables,
            "mlflow_run_id": model.metadata.get("mlflow_run_id") or None}
    (out / "bundle.json").write_text(json.dumps(info, indent=2))
    bundle.metadata.update({k: v for k, v in info.items() if isinstance(v, str | int)})
    return manifest.version
