"""Feast objects of the checkout-recs feature repository, for any features location.

``make_definitions(features_uri)`` builds the entities, file sources and feature views over
``<features_uri>/<view>.parquet`` (a local folder or ``s3://bucket/prefix``); the run folder
holds the parquet, not this repository. Each view's TTL is its staleness SLA
(``checkout_recs.features.sla.FEATURE_SLAS``). ``repo.py`` calls this for ``feast apply``;
``store.py`` calls it for programmatic use.
"""

from __future__ import annotations

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float64, Int32, Int64, String

from checkout_recs.features.sla import FEATURE_SLAS

PROJECT = "checkout_recs"

_USER_SCHEMA = [
    Field(name="n_purchases", dtype=Int64),
    Field(name="avg_price_paid", dtype=Float64),
    Field(name="last_price_paid", dtype=Float64),
    Field(name="days_since_last_purchase", dtype=Float64),
    Field(name="top_category_id", dtype=Int32),
    Field(name="recent_listing_ids", dtype=Array(Int64)),
    Field(name="recent_category_ids", dtype=Array(Int32)),
    Field(name="region", dtype=String),
    Field(name="mobile_share", dtype=Float64),
]
_LISTING_SCHEMA = [
    Field(name="seller_id", dtype=Int64),
    Field(name="category_id", dtype=Int32),
    Field(name="top_category_id", dtype=Int32),
    Field(name="region", dtype=String),
    Field(name="price", dtype=Float64),
    Field(name="take_rate", dtype=Float64),
    Field(name="age_days", dtype=Float64),
    Field(name="views_decayed", dtype=Float64),
    Field(name="clicks_decayed", dtype=Float64),
    Field(name="purchases_decayed", dtype=Float64),
    Field(name="ctr_smoothed", dtype=Float64),
    Field(name="cvr_smoothed", dtype=Float64),
    Field(name="ctr_lift", dtype=Float64),
    Field(name="cvr_lift", dtype=Float64),
    Field(name="category_ctr_lift", dtype=Float64),
    Field(name="price_vs_category", dtype=Float64),
]
_SELLER_SCHEMA = [
    Field(name="seller_age_days", dtype=Float64),
    Field(name="seller_rating", dtype=Float64),
    Field(name="seller_is_new", dtype=Int32),
    Field(name="seller_linked_history", dtype=Int32),
    Field(name="seller_sales_velocity", dtype=Float64),
]
_PAIR_SCHEMA = [Field(name="co_purchase_strength", dtype=Float64)]


def entities() -> dict[str, Entity]:
    """The entities: user, listing, seller, and the two ends of a category pair."""
    return {
        "user": Entity(
            name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A buyer."
        ),
        "listing": Entity(
            name="listing",
            join_keys=["listing_id"],
            value_type=ValueType.INT64,
            description="A listing (one-of-a-kind item or a stock of identical ones).",
        ),
        "seller": Entity(
            name="seller",
            join_keys=["seller_id"],
            value_type=ValueType.INT64,
            description="A seller.",
        ),
        "category_a": Entity(
            name="category_a",
            join_keys=["category_a"],
            value_type=ValueType.INT32,
            description="Category in the basket (category pair, first key).",
        ),
        "category_b": Entity(
            name="category_b",
            join_keys=["category_b"],
            value_type=ValueType.INT32,
            description="Category of the candidate (category pair, second key).",
        ),
    }


def _source(features_uri: str, view: str, s3_endpoint: str | None) -> FileSource:
    return FileSource(
        name=f"{view}_source",
        path=f"{features_uri.rstrip('/')}/{view}.parquet",
        timestamp_field="event_timestamp",
        s3_endpoint_override=s3_endpoint,
    )


def make_definitions(features_uri: str, s3_endpoint: str | None = None) -> list:
    """Entities and feature views over ``<features_uri>/<view>.parquet``.

    Returns
    -------
    list
        Feast objects to pass to ``FeatureStore.apply``: 5 entities and 4 feature views
        (``user``, ``listing``, ``seller``, ``category_pair``), each view with
        ``ttl = FEATURE_SLAS[view]``.
    """
    ent = entities()
    spec = {
        "user": ([ent["user"]], _USER_SCHEMA),
        "listing": ([ent["listing"]], _LISTING_SCHEMA),
        "seller": ([ent["seller"]], _SELLER_SCHEMA),
        "category_pair": ([ent["category_a"], ent["category_b"]], _PAIR_SCHEMA),
    }
    views = [
        FeatureView(
            name=view,
            entities=ents,
            ttl=FEATURE_SLAS[view],
            schema=schema,
            online=True,
            source=_source(features_uri, view, s3_endpoint),
            tags={"staleness_sla_s": str(int(FEATURE_SLAS[view].total_seconds()))},
        )
        for view, (ents, schema) in spec.items()
    ]
    return [*ent.values(), *views]
