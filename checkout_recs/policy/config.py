"""Typed configuration of the six-slot policy: diversity, exploration budget, exposure.

One ``PolicyConfig`` drives the transformer, offline evaluation and the CLI; every field is
documented here and in ``docs/serving.md`` (with the trade-offs). Load it from JSON/YAML with
``PolicyConfig.model_validate(dict)``; unknown fields are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SESSION_CLASSES = ("new_user", "returning", "high_value")


class LedgerConfig(BaseModel):
    """Where the exploration budget is tracked (``checkout_recs.policy.ledger``).

    ``local`` keeps the day's money in the process (embedded default, one replica). ``redis``
    shares it across replicas: each replica leases budget from one Redis hash per UTC day with an
    atomic Lua script and spends only what it leased, so all replicas together never exceed the cap.
    ``auto`` is ``redis`` when ``url`` is set (the transformer sets it to its inventory Redis).
    ``renewal`` says who makes a shared ledger's Redis round trips: the policy stage itself
    (``inline``, deterministic: offline evaluation, simulations) or a renewer thread
    (``background``, serving). ``ledger_factory.open_ledger`` reads both.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "local", "redis"] = Field(
        default="auto", description="local | redis | auto (redis when url is set, else local)."
    )
    url: str | None = Field(default=None, description="Redis URL, e.g. redis://127.0.0.1:6379/0.")
    prefix: str = Field(
        default="checkout_recs:explore",
        min_length=1,
        description="Key prefix; the day's hash is '<prefix>:<YYYY-MM-DD>' (UTC).",
    )
    lease_factor: float = Field(
        default=4.0,
        ge=1.0,
        description="A lease is this many times the worst-case cost of the request asking for it "
        "(more: fewer round trips, more budget idle in other replicas' leases).",
    )
    sync_every: int = Field(
        default=200,
        ge=1,
        description="Requests between flushes of served revenue and spend to Redis (the shared cap grows).",
    )
    timeout_ms: float = Field(
        default=20.0,
        gt=0,
        description="Redis connect and read timeout (ms); the call blocks the policy stage at most this long.",
    )
    retry_after_s: float = Field(
        default=5.0,
        ge=0,
        description="After a Redis failure, seconds without exploration before retrying.",
    )
    ttl_days: int = Field(default=3, ge=1, description="Days a day's hash is kept in Redis.")
    renewal: Literal["inline", "background"] = Field(
        default="inline",
        description="Shared (Redis) ledger only: 'inline' makes the lease's script calls inside the policy "
        "stage (RedisLedger, deterministic; offline default); 'background' makes every call in a renewer "
        "thread, so the request path never waits on Redis (BackgroundRedisLedger; the transformer's default, "
        "--ledger_renewal). Ignored by the local ledger.",
    )
    """Who renews a shared ledger's lease: the policy stage (``inline``) or a renewer thread
    (``background``, ``policy.ledger_background``). No effect on the local ledger."""


class ExplorationConfig(BaseModel):
    """Capped exploration of uncertain and cold listings in one slot of the six.

    With probability ``epsilon[session_class]`` the exploration slot (the last one) shows a
    listing drawn from the exploration pool with softmax(UCB bonus / ``temperature``) weights
    instead of the greedy choice, so each slot's propensity is known exactly. Exploration is
    only allowed while the money it may give up fits the day's budget (see ``daily_share``).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Master switch for exploration.")
    epsilon: dict[str, float] = Field(
        default_factory=lambda: {"new_user": 0.15, "returning": 0.10, "high_value": 0.03},
        description="Probability of exploring, per session class (new_user, returning, high_value).",
    )
    daily_share: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="Cap on expected revenue given up to exploration, as a share of the expected "
        "revenue served that day (currency / currency).",
    )
    min_daily_budget: float = Field(
        default=0.0,
        ge=0,
        description="Budget (currency) available from the first request of the day.",
    )
    pool_size: int = Field(
        default=20, ge=1, le=200, description="Candidates in the exploration pool."
    )
    ucb_alpha: float = Field(default=1.0, ge=0, description="Weight of the uncertainty bonus.")
    temperature: float = Field(
        default=0.5, gt=0, description="Softmax temperature over pool scores."
    )
    high_value_min_basket: float = Field(
        default=200.0,
        ge=0,
        description="Basket value (currency) above which a session is high_value.",
    )
    ledger: LedgerConfig = Field(
        default_factory=LedgerConfig,
        description="Where the day's budget is tracked (per process or shared).",
    )


class ExposureConfig(BaseModel):
    """Exposure constraints, enforced over a sliding window of served slots."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_new_seller_share: float = Field(
        default=1 / 6,
        ge=0,
        le=1,
        description="Target minimum share of slots for new sellers' listings (seller younger than 30 days).",
    )
    min_cold_share: float = Field(
        default=1 / 6,
        ge=0,
        le=1,
        description="Target minimum share of slots for cold-start listings (see cold_days, cold_max_impressions); "
        "a floor of its own, counted apart from the new-seller floor.",
    )
    cold_slots: int = Field(
        default=1,
        ge=0,
        le=3,
        description="While the cold-start share is below target, the floor tops each slate up to this many "
        "cold-start listings (reserved slots, when quality allows).",
    )
    cold_days: float = Field(
        default=14.0,
        gt=0,
        description="A listing younger than this (days, snapshot age) is cold-start.",
    )
    cold_max_impressions: int | None = Field(
        default=3,
        ge=1,
        description="A young listing stops being cold-start once the window holds this many of its "
        "impressions (little exposure history left to gain); None: age only.",
    )
    cold_order: Literal["least_shown", "best"] = Field(
        default="least_shown",
        description="Which qualifying cold-start listing takes a reserved slot: 'least_shown' (fewest impressions "
        "in the window first, then expected revenue: spreads first impressions over many new listings) or "
        "'best' (highest expected revenue first).",
    )
    min_quality: float = Field(
        default=0.5,
        ge=0,
        description="A new-seller or cold-start listing may take a reserved slot only if its expected revenue "
        "is at least this fraction of the slate's 6th-best expected revenue (quality prior).",
    )
    max_seller_share: float = Field(
        default=0.02, gt=0, le=1, description="Maximum share of all served slots for one seller."
    )
    seller_share_min_slots: int = Field(
        default=600, ge=1, description="Served slots before the per-seller cap is enforced."
    )
    audit_buckets: int = Field(
        default=8, ge=1, description="Proxy audit buckets (hash of seller id)."
    )
    skew_penalty: float = Field(
        default=0.5,
        ge=0,
        description="Score multiplier penalty per unit of a bucket's over-exposure ratio.",
    )
    window_slots: int = Field(default=60_000, ge=60, description="Slots in the sliding window.")


class PolicyConfig(BaseModel):
    """Everything the policy needs besides the candidates and their scores."""

    model_config = ConfigDict(extra="forbid")

    max_per_seller: int = Field(default=1, ge=1, le=6, description="Items per seller in the six.")
    max_per_category: int = Field(
        default=2, ge=1, le=6, description="Items per category in the six."
    )
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)
    exposure: ExposureConfig = Field(default_factory=ExposureConfig)
    predictor_deadline_ms: float = Field(
        default=40.0,
        gt=0,
        description="Deadline for the predictor answer; past it the fallback answers.",
    )
    switch_cache_ttl_s: float = Field(
        default=1.0, ge=0, description="How long drift flag and kill switch reads are cached (s)."
    )
