"""Components of the monitoring pipeline: drift report (Evidently, with its figures as Prometheus
metrics for ``checkout-recs drift-exporter``), then the drift flag."""

from kfp.dsl import HTML, Metrics, Output

from components._base import component


@component
def drift_report_op(
    reference: str,
    current: str,
    mode: str,
    artifact_root: str,
    s3_endpoint_url: str,
    report: Output[HTML],
    summary: Output[Metrics],
) -> str:
    """Compare ``current`` with ``reference`` and publish the report (artifact kind ``drift``).

    ``mode``: ``traffic`` = served traffic vs the training reference, run folders with raw or
    validated tables (feature, score and outcome drift, ``monitoring.traffic``); ``table`` = two
    tables column by column (``monitoring.drift``).
    ``reference`` / ``current``: a path, or ``store:<kind>/<version|LATEST>/<path>`` to read a
    published artifact (e.g. ``store:features/LATEST/listing.parquet``, ``store:ingested/LATEST/``).
    Returns the published report's version when drift was detected, else ``""`` (one ``Output``
    so the pipeline's condition resolves under kfp.local too); the verdict is in ``summary``.
    The published folder holds ``drift_metrics.prom`` too (``monitoring.drift_metrics``).
    """
    import json
    import logging
    import shutil
    import tempfile
    from pathlib import Path

    from checkout_recs.storage import new_version, open_store
    from monitoring.drift import drift_report
    from monitoring.drift_metrics import write_drift_metrics

    if not reference or not current:
        raise ValueError(
            "reference and current are required (paths or store:<kind>/<version>/<path>)"
        )
    store = open_store(artifact_root, endpoint_url=s3_endpoint_url or None)
    tmp = Path(tempfile.mkdtemp(prefix="drift-"))

    def resolve(spec: str, name: str) -> Path:
        if not spec.startswith("store:"):
            return Path(spec)
        kind, version, rel = spec[len("store:") :].split("/", 2)
        dest = store.fetch(kind, None if version == "LATEST" else version, tmp / name)
        return Path(dest) / rel

    out = tmp / "report"
    ref, cur = resolve(reference, "reference"), resolve(current, "current")
    if mode == "traffic":
        from monitoring.simcheck import load_traffic
        from monitoring.traffic import traffic_drift

        t = traffic_drift(load_traffic(ref), load_traffic(cur), out)
        detected, reason, html = t.confirmed, "; ".join(t.reasons) or "no drift", out / "index.html"
        shares = {"features_drifted_share": t.features.drifted_share}
    elif mode == "table":
        d = drift_report(ref, cur, out)
        detected, reason, html = d.drift_detected, d.reason, out / "drift_report.html"
        shares = {"drifted_share": d.drifted_share, "n_drifted": d.n_drifted}
    else:
        raise ValueError(f"mode must be 'traffic' or 'table', got {mode!r}")
    if not (out / "drift_summary.json").exists():  # traffic mode: one verdict file at the top too
        (out / "drift_summary.json").write_text(
            json.dumps({"drift_detected": detected, "reason": reason})
        )
    write_drift_metrics(
        t if mode == "traffic" else d, out
    )  # drift_metrics.prom: `checkout-recs drift-exporter`
    shutil.copyfile(html, report.path)
    version = new_version("drift-")
    uri = store.publish("drift", version, out)
    for k, v in shares.items():
        summary.log_metric(k, float(v))
    summary.log_metric("drift_detected", int(detected))
    summary.metadata.update({"reason": reason, "report_uri": uri})
    shutil.rmtree(tmp, ignore_errors=True)
    logging.getLogger("components.monitor").info(
        "%s%s %s",
        "DRIFT: " if detected else "no drift: ",
        reason,
        uri,
        extra={"drift_detected": bool(detected), "report_uri": uri},
    )
    return version if detected else ""


@component
def set_drift_flag_op(
    drift_version: str, artifact_root: str, s3_endpoint_url: str, redis_url: str
) -> str:
    """Set the drift flag serving reads (Redis) with the published report's reason: serving
    answers with the deterministic fallback until on-call clears it (docs/runbook.md).
    Raises when Redis cannot be written."""
    import json
    import logging
    import tempfile
    from pathlib import Path

    from checkout_recs.storage import open_store
    from monitoring.flag import redis_client, set_drift_flag

    store = open_store(artifact_root, endpoint_url=s3_endpoint_url or None)
    with tempfile.TemporaryDirectory() as tmp:
        verdict = json.loads(
            (store.fetch("drift", drift_version, Path(tmp)) / "drift_summary.json").read_text()
        )
    uri = store.uri("drift", drift_version)
    flag = set_drift_flag(
        redis_client(redis_url or None),
        who="monitoring-pipeline",
        why=verdict["reason"],
        report=uri,
    )
    logging.getLogger("components.monitor").info("drift flag set: %s (%s)", flag.why, flag.report)
    return flag.when
