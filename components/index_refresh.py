"""Components of the index-refresh pipeline: fetch the serving bundle, refresh its index, publish."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components._base import component


@component
def refresh_index_op(
    ingested: Input[Dataset], artifact_root: str, s3_endpoint_url: str, metrics: Output[Metrics]
) -> str:
    """Add new listings to and remove sold ones from the ``LATEST`` bundle; publish a new version.

    Returns the new bundle URI (the canary/deploy step or serving's reload picks it up).
    """
    import tempfile
    from pathlib import Path

    from checkout_recs.deploy.index_refresh import refresh_bundle
    from checkout_recs.storage import new_version, open_store

    store = open_store(artifact_root, endpoint_url=s3_endpoint_url or None)
    with tempfile.TemporaryDirectory() as tmp:
        current = store.fetch("bundle", None, Path(tmp) / "current")
        summary = refresh_bundle(current, Path(ingested.path), Path(tmp) / "refreshed")
        uri = store.publish("bundle", new_version("bundle-"), Path(tmp) / "refreshed")
    for k in ("added", "removed", "n_items_before", "n_items_after"):
        metrics.log_metric(k, getattr(summary, k))
    return uri
