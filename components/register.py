"""Component of the register step: MLflow registry, promotion gate, publish the bundle."""

from kfp.dsl import Input, Metrics, Model, Output

from components._base import component


@component
def register_op(bundle: Input[Model], evaluation_json: str, mlflow_tracking_uri: str,
                artifact_root: str, s3_endpoint_url: str, tolerance: float, gate: Output[Metrics]) -> str:
    """Register the run as ``challenger``; if the gate passes, move ``champion`` and publish.

    ``evaluation_json``: the evaluate step's overall metrics. The gate compares them with the
    champion's (``tracking.promotion_gate``).
    A promoted bundle is published to the artifact store as ``bundle/<version>`` (atomic;
    ``LATEST`` moves last). Returns the published bundle URI, or ``""`` when the gate refused
    (the pipeline's deploy step runs only on a non-empty URI; a single ``Output`` also keeps the
    condition resolvable by kfp.local). The decision and its reasons go to ``gate``.
    """
    import json
    from pathlib import Path

    from checkout_recs.storage import new_version, open_store
    from checkout_recs.tracking import promote_if_better, promotion_gate

    challenger = {k: float(v) for k, v in json.loads(evaluation_json).items()}
    info = json.loads((Path(bundle.path) / "bundle.json").read_text())
    run_id = info.get("mlflow_run_id")
    if mlflow_tracking_uri and run_id:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_tracking_uri)
        for k, v in challenger.items():
            client.log_metric(run_id, k.replace("@", "_at_"), v)
        decision = promote_if_better(mlflow_tracking_uri, run_id, challenger, tolerance)
    else:
        decision = promotion_gate(challenger, None, tolerance)
        decision.reasons.append("no MLflow run: gate without a champion")
    uri = ""
    if decision.promote:
        store = open_store(artifact_root, endpoint_url=s3_endpoint_url or None)
        uri = store.publish("bundle", new_version("bundle-"), Path(bundle.path))
    gate.log_metric("promote", int(decision.promote))
    for name, (chal, champ) in decision.compared.items():
        gate.log_metric(f"challenger_{name}", chal)
        gate.log_metric(f"champion_{name}", champ)
    gate.metadata["reasons"] = "\n".join(decision.reasons)
    print("promotion gate:", "PROMOTE" if decision.promote else "REFUSE", *decision.reasons, sep="\n  ")
    return uri
