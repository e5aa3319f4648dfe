"""The monitoring pipeline (daily): drift report on features and scores → drift flag.

When the report finds drift, the flag that serving reads is set: serving switches to the
deterministic fallback and on-call is paged (PrometheusRule on the flag) — see docs/runbook.md.
"""

from kfp import dsl

from components.monitor import drift_report_op, set_drift_flag_op
from kfp_pipelines.cluster import apply_cluster_env


@dsl.pipeline(
    name="checkout-recs-monitoring",
    description="Daily drift report (Evidently) on features; sets the drift flag on drift.",
)
def monitoring_pipeline(
    reference: str = "",
    current: str = "",
    mode: str = "traffic",
    artifact_root: str = "artifacts",
    s3_endpoint_url: str = "",
    redis_url: str = "",
    set_flag: bool = True,
) -> str:
    """``reference``: what the champion was trained on; ``current``: what was served since (run
    folders for ``mode=traffic``, tables for ``mode=table``; see ``drift_report_op`` for the
    ``store:`` form, e.g. ``store:ingested/<training version>``); both are required. Returns the drift report's version when drift
    was detected, else ``""`` (every report is published under ``drift/``)."""
    rep = drift_report_op(
        reference=reference,
        current=current,
        mode=mode,
        artifact_root=artifact_root,
        s3_endpoint_url=s3_endpoint_url,
    )
    rep.set_display_name("drift-report").set_caching_options(False)
    rep.set_cpu_request("1").set_memory_request("4Gi").set_retry(
        num_retries=1, backoff_duration="60s"
    )
    with (
        dsl.If(
            rep.outputs["Output"] != "", name="drift-detected"
        ),  # the report version only on drift
        dsl.If(set_flag == True, name="flag-enabled"),  # noqa: E712 - a KFP condition, not Python truth
    ):
        flag = set_drift_flag_op(
            drift_version=rep.outputs["Output"],
            artifact_root=artifact_root,
            s3_endpoint_url=s3_endpoint_url,
            redis_url=redis_url,
        )
        flag.set_display_name("set-drift-flag").set_caching_options(False)
        flag.set_cpu_request("0.1").set_memory_request("256Mi").set_retry(
            num_retries=3, backoff_duration="10s"
        )
    apply_cluster_env()  # ConfigMap env + Secret credentials on every task pod (ignored by kfp.local)
    return rep.outputs["Output"]
