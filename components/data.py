"""Components of the data steps: simulate (or take real logs), ingest, label."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components._base import component


@component
def simulate_op(source: str, seed: int, sim_config_json: str, raw: Output[Dataset]) -> str:
    """Simulate raw logs into ``raw`` when ``source`` is empty; else leave ``raw`` empty.

    ``sim_config_json``: ``SimConfig`` overrides as JSON (``"{}"`` for the demo size).
    Returns what ingest should read: ``source`` itself, or ``""`` meaning the ``raw`` artifact.
    """
    import json
    from pathlib import Path

    Path(raw.path).mkdir(parents=True, exist_ok=True)
    if source:
        raw.metadata["source"] = source
        return source
    from checkout_recs.simulate import SimConfig, run_simulation

    cfg = SimConfig.model_validate({**json.loads(sim_config_json or "{}"), "seed": seed})
    summary = run_simulation(cfg, Path(raw.path))
    raw.metadata.update({"source": "simulator", "seed": seed, "rows": summary.rows})
    return ""


@component
def ingest_op(
    source: str,
    raw: Input[Dataset],
    s3_endpoint_url: str,
    artifact_root: str,
    ingested: Output[Dataset],
    metrics: Output[Metrics],
) -> str:
    """Validate raw tables against the contract; bad rows quarantined with a reason.

    Reads ``source`` (folder or ``s3://``) when set, else the ``raw`` artifact. Fails when the
    counts do not add up (read = accepted + quarantined) or nothing was accepted. When
    ``artifact_root`` is set the result is also published as kind ``ingested`` (the monitoring
    pipeline's reference); returns that version, or ``""``.
    """
    from pathlib import Path

    from checkout_recs.data.ingest import ingest

    report = ingest(source or raw.path, Path(ingested.path), endpoint_url=s3_endpoint_url or None)
    totals = {"read": 0, "accepted": 0, "quarantined": 0}
    for name, t in report.tables.items():
        if t.read != t.accepted + t.quarantined:
            raise RuntimeError(
                f"{name}: read {t.read} != accepted {t.accepted} + quarantined {t.quarantined}"
            )
        for k in totals:
            totals[k] += getattr(t, k)
    if totals["accepted"] == 0:
        raise RuntimeError(f"ingest accepted no rows from {source or raw.path}")
    for k, v in totals.items():
        metrics.log_metric(f"rows_{k}", v)
    ingested.metadata.update({"run_id": report.run_id, **totals})
    if not artifact_root:
        return ""
    from checkout_recs.storage import new_version, open_store

    version = new_version("ingested-")
    open_store(artifact_root, endpoint_url=s3_endpoint_url or None).publish(
        "ingested", version, Path(ingested.path)
    )
    return version


@component
def label_op(ingested: Input[Dataset], labels: Output[Dataset], metrics: Output[Metrics]) -> None:
    """Click and purchase labels per impression, co-purchase counts, user sequences."""
    from pathlib import Path

    from checkout_recs.data.labels import build_labels

    summary = build_labels(Path(ingested.path), Path(labels.path))
    metrics.log_metric("click_rate", summary.click_rate)
    metrics.log_metric("purchase_rate", summary.purchase_rate)
    for name, n in summary.rows.items():
        metrics.log_metric(f"rows_{name}", n)


@component
def label_impressions_op(
    ingested: Input[Dataset],
    workers: int,
    buckets: int,
    namespace: str,
    k8s_host: str,
    labelled: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """Labelled impressions out of core (``checkout_recs.data.engine``): part files in ``labelled``.

    ``workers`` 0: in this pod with the engine's ``local`` runner (one of ``buckets`` partitions of
    the users in memory at a time); >= 1: a KubeRay ``RayJob`` of that many Ray workers in
    ``namespace`` (``manifests/training/rayjob.yaml``), reading ``ingested.uri`` and writing
    ``labelled.uri`` (``s3://`` on a cluster). ``k8s_host``: API URL, or ``""`` / ``in-cluster``.
    Not in a pipeline yet: ``label_op`` (whole-table pandas) stays the default until the engine
    path is proven on production data; the rows are the same (tests/code/data/test_engine.py).
    """
    from pathlib import Path

    from checkout_recs.data.engine import EngineConfig
    from checkout_recs.deploy.ray_job import DataCluster, run_data_step
    from components._base import COMPONENT_IMAGE

    remote = workers >= 1
    cluster = DataCluster(workers, COMPONENT_IMAGE, buckets, namespace, k8s_host)
    src, out = (ingested.uri, labelled.uri) if remote else (ingested.path, labelled.path)
    Path(labelled.path).parent.mkdir(parents=True, exist_ok=True)
    result = run_data_step(
        "labels", src, out, cluster if remote else None, EngineConfig(buckets=buckets)
    )
    labelled.metadata.update({k: v for k, v in result.items() if isinstance(v, int | str)})
    for key in ("rows", "seconds", "workers"):
        if key in result:
            metrics.log_metric(key, result[key])
