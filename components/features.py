"""Components of the feature steps: build the views, Feast apply + materialize, training set."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components._base import component


@component
def build_features_op(
    ingested: Input[Dataset],
    labels: Input[Dataset],
    features: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """The ``user``, ``listing``, ``seller``, ``category_pair`` views (daily snapshots)."""
    from pathlib import Path

    from checkout_recs.features.build import build_feature_tables

    report = build_feature_tables(Path(ingested.path), Path(labels.path), Path(features.path))
    for view, info in report["views"].items():
        metrics.log_metric(f"rows_{view}", info["rows"])
    metrics.log_metric("snapshots", report.get("snapshots", 0))


@component
def materialize_features_op(
    features: Input[Dataset],
    artifact_root: str,
    feature_env: str,
    feast_work_dir: str,
    s3_endpoint_url: str,
    metrics: Output[Metrics],
    freshness_at: str = "",
) -> str:
    """Publish the views to the artifact store (kind ``features``), Feast apply, materialize, and
    check every view's freshness against its SLA: the step fails when one is broken.

    ``freshness_at``: when to judge freshness — empty = now (production), ``data`` = the newest
    feature time in the views (replays of past or simulated logs), or an ISO time.

    Feast's offline source points at the published copy (a folder locally, ``s3://`` in
    production) so serving and later runs read the same files. ``feast_work_dir`` empty means
    ``<artifact_root>/feast`` (local roots only). Returns the published features URI.
    """
    import datetime as dt
    from pathlib import Path

    from checkout_recs.storage import new_version, open_store
    from feature_repo.store import open_store as open_feature_store

    store = open_store(artifact_root, endpoint_url=s3_endpoint_url or None)
    version = new_version("features-")
    uri = store.publish("features", version, Path(features.path))
    work_dir = Path(feast_work_dir or str(Path(artifact_root) / "feast"))
    fs = open_feature_store(feature_env, uri, work_dir, s3_endpoint=s3_endpoint_url or None)
    applied = fs.apply()
    records = fs.materialize(None, dt.datetime.now(dt.UTC))
    metrics.log_metric("feast_objects", len(applied))
    metrics.log_metric("materialize_seconds", sum(r.get("seconds", 0.0) for r in records))
    if freshness_at == "data":
        import pandas as pd

        at = max(
            pd.read_parquet(p, columns=["event_timestamp"])["event_timestamp"].max()
            for p in Path(features.path).glob("*.parquet")
        ).to_pydatetime()
    else:
        at = dt.datetime.fromisoformat(freshness_at) if freshness_at else dt.datetime.now(dt.UTC)
    report = fs.freshness(at)
    metrics.log_metric("freshness_ok", int(report.ok))
    if not report.ok:
        raise RuntimeError(
            f"feature SLA broken at {at.isoformat()} for views {report.broken}: {report.to_dict()}"
        )
    return uri


@component
def training_set_op(
    ingested: Input[Dataset],
    labels: Input[Dataset],
    features: Input[Dataset],
    features_uri: str,
    feature_env: str,
    feast_work_dir: str,
    artifact_root: str,
    s3_endpoint_url: str,
    join: str,
    training_set: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """Point-in-time training set (rows in == rows out).

    ``join``: ``feast`` = Feast historical retrieval over the published views; ``pandas`` = the
    same point-in-time join in pandas (``features.pit``), much faster on one machine.
    """
    from pathlib import Path

    from checkout_recs.features.training import build_training_set

    if join not in ("feast", "pandas"):
        raise ValueError(f"join must be 'feast' or 'pandas', got {join!r}")
    joiner = None
    if join == "feast":
        from feature_repo.store import open_store as open_feature_store

        work_dir = Path(feast_work_dir or str(Path(artifact_root) / "feast"))
        joiner = open_feature_store(
            feature_env, features_uri, work_dir, s3_endpoint=s3_endpoint_url or None
        ).training_join()
    Path(training_set.path).mkdir(parents=True, exist_ok=True)
    out = Path(training_set.path) / "training_set.parquet"
    report = build_training_set(
        Path(labels.path), Path(features.path), Path(ingested.path), out, join=joiner
    )
    if report.rows_in != report.rows_out:
        raise RuntimeError(f"training set lost rows: {report.rows_in} in, {report.rows_out} out")
    metrics.log_metric("rows", report.rows_out)
    training_set.metadata["join"] = join
    for view, n in report.missing_by_view.items():
        metrics.log_metric(f"defaulted_{view}", n)
    for view, n in report.dropped_by_join.items():
        metrics.log_metric(f"feast_dropped_{view}", n)
