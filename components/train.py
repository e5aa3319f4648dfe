"""Components of the train step, one per model: ranker → distil (student), two-tower retrieval in
parallel, and a merge that assembles one model folder and logs the MLflow run."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._base import component


@component
def train_ranker_op(
    training_set: Input[Dataset],
    seed: int,
    model: Output[Model],
    metrics: Output[Metrics],
    workers: int = 1,
    artifact_root: str = "",
    s3_endpoint_url: str = "",
    k8s_host: str = "",
    training_namespace: str = "checkout-recs-training",
) -> str:
    """``train_ranker_stage``: the multi-task ranker (click, purchase heads). Returns its version.
    ``workers`` >= 2: trained by a ``PyTorchJob`` of that many processes
    (``checkout_recs.deploy.training_job``) through ``artifact_root``; else in this pod."""
    from pathlib import Path

    from checkout_recs.deploy.training_job import Cluster, train_stage
    from checkout_recs.models.train import TrainConfig
    from checkout_recs.tracking import finite_metrics
    from components._base import COMPONENT_IMAGE

    cluster = Cluster(workers, artifact_root, COMPONENT_IMAGE, training_namespace, k8s_host,
                      s3_endpoint_url)  # fmt: skip
    out = train_stage(
        "ranker", Path(training_set.path), Path(model.path), TrainConfig(seed=seed), cluster
    )
    for k, v in finite_metrics(out["metrics"]).items():
        metrics.log_metric(k, v)
    model.metadata["ranker_version"] = out["version"]
    return out["version"]


@component
def distil_op(
    ranker: Input[Model],
    training_set: Input[Dataset],
    seed: int,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """``distil_stage``: copies the ranker folder and adds ``student/`` next to ``ranker/``."""
    import shutil
    from pathlib import Path

    from checkout_recs.models.train import TrainConfig, distil_stage
    from checkout_recs.tracking import finite_metrics

    shutil.copytree(ranker.path, model.path, dirs_exist_ok=True)
    out = distil_stage(
        Path(model.path), Path(training_set.path) / "training_set.parquet", TrainConfig(seed=seed)
    )
    for k, v in finite_metrics(out["metrics"]).items():
        metrics.log_metric(k, v)
    model.metadata.update(ranker.metadata)


@component
def train_retrieval_op(
    labels: Input[Dataset],
    features: Input[Dataset],
    seed: int,
    model: Output[Model],
    metrics: Output[Metrics],
    workers: int = 1,
    artifact_root: str = "",
    s3_endpoint_url: str = "",
    k8s_host: str = "",
    training_namespace: str = "checkout-recs-training",
) -> str:
    """``train_retrieval_stage``: the two-tower retrieval model. Returns its version.
    ``workers`` >= 2: trained by a ``PyTorchJob``, as ``train_ranker_op``."""
    import tempfile
    from pathlib import Path

    from checkout_recs.deploy.training_job import Cluster, link_inputs, train_stage
    from checkout_recs.models.train import TrainConfig
    from checkout_recs.tracking import finite_metrics
    from components._base import COMPONENT_IMAGE

    cluster = Cluster(workers, artifact_root, COMPONENT_IMAGE, training_namespace, k8s_host,
                      s3_endpoint_url)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="retrieval-input-") as tmp:
        inputs = link_inputs(
            Path(tmp), {"labels": Path(labels.path), "features": Path(features.path)}
        )
        out = train_stage("retrieval", inputs, Path(model.path), TrainConfig(seed=seed), cluster)
    for k, v in finite_metrics(out["metrics"]).items():
        metrics.log_metric(k, v)
    model.metadata["two_tower_version"] = out["version"]
    return out["version"]


@component
def merge_models_op(
    ranker: Input[Model],
    retrieval: Input[Model],
    mlflow_tracking_uri: str,
    seed: int,
    model: Output[Model],
) -> str:
    """``merge_model_dirs``: one ``train_all``-shaped folder, logged to MLflow. Returns the run id."""
    from pathlib import Path

    from checkout_recs.models.train import TrainConfig, merge_model_dirs

    cfg = TrainConfig(tracking_uri=mlflow_tracking_uri or None, seed=seed)
    out = merge_model_dirs([Path(ranker.path), Path(retrieval.path)], Path(model.path), cfg)
    model.metadata.update(
        {
            "ranker_version": ranker.metadata.get("ranker_version", ""),
            "two_tower_version": retrieval.metadata.get("two_tower_version", ""),
            "mlflow_run_id": out["mlflow_run_id"] or "",
        }
    )
    return out["mlflow_run_id"] or ""
