"""Component of the evaluate step: challenger and champion side by side on the held-out share."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components._base import component


@component
def evaluate_op(
    bundle: Input[Model],
    training_set: Input[Dataset],
    validation_share: float,
    mlflow_tracking_uri: str,
    metrics: Output[Metrics],
    report: Output[HTML],
) -> str:
    """Offline metrics per segment and off-policy estimates (SNIPS, DR) of the new model AND of
    the current champion (MLflow alias ``champion``), on the same held-out rows
    (``deploy.challenge.evaluate_side_by_side``).

    Evaluates on the latest ``validation_share`` of requests (the same time split training
    held out). The challenger's figures go to ``metrics`` (the champion's as ``champion_*``);
    the comparison page to ``report``. Returns the side-by-side result as JSON (the gate's input).
    """
    import json
    import logging
    import shutil
    import tempfile
    from pathlib import Path

    import pandas as pd

    from checkout_recs.deploy.challenge import evaluate_side_by_side
    from checkout_recs.models.train import split_by_time
    from checkout_recs.serving.bundle_layout import BundleLayout
    from checkout_recs.tracking import alias_version, champion_model_dir

    frame = pd.read_parquet(Path(training_set.path) / "training_set.parquet")
    _, held_out = split_by_time(frame, validation_share)
    with tempfile.TemporaryDirectory() as tmp:
        champ = alias_version(mlflow_tracking_uri, "champion") if mlflow_tracking_uri else None
        champ_dir = (
            champion_model_dir(mlflow_tracking_uri, Path(tmp) / "champion_model") if champ else None
        )
        result = evaluate_side_by_side(
            BundleLayout(Path(bundle.path)).model_dir,
            held_out,
            Path(tmp) / "eval",
            champ_dir,
            champ[0] if champ else None,
        )
        shutil.copyfile(result.pop("report_html"), report.path)
    for k, v in result["challenger"].items():
        metrics.log_metric(k, v)
    for k, v in (result["champion"] or {}).items():
        metrics.log_metric(f"champion_{k}", v)
    logging.getLogger("components.evaluate").info(
        "champion: %s %s", result["champion_version"] or "none", result["champion_note"]
    )
    return json.dumps(result)
