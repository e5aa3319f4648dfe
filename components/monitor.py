"""Components of the monitoring pipeline: drift report (Evidently), then the drift flag."""

from typing import NamedTuple

from kfp.dsl import HTML, Metrics, Output

from components._base import component


@component
def drift_report_op(reference: str, current: str, artifact_root: str, s3_endpoint_url: str,
                    report: Output[HTML], summary: Output[Metrics]
                    ) -> NamedTuple("Drift", [("drift", bool), ("reason", str), ("report_uri", str)]):
    """Compare ``current`` with ``reference`` and publish the report (artifact kind ``drift``).

    ``reference`` / ``current``: a parquet file or folder, or ``store:<kind>/<version|LATEST>/<path>``
    to read a published artifact (e.g. ``store:features/LATEST/listing.parquet``).
    Returns ``(drift, reason, report_uri)``.
    """
    import shutil
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from checkout_recs.storage import new_version, open_store
    from monitoring.drift import drift_report

    store = open_store(artifact_root, endpoint_url=s3_endpoint_url or None)
    tmp = Path(tempfile.mkdtemp(prefix="drift-"))

    def resolve(spec: str, name: str) -> Path:
        if not spec.startswith("store:"):
            return Path(spec)
        kind, version, rel = spec[len("store:"):].split("/", 2)
        dest = store.fetch(kind, None if version == "LATEST" else version, tmp / name)
        return Path(dest) / rel

    out = tmp / "report"
    s = drift_report(resolve(reference, "reference"), resolve(current, "current"), out)
    shutil.copyfile(out / "drift_report.html", report.path)
    uri = store.publish("drift", new_version("drift-"), out)
    summary.log_metric("drifted_share", s.drifted_share)
    summary.log_metric("n_drifted", s.n_drifted)
    summary.log_metric("drift_detected", int(s.drift_detected))
    shutil.rmtree(tmp, ignore_errors=True)
    return namedtuple("Drift", ["drift", "reason", "report_uri"])(s.drift_detected, s.reason, uri)


@component
def set_drift_flag_op(reason: str, report_uri: str, redis_url: str) -> str:
    """Set the drift flag serving reads (Redis): serving answers with the deterministic fallback
    until on-call clears it (docs/runbook.md). Raises when Redis cannot be written."""
    from monitoring.flag import redis_client, set_drift_flag

    flag = set_drift_flag(redis_client(redis_url or None), who="monitoring-pipeline", why=reason, report=report_uri)
    print(f"drift flag set: {flag.why} ({flag.report})")
    return flag.when
