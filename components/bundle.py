"""Component of the index step: the serving bundle (``serving.bundle_writer.assemble_bundle``)."""

from kfp.dsl import Dataset, Input, Model, Output

from components._base import component


@component
def build_bundle_op(
    model: Input[Model], labels: Input[Dataset], features: Input[Dataset], bundle: Output[Model]
) -> str:
    """``assemble_bundle``: ``model/``, ``index/``, ``candidates/``, ``features/user.parquet`` and
    ``bundle.json``, the same layout as ``checkout-recs build-bundle``. Returns the index version."""
    from pathlib import Path

    from checkout_recs.serving.bundle_writer import assemble_bundle

    info = assemble_bundle(
        Path(model.path),
        Path(labels.path),
        Path(features.path),
        Path(bundle.path),
        mlflow_run_id=model.metadata.get("mlflow_run_id") or None,
    )
    bundle.metadata.update({k: v for k, v in info.model_dump().items() if isinstance(v, str | int)})
    return info.index_version or ""
