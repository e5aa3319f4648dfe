"""Component of the deploy step: canary ramp of the published bundle with guardrails."""

from kfp.dsl import Metrics, Output

from components._base import component


@component
def deploy_canary_op(
    bundle_uri: str,
    k8s_host: str,
    namespace: str,
    isvc_name: str,
    metrics_url: str,
    steps: str,
    hold_s: float,
    guardrails_json: str,
    mlflow_tracking_uri: str,
    artifact_root: str,
    s3_endpoint_url: str,
    outcomes_dir: str,
    metrics: Output[Metrics],
) -> str:
    """Ramp ``bundle_uri`` on the InferenceService (5 → 25 → 50 → 100 by default).

    ``k8s_host``: API URL; ``"in-cluster"`` uses the pod's service account (the deployer
    ServiceAccount of manifests/base/rbac.yaml); empty skips the step (a laptop run has no
    cluster) and says so. ``outcomes_dir`` (clicks, purchases, listings parquet): when set, the
    GMV guardrail compares canary and champion GMV per session from the decision log in
    ``artifact_root`` (``deploy.attribution``); else it reads the exporter's counters from
    Prometheus. ``metrics_url``: Prometheus' base URL; the guardrails are PromQL queries on the
    series of ``namespace`` (``deploy.metrics``). ``mlflow_tracking_uri``: promotion moves the
    ``champion`` alias, a rollback leaves it. Returns the outcome: ``promoted``, ``rolled_back``, ``failed`` or ``skipped``.
    A rolled-back canary is a normal outcome, not a failed task.
    """
    import json
    import logging
    from pathlib import Path

    log = logging.getLogger("components.deploy")
    if not k8s_host:
        log.info("deploy skipped: no k8s_host given (local run)")
        metrics.log_metric("deployed", 0)
        return "skipped"
    from checkout_recs.deploy.attribution import DecisionLogGmv, folder_outcomes
    from checkout_recs.deploy.kube import IsvcRef, KubeApi
    from checkout_recs.deploy.metrics import MetricsSpec, PrometheusQuerySource
    from checkout_recs.deploy.rollout import RampPlan, Rollout
    from checkout_recs.evaluation.experiments.guardrails import GuardrailConfig
    from checkout_recs.storage import open_store
    from checkout_recs.tracking import MlflowAliases

    api = KubeApi(host=None if k8s_host == "in-cluster" else k8s_host)
    plan = RampPlan(steps=tuple(int(s) for s in steps.split(",")), hold_s=hold_s)
    limits = GuardrailConfig.model_validate(json.loads(guardrails_json or "{}"))
    gmv = (
        DecisionLogGmv(
            open_store(artifact_root, s3_endpoint_url or None), folder_outcomes(Path(outcomes_dir))
        )
        if outcomes_dir
        else None
    )
    source = PrometheusQuerySource(metrics_url, MetricsSpec(matchers=f'namespace="{namespace}"'))
    rollout = Rollout(
        api,
        IsvcRef(name=isvc_name, namespace=namespace),
        source,
        plan,
        limits,
        log=log.info,
        gmv=gmv,
        registry=MlflowAliases(mlflow_tracking_uri) if mlflow_tracking_uri else None,
    )
    result = rollout.run(bundle_uri)
    log.info(
        "rollout %s: %s",
        result.outcome,
        result.reason,
        extra={"rollout": result.model_dump(mode="json")},
    )
    metrics.log_metric("deployed", 1 if result.outcome == "promoted" else 0)
    metrics.log_metric("steps_observed", len(result.steps))
    return result.outcome
