"""The training pipeline: simulate-or-ingest → label → features (build, Feast apply +
materialize, training set) → train (ranker → distil; retrieval in parallel; merge + MLflow run)
→ bundle (index + candidates) → evaluate (challenger and champion side by side) → register
(gate: ``challenger`` alias, publish) → canary deploy (only when the gate passes; ``champion``
moves when the ramp reaches 100 %).
"""

from kfp import dsl

from components.bundle import build_bundle_op
from components.data import ingest_op, label_op, simulate_op
from components.deploy import deploy_canary_op
from components.evaluate import evaluate_op
from components.features import build_features_op, materialize_features_op, training_set_op
from components.register import register_op
from components.train import distil_op, merge_models_op, train_ranker_op, train_retrieval_op
from kfp_pipelines.cluster import apply_cluster_env


def _resources(task: dsl.PipelineTask, cpu: str, memory: str, retries: int = 1) -> dsl.PipelineTask:
    """Requests and limits, and retries with back-off for transient failures (spot nodes, S3)."""
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.set_cpu_limit(str(2 * float(cpu))).set_memory_limit(memory)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="30s", backoff_factor=2.0)
    return task


@dsl.pipeline(
    name="checkout-recs-training",
    description="Post-checkout recommendations: logs to a gated, published serving bundle.",
)
def training_pipeline(
    source: str = "",
    seed: int = 7,
    sim_config_json: str = "{}",
    artifact_root: str = "artifacts",
    s3_endpoint_url: str = "",
    feature_env: str = "embedded",
    feast_work_dir: str = "",
    mlflow_tracking_uri: str = "sqlite:///artifacts/mlflow.db",
    validation_share: float = 0.2,
    gate_tolerance: float = 0.005,
    training_join: str = "feast",
    feature_freshness_at: str = "",
    k8s_host: str = "",
    namespace: str = "checkout-recs",
    isvc_name: str = "checkout-recs",
    metrics_url: str = "http://prometheus-operated.monitoring:9090",
    ramp_steps: str = "5,25,50,100",
    ramp_hold_s: float = 600.0,
    guardrails_json: str = "{}",
    outcomes_dir: str = "",
    training_workers: int = 1,
    training_namespace: str = "checkout-recs-training",
) -> str:
    """Parameters: ``source`` empty = simulate (demo); else a raw-log folder or ``s3://`` prefix.
    ``training_join``: ``feast`` (historical retrieval) or ``pandas`` (the same point-in-time
    join without Feast: minutes faster on one machine). ``k8s_host`` empty: no canary (local).
    ``feature_freshness_at``: when feature SLAs are judged after materialization (empty = now;
    ``data`` = the newest feature time, for replays of past or simulated logs).
    ``outcomes_dir``: clicks/purchases/listings the canary's GMV guardrail joins to the decision
    log in ``artifact_root`` (empty: the exporter's GMV counters in Prometheus). ``metrics_url``:
    the Prometheus the canary's guardrails query (PromQL, ``checkout_recs.deploy.metrics``).
    ``training_workers`` >= 2: the ranker and the two-tower model are each trained by a Kubeflow
    ``PyTorchJob`` of that many processes in ``training_namespace`` (input and output through
    ``artifact_root``, which must then be ``s3://``); 1 (the default, and the local run): in the
    step's own pod.

    Returns the published bundle URI (empty when the gate refused the model).
    """
    sim = _resources(
        simulate_op(source=source, seed=seed, sim_config_json=sim_config_json), "1", "2Gi"
    )
    sim.set_display_name("simulate-or-take-logs")
    ing = _resources(
        ingest_op(
            source=sim.outputs["Output"],
            raw=sim.outputs["raw"],
            s3_endpoint_url=s3_endpoint_url,
            artifact_root=artifact_root,
        ),
        "1",
        "4Gi",
    )
    ing.set_display_name("ingest")
    lab = _resources(label_op(ingested=ing.outputs["ingested"]), "1", "4Gi").set_display_name(
        "label"
    )
    feats = _resources(
        build_features_op(ingested=ing.outputs["ingested"], labels=lab.outputs["labels"]),
        "1",
        "4Gi",
    ).set_display_name("build-features")
    mat = _resources(
        materialize_features_op(
            features=feats.outputs["features"],
            artifact_root=artifact_root,
            feature_env=feature_env,
            feast_work_dir=feast_work_dir,
            s3_endpoint_url=s3_endpoint_url,
            freshness_at=feature_freshness_at,
        ),
        "1",
        "2Gi",
    )
    mat.set_display_name("feast-apply-materialize").set_caching_options(
        False
    )  # writes the online store
    tset = _resources(
        training_set_op(
            ingested=ing.outputs["ingested"],
            labels=lab.outputs["labels"],
            features=feats.outputs["features"],
            features_uri=mat.outputs["Output"],
            feature_env=feature_env,
            feast_work_dir=feast_work_dir,
            artifact_root=artifact_root,
            s3_endpoint_url=s3_endpoint_url,
            join=training_join,
        ),
        "1",
        "4Gi",
    )
    tset.set_display_name("training-set")
    distributed = {
        "workers": training_workers,
        "artifact_root": artifact_root,
        "s3_endpoint_url": s3_endpoint_url,
        "k8s_host": k8s_host,
        "training_namespace": training_namespace,
    }
    ranker = _resources(
        train_ranker_op(
            training_set=tset.outputs["training_set"],
            seed=seed,
            **distributed,
        ),
        "2",
        "8Gi",
        retries=0,
    ).set_display_name("train-ranker")
    distil = _resources(
        distil_op(
            ranker=ranker.outputs["model"], training_set=tset.outputs["training_set"], seed=seed
        ),
        "2",
        "4Gi",
        retries=0,
    ).set_display_name("distil-student")
    retrieval = _resources(
        train_retrieval_op(
            labels=lab.outputs["labels"],
            features=feats.outputs["features"],
            seed=seed,
            **distributed,
        ),
        "2",
        "8Gi",
        retries=0,
    )
    retrieval.set_display_name("train-retrieval")
    train = _resources(
        merge_models_op(
            ranker=distil.outputs["model"],
            retrieval=retrieval.outputs["model"],
            mlflow_tracking_uri=mlflow_tracking_uri,
            seed=seed,
        ),
        "1",
        "2Gi",
        retries=0,
    )
    train.set_display_name("merge-models").set_caching_options(False)  # logs an MLflow run
    bundle = _resources(
        build_bundle_op(
            model=train.outputs["model"],
            labels=lab.outputs["labels"],
            features=feats.outputs["features"],
        ),
        "2",
        "8Gi",
    )
    bundle.set_display_name("build-index")
    ev = _resources(
        evaluate_op(
            bundle=bundle.outputs["bundle"],
            training_set=tset.outputs["training_set"],
            validation_share=validation_share,
            mlflow_tracking_uri=mlflow_tracking_uri,
        ),
        "1",
        "4Gi",
    )
    ev.set_display_name("evaluate").set_caching_options(False)  # reads the current champion
    reg = _resources(
        register_op(
            bundle=bundle.outputs["bundle"],
            evaluation_json=ev.outputs["Output"],
            mlflow_tracking_uri=mlflow_tracking_uri,
            artifact_root=artifact_root,
            s3_endpoint_url=s3_endpoint_url,
            tolerance=gate_tolerance,
        ),
        "1",
        "2Gi",
    )
    reg.set_display_name("register-gate-publish").set_caching_options(
        False
    )  # moves aliases, publishes
    with dsl.If(
        reg.outputs["Output"] != "", name="gate-passed"
    ):  # a URI only when the gate promotes
        dep = _resources(
            deploy_canary_op(
                bundle_uri=reg.outputs["Output"],
                k8s_host=k8s_host,
                namespace=namespace,
                isvc_name=isvc_name,
                metrics_url=metrics_url,
                steps=ramp_steps,
                hold_s=ramp_hold_s,
                guardrails_json=guardrails_json,
                mlflow_tracking_uri=mlflow_tracking_uri,
                artifact_root=artifact_root,
                s3_endpoint_url=s3_endpoint_url,
                outcomes_dir=outcomes_dir,
            ),
            "0.5",
            "512Mi",
            retries=0,
        )
        dep.set_display_name("deploy-canary").set_caching_options(False)
    apply_cluster_env()  # ConfigMap env + Secret credentials on every task pod (ignored by kfp.local)
    return reg.outputs["Output"]
