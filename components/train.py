"""Component of the train step: two-tower retrieval + multi-task ranker, logged to MLflow."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._base import component


@component
def train_op(training_set: Input[Dataset], labels: Input[Dataset], features: Input[Dataset],
             mlflow_tracking_uri: str, seed: int, model: Output[Model], metrics: Output[Metrics]) -> str:
    """``train_all``: ranker (click, purchase heads) and two-tower embeddings. Returns the MLflow run id."""
    import math
    from pathlib import Path

    from checkout_recs.models.train import TrainConfig, train_all

    cfg = TrainConfig(tracking_uri=mlflow_tracking_uri or None, seed=seed)
    ts = Path(training_set.path) / "training_set.parquet"
    summary = train_all(ts, Path(labels.path), Path(features.path), Path(model.path), cfg)
    for k, v in summary.metrics.items():
        if isinstance(v, float | int) and math.isfinite(v):
            metrics.log_metric(k, float(v))
    model.metadata.update({"ranker_version": summary.ranker_version,
                           "two_tower_version": summary.two_tower_version,
                           "mlflow_run_id": summary.mlflow_run_id or ""})
    return summary.mlflow_run_id or ""
