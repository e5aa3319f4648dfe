"""The index-refresh pipeline (hourly): the last hour's listings and inventory events are
validated, new listings embedded and added to the index, sold or delisted ones removed, and the
refreshed bundle published as a new version (same models, new ``index/``).
"""

from kfp import dsl

from components.data import ingest_op, simulate_op
from components.index_refresh import refresh_index_op
from kfp_pipelines.cluster import apply_cluster_env


@dsl.pipeline(
    name="checkout-recs-index-refresh",
    description="Hourly: embed and add new listings, remove sold ones, publish the bundle.",
)
def index_refresh_pipeline(
    source: str = "s3://checkout-recs-raw/hourly/latest",
    artifact_root: str = "artifacts",
    s3_endpoint_url: str = "",
    seed: int = 7,
    sim_config_json: str = "{}",
) -> str:
    """``source``: the hour's raw export (``listings``, ``inventory_events``, ...); empty simulates
    one (local demo). Returns the published bundle URI."""
    sim = simulate_op(source=source, seed=seed, sim_config_json=sim_config_json)
    sim.set_display_name("simulate-or-take-logs").set_cpu_request("1").set_memory_request("2Gi")
    ing = ingest_op(
        source=sim.outputs["Output"],
        raw=sim.outputs["raw"],
        s3_endpoint_url=s3_endpoint_url,
        artifact_root="",
    )  # hourly slices are not published as a reference
    ing.set_display_name("ingest").set_cpu_request("1").set_memory_request("4Gi")
    ing.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)
    ref = refresh_index_op(
        ingested=ing.outputs["ingested"],
        artifact_root=artifact_root,
        s3_endpoint_url=s3_endpoint_url,
    )
    ref.set_display_name("refresh-index").set_caching_options(False)  # reads LATEST, publishes
    ref.set_cpu_request("1").set_memory_request("4Gi").set_retry(
        num_retries=1, backoff_duration="60s"
    )
    apply_cluster_env()  # ConfigMap env + Secret credentials on every task pod (ignored by kfp.local)
    return ref.outputs["Output"]
