"""Typed configuration and summary of one simulator run.

``SimConfig`` drives the CLI (``checkout-recs simulate``), the KFP component and the tests; every
field is documented. ``SimSummary`` is what ``run_simulation`` returns and writes into
``manifest.json``.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class SimConfig(BaseModel):
    """Size, time span and behaviour knobs of the simulated marketplace (demo size by default)."""

    seed: int = Field(
        default=7, description="Seed for everything random; one seed, one set of files."
    )
    regions: tuple[str, ...] = Field(
        default=("north", "south", "east"), description="Region codes (lower case, [a-z0-9-])."
    )
    n_sellers: int = Field(default=500, ge=1, description="Sellers at the end of the run.")
    n_listings: int = Field(default=5_000, ge=10, description="Listings at the end of the run.")
    n_users: int = Field(default=2_000, ge=1, description="Buyers.")
    days: int = Field(default=14, ge=1, description="Simulated days of checkouts.")
    checkouts_per_day: int = Field(default=300, ge=1, description="Checkouts (orders) per day.")
    start: dt.datetime = Field(
        default=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        description="First simulated midnight (UTC).",
    )
    initial_listing_share: float = Field(
        default=0.7, gt=0, le=1, description="Share of listings already listed before ``start``."
    )
    new_seller_share: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Share of sellers who join within 30 days of ``start``.",
    )
    linked_history_share: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Share of new sellers with history linked from elsewhere.",
    )
    multi_quantity_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of listings with quantity > 1 (most are one-offs).",
    )
    seasonality: float = Field(
        default=1.0, ge=0, description="Strength of seasonal drift in tastes/demand (0 = quiet)."
    )
    season_period_days: float = Field(
        default=28.0, gt=0, description="Period of the seasonal cycle, days."
    )
    epsilon: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Logged policy: share of requests with a uniform random slate.",
    )
    n_candidates: int = Field(
        default=24,
        ge=6,
        description="Logged policy: candidates per request (the random slate's pool).",
    )
    abandon_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of checkouts preceded by an abandoned lock elsewhere.",
    )
    delist_rate_per_day: float = Field(
        default=0.003, ge=0, le=1, description="Daily probability that a live listing is delisted."
    )
    lock_ttl_s: int = Field(
        default=900, ge=1, description="Lock time-to-live of a checkout lock, s."
    )
    chunk_rows: int = Field(
        default=500_000,
        ge=1_000,
        multiple_of=1_000,
        description="Listings per parquet part (big catalogues stream); does not change the data.",
    )
    progress: bool = Field(default=False, description="Show progress bars.")


class SimSummary(BaseModel):
    """What one run produced: rows per table, seed, time span and where the files are."""

    seed: int
    out_dir: str
    rows: dict[str, int]
    start: dt.datetime
    end: dt.datetime
    seconds: float
    config: SimConfig
