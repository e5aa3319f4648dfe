"""Submit a compiled pipeline to a Kubeflow Pipelines API server (``kfp.Client``): one run, or a
recurring run on a cron schedule (KFP's six-field cron, seconds first).

The compiled YAML in ``kfp_pipelines/compiled/`` is what gets submitted; a stale file is refused
(compile first), so what runs on the cluster is what the repository holds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kfp_pipelines.compile import stale
from kfp_pipelines.registry import get


class SubmitResult(BaseModel):
    """What the server created."""

    pipeline: str
    kind: str  # "run" or "recurring_run"
    id: str
    experiment_id: str | None = None
    schedule: str | None = None


def submit(
    name: str,
    host: str,
    params: dict[str, Any] | None = None,
    schedule: str | None = None,
    experiment: str = "checkout-recs",
    namespace: str | None = None,
    token: str | None = None,
    service_account: str | None = "checkout-recs-pipeline",
    check_stale: bool = True,
) -> SubmitResult:
    """Create a run (``schedule`` None) or a recurring run of pipeline ``name`` on ``host``.

    Parameters
    ----------
    schedule : str, optional
        Six-field cron (``"0 0 3 * * 1"``); ``"default"`` uses the registry's recommendation.
    token : str, optional
        Bearer token for the API server (e.g. a service account token); never logged.
    check_stale : bool
        Refuse a compiled file that differs from a fresh compile (``ValueError``).

    Returns
    -------
    SubmitResult
        Ids of what was created. Connection or API errors propagate from ``kfp.Client``.
    """
    from kfp import Client  # lazy: kfp costs ~1 s and only pipeline compile/run/submit need it

    entry = get(name)
    if check_stale and (problem := stale(name)):
        raise ValueError(problem)
    if schedule == "default":
        schedule = entry.schedule
    client = Client(host=host, existing_token=token, namespace=namespace)
    package = str(entry.compiled_path)
    exp = client.create_experiment(experiment, namespace=namespace)
    if schedule:
        rr = client.create_recurring_run(
            exp.experiment_id,
            job_name=f"checkout-recs-{entry.name}",
            description=entry.description,
            cron_expression=schedule,
            params=params or {},
            pipeline_package_path=package,
            max_concurrency=1,
            no_catchup=True,
            service_account=service_account,
        )
        return SubmitResult(
            pipeline=name,
            kind="recurring_run",
            id=rr.recurring_run_id,
            experiment_id=exp.experiment_id,
            schedule=schedule,
        )
    run = client.run_pipeline(
        experiment_id=exp.experiment_id,
        job_name=f"checkout-recs-{entry.name}",
        pipeline_package_path=package,
        params=params or {},
        service_account=service_account,
    )
    return SubmitResult(pipeline=name, kind="run", id=run.run_id, experiment_id=exp.experiment_id)
