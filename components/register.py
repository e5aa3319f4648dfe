"""Component of the register step: MLflow registry, promotion gate, publish the bundle."""

from kfp.dsl import Input, Metrics, Model, Output

from components._base import component


@component
def register_op(
    bundle: Input[Model],
    evaluation_json: str,
    mlflow_tracking_uri: str,
    artifact_root: str,
    s3_endpoint_url: str,
    tolerance: float,
    gate: Output[Metrics],
) -> str:
    """Register the run as a new model version; if the gate passes, publish the bundle and mark
    the version ``challenger`` (``champion`` moves only when the canary ramp reaches 100 %).

    ``evaluation_json``: the evaluate step's side-by-side result. The gate
    (``deploy.challenge.challenger_gate``) compares the challenger with the champion on the same
    held-out logs, or with the logged policy when there is no champion.
    A passing bundle is published to the artifact store as ``bundle/<version>`` (atomic;
    ``LATEST`` moves last) and its URI tagged on the model version. Returns the published bundle
    URI, or ``""`` when the gate refused (the pipeline's deploy step runs only on a non-empty
    URI; a single ``Output`` also keeps the condition resolvable by kfp.local). The decision and
    its reasons go to ``gate``.
    """
    import json
    import logging
    from pathlib import Path

    from checkout_recs.deploy.challenge import challenger_gate
    from checkout_recs.serving.bundle_layout import read_bundle_info
    from checkout_recs.storage import new_version, open_store
    from checkout_recs.tracking import alias_metrics, register_run, set_challenger

    evaluation = json.loads(evaluation_json)
    run_id = read_bundle_info(Path(bundle.path)).mlflow_run_id or ""
    use_mlflow = bool(mlflow_tracking_uri and run_id)
    fallback = alias_metrics(mlflow_tracking_uri, "champion") if use_mlflow else None
    decision = challenger_gate(evaluation, tolerance, champion_fallback=fallback)
    version = None
    if use_mlflow:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_tracking_uri)
        for k, v in evaluation["challenger"].items():
            client.log_metric(run_id, k.replace("@", "_at_"), v)
        version = register_run(mlflow_tracking_uri, run_id)
    else:
        decision.reasons.append("no MLflow run: nothing registered")
    uri = ""
    if decision.promote:
        store = open_store(artifact_root, endpoint_url=s3_endpoint_url or None)
        uri = store.publish("bundle", new_version("bundle-"), Path(bundle.path))
    if version is not None:
        set_challenger(mlflow_tracking_uri, version, decision.promote, uri or None)
    gate.log_metric("promote", int(decision.promote))
    for name, (chal, ref) in decision.compared.items():
        gate.log_metric(f"challenger_{name}", chal)
        gate.log_metric(f"reference_{name}", ref)
    gate.metadata["reasons"] = "\n".join(decision.reasons)
    gate.metadata["model_version"] = version or ""
    logging.getLogger("components.register").info(
        "promotion gate: %s",
        "PASS (challenger)" if decision.promote else "REFUSE",
        extra={"promote": decision.promote, "reasons": list(decision.reasons)},
    )
    return uri
