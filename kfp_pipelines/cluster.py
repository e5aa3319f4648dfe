"""What every task pod of a cluster run gets from Kubernetes: environment from a ConfigMap and
secrets from a Secret (``kfp-kubernetes``), declared once here and applied to every task.

The names below are created by ``manifests/base/pipeline-env.yaml`` (ConfigMap, values per
overlay) and by External Secrets from ``manifests/external-secrets/pipeline-secrets.yaml`` (the
Secret's keys; no value is in the repository). The service account
(``checkout-recs-pipeline``, IRSA for S3) is set per run at submission
(``kfp_pipelines.submit``): KFP 2.17's platform spec has no per-task service account.

``kfp.local`` ignores the platform spec, so a local run is unchanged by all of this.
"""

from __future__ import annotations

from kfp import dsl, kubernetes
from kfp.dsl import pipeline_context

#: ConfigMap with non-secret settings (region; S3 and MLflow endpoints where not AWS).
CONFIG_MAP = "checkout-recs-pipeline-env"
#: Secret (created by External Secrets) with credentials and URLs that embed passwords.
SECRET = "checkout-recs-pipeline-secrets"

#: ConfigMap key -> environment variable, the ConfigMap and keys must exist.
CONFIG_MAP_ENV: dict[str, str] = {"AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION"}
#: ConfigMap key -> environment variable, set only where the key exists (MinIO on a laptop
#: cluster; absent on AWS, where an empty endpoint would break boto3).
CONFIG_MAP_ENV_OPTIONAL: dict[str, str] = {
    "AWS_ENDPOINT_URL_S3": "AWS_ENDPOINT_URL_S3",  # checkout_recs.storage, data.ingest (boto3)
    "MLFLOW_S3_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL",  # MLflow's artifact client
}
#: Secret key -> environment variable, required: the production Feast store and the drift flag.
SECRET_ENV: dict[str, str] = {
    "redis-url": "CHECKOUT_RECS_REDIS_URL",  # feature_repo.store, monitoring.flag (Settings)
    "feast-registry-url": "CHECKOUT_RECS_FEAST_REGISTRY_URL",  # feature_repo.store (SQL registry)
}
#: Secret key -> environment variable, optional: an MLflow server without auth, or IRSA instead
#: of static AWS keys (EKS), leaves them out.
SECRET_ENV_OPTIONAL: dict[str, str] = {
    "mlflow-tracking-token": "MLFLOW_TRACKING_TOKEN",
    "aws-access-key-id": "AWS_ACCESS_KEY_ID",
    "aws-secret-access-key": "AWS_SECRET_ACCESS_KEY",
}
#: Labels of every task pod, so NetworkPolicies can select pipeline pods (e.g. to reach Redis).
POD_LABELS: dict[str, str] = {
    "app.kubernetes.io/part-of": "checkout-recs",
    "app.kubernetes.io/component": "pipeline",
}


def with_cluster_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Give ``task``'s pod the ConfigMap's environment, the Secret's credentials and our labels."""
    for key, value in POD_LABELS.items():
        kubernetes.add_pod_label(task, key, value)
    kubernetes.use_config_map_as_env(task, CONFIG_MAP, CONFIG_MAP_ENV)
    kubernetes.use_config_map_as_env(task, CONFIG_MAP, CONFIG_MAP_ENV_OPTIONAL, optional=True)
    kubernetes.use_secret_as_env(task, SECRET, SECRET_ENV)
    kubernetes.use_secret_as_env(task, SECRET, SECRET_ENV_OPTIONAL, optional=True)
    return task


def apply_cluster_env() -> int:
    """Apply :func:`with_cluster_env` to every task defined so far in the pipeline being built
    (call it last in a ``@dsl.pipeline`` body; tasks inside ``dsl.If`` included).

    Returns the number of tasks configured. ``RuntimeError`` outside a pipeline definition.
    """
    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    if pipeline is None:
        raise RuntimeError("apply_cluster_env() must be called inside a @dsl.pipeline function")
    for task in pipeline.tasks.values():
        with_cluster_env(task)
    return len(pipeline.tasks)
