"""The data contract: table schemas (pyarrow) and the request/response models (pydantic).

This module is the one source of truth for the shape of every table that crosses a stage
boundary (simulator or raw logs -> ingest -> labels -> features -> training -> serving) and
for the post-checkout request and response. Nothing else defines a column list.

Conventions
-----------
* Identifiers are ``int64`` (``request_id`` and ``order_id`` are strings: they come from the
  checkout page).
* Times are ``timestamp[us, tz=UTC]`` in a column named ``event_timestamp`` unless the column
  says otherwise (``listed_at``, ``joined_at``, ``signup_at``).
* Money is ``float64`` in the listing's currency units; rates and probabilities are ``float64``
  in [0, 1].
* Value rules of the raw tables (``RANGES``, ``ALLOWED_VALUES`` with ``REGIONS``,
  ``NON_EMPTY_STRINGS``) live here too, keyed by column name; ingest reads them from here and
  quarantines a row that breaks one.
* ``docs/data-contract.md`` documents every column; ``tests/code/test_contract.py`` checks that
  the document and this module agree.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from typing import Annotated, Any, Literal, NamedTuple

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

TS = pa.timestamp("us", tz="UTC")

#: Number of recommendations on the post-checkout page. Not configurable: the page has six slots.
SLATE_SIZE = 6
#: Upper bound on the items in one checkout basket that a request may carry.
MAX_BASKET_ITEMS = 50
#: Length of the recent-item sequence kept per user (feature ``recent_listing_ids``).
RECENT_SEQUENCE_LEN = 20

DEVICES = ("web", "ios", "android")
INVENTORY_EVENT_TYPES = ("listed", "locked", "unlocked", "sold", "delisted")
#: Region codes the marketplace sells in; a raw row with any other ``region`` is quarantined.
REGIONS = ("north", "south", "east", "west")

# --------------------------------------------------------------------------------------------
# Raw tables (what the simulator writes and ingest validates)
# --------------------------------------------------------------------------------------------

CATEGORIES = pa.schema(
    [
        pa.field("category_id", pa.int32(), nullable=False),
        pa.field("parent_id", pa.int32(), nullable=True),  # null for a top-level category
        pa.field("top_category_id", pa.int32(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
    ]
)

SELLERS = pa.schema(
    [
        pa.field("seller_id", pa.int64(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("joined_at", TS, nullable=False),
        pa.field("rating", pa.float64(), nullable=True),  # 1..5 stars; null before any rating
        pa.field("linked_history", pa.bool_(), nullable=False),  # history linked from elsewhere
    ]
)

LISTINGS = pa.schema(
    [
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("seller_id", pa.int64(), nullable=False),
        pa.field("category_id", pa.int32(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),  # currency units, > 0
        pa.field("take_rate", pa.float64(), nullable=False),  # share of price, in (0, 1)
        pa.field("quantity", pa.int32(), nullable=False),  # >= 1 at listing time
        pa.field("listed_at", TS, nullable=False),
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("device", pa.string(), nullable=False),  # primary device, one of DEVICES
        pa.field("signup_at", TS, nullable=False),
    ]
)

#: One row per order line. An order is a checkout; each checkout triggers one request.
ORDERS = pa.schema(
    [
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("quantity", pa.int32(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

#: One row per shown slot. ``propensity`` is the probability that the logging policy put this
#: listing in this slot for this request, in (0, 1].
IMPRESSIONS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("order_id", pa.string(), nullable=True),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("slot", pa.int8(), nullable=False),  # 0..5, 0 is the top slot
        pa.field("policy", pa.string(), nullable=False),
        pa.field("propensity", pa.float64(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

CLICKS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

#: Purchases of recommended listings (made after a click). Labels attribute a purchase to the
#: click of the same (user, listing) within ``LabelConfig.purchase_window``.
PURCHASES = pa.schema(
    [
        pa.field("purchase_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

#: Inventory changes, ordered per listing by ``sequence`` (strictly increasing per listing).
#: ``lock_ttl_s`` is set on ``locked`` events only.
INVENTORY_EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),  # one of INVENTORY_EVENT_TYPES
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("lock_ttl_s", pa.int32(), nullable=True),
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

RAW_TABLES: dict[str, pa.Schema] = {
    "categories": CATEGORIES,
    "sellers": SELLERS,
    "listings": LISTINGS,
    "users": USERS,
    "orders": ORDERS,
    "impressions": IMPRESSIONS,
    "clicks": CLICKS,
    "purchases": PURCHASES,
    "inventory_events": INVENTORY_EVENTS,
}

#: Primary key of each raw table (used for duplicate detection and idempotent re-ingest).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "categories": ("category_id",),
    "sellers": ("seller_id",),
    "listings": ("listing_id",),
    "users": ("user_id",),
    "orders": ("order_id", "listing_id"),
    "impressions": ("request_id", "slot"),
    "clicks": ("request_id", "listing_id"),
    "purchases": ("purchase_id",),
    "inventory_events": ("event_id",),
}

#: Quarantine rows: the offending row as JSON, which table, and why.
QUARANTINE = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=True),
        pa.field("row_json", pa.string(), nullable=False),
        pa.field("ingest_run_id", pa.string(), nullable=False),
    ]
)

#: Quarantined files (``quarantine/files.parquet``): a raw file that could not be read, or whose
#: column types cannot be cast to the contract, set aside whole (a copy under ``quarantine/files/``).
QUARANTINE_FILES = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("file", pa.string(), nullable=False),  # the source's name for it (path or s3 key)
        pa.field(
            "copied_to", pa.string(), nullable=True
        ),  # path of the copy in the ingested folder
        pa.field("reason", pa.string(), nullable=False),  # one of FILE_REASONS
        pa.field("detail", pa.string(), nullable=False),
        pa.field(
            "size_bytes", pa.int64(), nullable=True
        ),  # null when the file could not be fetched
        pa.field("rows", pa.int64(), nullable=True),  # null when the footer cannot be read
        pa.field("ingest_run_id", pa.string(), nullable=False),
    ]
)

#: Why a whole file is quarantined: it is not readable parquet (truncated, corrupt, another
#: format, or the read failed), or a contract column's type cannot be cast (e.g. timestamps as
#: bare numbers, ids as strings, nested types).
FILE_REASONS = ("unreadable", "wrong_column_type")

# --------------------------------------------------------------------------------------------
# Value rules of the raw tables (ingest quarantines a row that breaks one as ``out_of_range``)
# --------------------------------------------------------------------------------------------


class Range(NamedTuple):
    """Allowed values of a numeric column: ``lo <= x <= hi`` (``<`` where open); NaN and ±inf never."""

    lo: float
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def describe(self, column: str) -> str:
        """``"price outside (0, inf)"``: the rule as ingest reports it."""
        close = ")" if self.hi_open or math.isinf(self.hi) else "]"
        return f"{column} outside {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{close}"


#: Integer identifiers are positive; category ids start at 0 (the first top-level category).
#: Negative ids never come in: derived tables use -1 as "none".
ID_COLUMNS = ("seller_id", "listing_id", "user_id")
CATEGORY_ID_COLUMNS = ("category_id", "parent_id", "top_category_id")

#: Range of each numeric column, by name, in every raw table that has it.
RANGES: dict[str, Range] = {
    **{c: Range(1) for c in ID_COLUMNS},
    **{c: Range(0) for c in CATEGORY_ID_COLUMNS},
    "price": Range(0, lo_open=True),  # currency units, finite
    "take_rate": Range(0, 1, lo_open=True, hi_open=True),
    "quantity": Range(1),
    "propensity": Range(0, 1, lo_open=True),
    "slot": Range(0, SLATE_SIZE - 1),
    "rating": Range(1, 5),
    "sequence": Range(1),
    "lock_ttl_s": Range(0, lo_open=True),  # seconds
}

#: Allowed values of each enumerated string column, by name, in every raw table that has it.
ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "region": REGIONS,
    "device": DEVICES,
    "event_type": INVENTORY_EVENT_TYPES,
}

#: String columns that must hold a visible character (empty or whitespace-only is refused).
NON_EMPTY_STRINGS = ("title", "name", "order_id", "request_id", "purchase_id", "event_id", "policy")

# --------------------------------------------------------------------------------------------
# Derived tables (labels and feature views)
# --------------------------------------------------------------------------------------------

#: IMPRESSIONS plus labels. ``purchased`` implies ``clicked``.
LABELLED_IMPRESSIONS = pa.schema(
    list(IMPRESSIONS)
    + [
        pa.field("clicked", pa.int8(), nullable=False),
        pa.field("purchased", pa.int8(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("take_rate", pa.float64(), nullable=False),
    ]
)

#: Time-decayed co-purchase strength between two categories (complements after checkout).
CATEGORY_PAIR_FEATURES = pa.schema(
    [
        pa.field("category_a", pa.int32(), nullable=False),
        pa.field("category_b", pa.int32(), nullable=False),
        pa.field("co_purchase_strength", pa.float64(), nullable=False),  # decayed count, >= 0
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

#: Feature view ``user``; entity ``user_id``.
USER_FEATURES = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("n_purchases", pa.int64(), nullable=False),
        pa.field("avg_price_paid", pa.float64(), nullable=False),  # 0 when no purchase
        pa.field("last_price_paid", pa.float64(), nullable=False),
        pa.field("days_since_last_purchase", pa.float64(), nullable=False),  # 365 when none
        pa.field("top_category_id", pa.int32(), nullable=False),  # -1 when none
        pa.field("recent_listing_ids", pa.list_(pa.int64()), nullable=False),  # newest last
        pa.field("recent_category_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("mobile_share", pa.float64(), nullable=False),  # share of orders on ios/android
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

#: Feature view ``seller``; entity ``seller_id``.
SELLER_FEATURES = pa.schema(
    [
        pa.field("seller_id", pa.int64(), nullable=False),
        pa.field("seller_age_days", pa.float64(), nullable=False),
        pa.field("seller_rating", pa.float64(), nullable=False),  # prior mean when unrated
        pa.field("seller_is_new", pa.int8(), nullable=False),
        pa.field("seller_linked_history", pa.int8(), nullable=False),
        pa.field("seller_sales_velocity", pa.float64(), nullable=False),  # sales/day, decayed
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

#: Feature view ``listing``; entity ``listing_id``. Smoothed rates use empirical-Bayes priors.
LISTING_FEATURES = pa.schema(
    [
        pa.field("listing_id", pa.int64(), nullable=False),
        pa.field("seller_id", pa.int64(), nullable=False),
        pa.field("category_id", pa.int32(), nullable=False),
        pa.field("top_category_id", pa.int32(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("take_rate", pa.float64(), nullable=False),
        pa.field("age_days", pa.float64(), nullable=False),
        pa.field("views_decayed", pa.float64(), nullable=False),
        pa.field("clicks_decayed", pa.float64(), nullable=False),
        pa.field("purchases_decayed", pa.float64(), nullable=False),
        pa.field("ctr_smoothed", pa.float64(), nullable=False),
        pa.field("cvr_smoothed", pa.float64(), nullable=False),
        pa.field("ctr_lift", pa.float64(), nullable=False),  # log(ctr_smoothed / snapshot prior)
        pa.field("cvr_lift", pa.float64(), nullable=False),  # log(cvr_smoothed / snapshot prior)
        pa.field(
            "category_ctr_lift", pa.float64(), nullable=False
        ),  # log(top-category CTR / all), recent
        pa.field(
            "price_vs_category", pa.float64(), nullable=False
        ),  # log price - leaf median log price
        pa.field("event_timestamp", TS, nullable=False),
    ]
)

FEATURE_TABLES: dict[str, pa.Schema] = {
    "user": USER_FEATURES,
    "listing": LISTING_FEATURES,
    "seller": SELLER_FEATURES,
    "category_pair": CATEGORY_PAIR_FEATURES,
}


#: Decision log: one row per answered post-checkout request (serving writes; explain, replay and
#: OPE read). ``snapshot_ids``/``snapshot_scores`` are the ranked candidates behind the six.
DECISIONS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("event_timestamp", TS, nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("basket_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("policy", pa.string(), nullable=False),
        pa.field("fallback_reason", pa.string(), nullable=True),
        pa.field("session_class", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=True),
        pa.field("index_version", pa.string(), nullable=True),
        # the bundle version the ranker answered with (the predictor's ``bundle_version``): equal to
        # index_version when transformer and ranker served one bundle; null when no ranker scored
        pa.field("predictor_version", pa.string(), nullable=True),
        pa.field("item_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("scores", pa.list_(pa.float64()), nullable=False),
        pa.field("propensities", pa.list_(pa.float64()), nullable=False),
        pa.field("sources", pa.list_(pa.string()), nullable=False),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
        pa.field("explored", pa.bool_(), nullable=False),
        pa.field("exploration_cost", pa.float64(), nullable=False),
        pa.field("n_candidates", pa.int32(), nullable=False),
        pa.field("n_filtered_out", pa.int32(), nullable=False),
        pa.field("snapshot_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("snapshot_scores", pa.list_(pa.float64()), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=True),
        pa.field("timings_json", pa.string(), nullable=False),
    ]
)


def field_names(schema: pa.Schema) -> list[str]:
    """Column names of ``schema`` in order."""
    return [f.name for f in schema]


def empty_table(schema: pa.Schema) -> pa.Table:
    """A zero-row table with ``schema`` (for stages that legitimately produce nothing)."""
    return schema.empty_table()


# --------------------------------------------------------------------------------------------
# Request / response
# --------------------------------------------------------------------------------------------

Device = Literal["web", "ios", "android"]
PolicyName = Literal["ranker", "fallback"]
FallbackReason = Literal[
    "unknown_user",
    "kill_switch",
    "drift_flag",
    "predictor_error",
    "predictor_timeout",
    "inventory_unavailable",
    "inventory_stale",
    "features_unavailable",
    "stale_features",
    "too_few_candidates",
    "overload",
]


#: Largest identifier a request may carry: int64's maximum (ids are int64 in every table).
ID_MAX = 2**63 - 1
#: Checkout times a request may carry, inclusive (UTC): well inside pandas' nanosecond range
#: (1677-09-21 .. 2262-04-11), so every stage can hold them.
REQUEST_TIME_MIN = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
REQUEST_TIME_MAX = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
#: ``request_id``: 1..64 visible ASCII characters (it names the decision in logs and disputes).
REQUEST_ID_PATTERN = r"^[!-~]{1,64}$"
#: A timestamp is an ISO-8601 string (date first); unix numbers are refused.
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

#: A request's identifier: a JSON integer (no string, bool or float) in [0, ``ID_MAX``].
RequestInt = Annotated[int, Field(strict=True, ge=0, le=ID_MAX)]


class PostCheckoutRequest(BaseModel):
    """What the checkout page sends right after a buyer completes checkout.

    Limits are part of the contract and stated here once (the transformer, its OpenAPI document
    and ``docs/data-contract.md`` follow them): ids are JSON integers in [0, ``ID_MAX``] (strings,
    bools and floats such as ``1059.0`` are refused, nothing is truncated); a basket holds
    0..``MAX_BASKET_ITEMS`` of them; ``timestamp`` is an ISO-8601 string within
    [``REQUEST_TIME_MIN``, ``REQUEST_TIME_MAX``]; ``request_id`` matches ``REQUEST_ID_PATTERN``;
    unknown fields are refused (a typo must not pass silently).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: RequestInt = Field(description="Buyer id.")
    purchased_item_ids: list[RequestInt] = Field(
        default_factory=list,
        max_length=MAX_BASKET_ITEMS,
        description="Listing ids just bought (the basket); may be empty.",
    )
    region: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*$")
    device: Device = "web"
    timestamp: dt.datetime | None = Field(
        default=None,
        description="Checkout time, ISO 8601 (naive means UTC), within 1970-01-01 .. "
        "2200-01-01 UTC; the server's clock when absent.",
    )
    request_id: str | None = Field(
        default=None, pattern=REQUEST_ID_PATTERN, description="Set by the caller or generated."
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_only(cls, ts: Any) -> Any:
        if ts is None or isinstance(ts, dt.datetime):
            return ts
        if not isinstance(ts, str) or not _ISO_DATE.match(ts):
            raise ValueError("timestamp must be an ISO-8601 string (e.g. 2026-11-22T10:00:00Z)")
        return ts

    @field_validator("timestamp")
    @classmethod
    def _utc_in_range(cls, ts: dt.datetime | None) -> dt.datetime | None:
        if ts is None:
            return None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        if not REQUEST_TIME_MIN <= ts <= REQUEST_TIME_MAX:
            raise ValueError(
                f"timestamp must lie within {REQUEST_TIME_MIN:%Y-%m-%d} .. "
                f"{REQUEST_TIME_MAX:%Y-%m-%d} UTC"
            )
        return ts

    def resolved_request_id(self) -> str:
        """The caller's request id, or a fresh uuid4 hex when none was given."""
        return self.request_id or uuid.uuid4().hex


class RecommendedItem(BaseModel):
    """One of the six slots."""

    listing_id: int
    slot: int = Field(ge=0, lt=SLATE_SIZE)
    score: float = Field(description="Expected revenue of the slot, currency units.")
    p_click: float | None = Field(default=None, ge=0, le=1)
    p_purchase: float | None = Field(default=None, ge=0, le=1, description="P(purchase | click).")
    propensity: float = Field(gt=0, le=1, description="P(this listing in this slot | request).")
    source: str = Field(description="Candidate source: ann, complement, popular, cold_start, ...")
    reason: str = Field(description="Non-personal explanation shown to sellers and support.")


class PostCheckoutResponse(BaseModel):
    """Exactly ``SLATE_SIZE`` distinct in-stock listings, and how they were chosen."""

    request_id: str
    items: list[RecommendedItem] = Field(min_length=SLATE_SIZE, max_length=SLATE_SIZE)
    policy: PolicyName
    fallback_reason: FallbackReason | None = None
    model_version: str | None = None
    index_version: str | None = None
    latency_ms: float | None = None

    @field_validator("items")
    @classmethod
    def _distinct(cls, items: list[RecommendedItem]) -> list[RecommendedItem]:
        ids = [it.listing_id for it in items]
        if len(set(ids)) != len(ids):
            raise ValueError("the six items must be distinct listings")
        return items
