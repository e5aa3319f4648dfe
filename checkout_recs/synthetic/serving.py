"""Synthetic serving inputs: a listing snapshot, user features and category pairs shaped as the
contract's tables, a tiny multi-task ranker trained on impressions sampled from the snapshot's
own rates, a ``Prepared`` request over catalogue rows, and a ``DECISIONS`` row.

Used by the benchmarks (``benchmarks/serving*.py``, ``benchmarks/exploration_ledger.py``) and,
through ``tests/fixtures_serving.py`` and ``tests/fixtures_serving_log.py``, by the tests. The
models and serving modules are imported inside the functions that need them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.serving.recommender import Prepared

if TYPE_CHECKING:
    from checkout_recs.policy.catalog import ItemCatalog
    from checkout_recs.serving.recommender import Prepared

REGIONS = ("north", "south", "east", "west")
N_CATEGORIES = 24


def make_snapshot(
    n_listings: int = 3000, n_sellers: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Synthetic item snapshot: one row per listing, contract listing + seller feature columns
    (less ``category_ctr_lift`` and ``price_vs_category``)."""
    rng = np.random.default_rng(seed)
    n_sellers = n_sellers or max(n_listings // 4, 10)
    seller = rng.integers(0, n_sellers, n_listings)
    cat = rng.integers(0, N_CATEGORIES, n_listings).astype(np.int32)
    seller_new = (np.arange(n_sellers) % 7 == 0).astype(np.int8)
    ctr = rng.beta(2, 30, n_listings)
    views = rng.gamma(1.0, 40.0, n_listings)
    snap = pd.DataFrame(
        {
            "listing_id": np.arange(1000, 1000 + n_listings, dtype=np.int64),
            "seller_id": seller.astype(np.int64),
            "category_id": cat,
            "top_category_id": (cat // 4).astype(np.int32),
            "region": np.array(REGIONS)[rng.integers(0, len(REGIONS), n_listings)],
            "price": np.round(rng.lognormal(3.0, 0.8, n_listings), 2),
            "take_rate": np.full(n_listings, 0.1),
            "age_days": rng.exponential(60.0, n_listings),
            "views_decayed": views,
            "clicks_decayed": views * ctr,
            "purchases_decayed": views * ctr * 0.2,
            "ctr_smoothed": ctr,
            "cvr_smoothed": rng.beta(2, 10, n_listings),
            "seller_age_days": np.where(seller_new[seller] == 1, 5.0, 400.0),
            "seller_rating": rng.uniform(3.0, 5.0, n_listings),
            "seller_is_new": seller_new[seller],
            "seller_linked_history": np.zeros(n_listings, np.int8),
            "seller_sales_velocity": rng.exponential(0.5, n_listings),
        }
    )
    # the rates against their pooled mean (the feature view's lifts; no draw, so seeds keep values)
    for rate in ("ctr", "cvr"):
        r = snap[f"{rate}_smoothed"]
        snap[f"{rate}_lift"] = np.log(r / r.mean())
    return snap


def make_users(n_users: int = 200, seed: int = 0) -> pd.DataFrame:
    """User feature rows (``contract.USER_FEATURES`` columns) for users ``0..n_users-1``."""
    rng = np.random.default_rng(seed + 1)
    return pd.DataFrame(
        {
            "user_id": np.arange(n_users, dtype=np.int64),
            "n_purchases": rng.integers(0, 20, n_users),
            "avg_price_paid": rng.uniform(5, 80, n_users),
            "last_price_paid": rng.uniform(5, 80, n_users),
            "days_since_last_purchase": rng.uniform(0, 365, n_users),
            "top_category_id": rng.integers(0, N_CATEGORIES, n_users).astype(np.int32),
            "recent_listing_ids": [[] for _ in range(n_users)],
            "recent_category_ids": [
                list(rng.integers(0, N_CATEGORIES, 3).astype(np.int32)) for _ in range(n_users)
            ],
            "region": np.array(REGIONS)[rng.integers(0, len(REGIONS), n_users)],
            "mobile_share": rng.uniform(0, 1, n_users),
            "event_timestamp": pd.Timestamp("2026-11-01", tz="UTC"),
        }
    )


def make_pairs(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Category co-purchase pairs (each category complements 3 others) and empty item pairs."""
    rng = np.random.default_rng(seed + 2)
    a = np.repeat(np.arange(N_CATEGORIES), 3).astype(np.int32)
    b = ((a + rng.integers(1, N_CATEGORIES, len(a))) % N_CATEGORIES).astype(np.int32)
    pairs = pd.DataFrame(
        {
            "category_a": a,
            "category_b": b,
            "co_purchase_strength": rng.uniform(1, 10, len(a)),
            "event_timestamp": pd.Timestamp("2026-11-01", tz="UTC"),
        }
    )
    co = pd.DataFrame(
        {
            "listing_a": np.array([1000, 1001], np.int64),
            "listing_b": np.array([1002, 1003], np.int64),
            "strength": np.array([3.0, 1.0]),
        }
    )
    return pairs, co


#: Feature set of the tiny ranker; ``RICH_NAMES`` mirrors the real ranker's inputs (benchmarks).
TINY_NAMES = [
    "ctr_smoothed",
    "cvr_smoothed",
    "log_price",
    "seller_rating",
    "seller_is_new",
    "age_days",
    "n_purchases",
    "avg_price_paid",
    "device_ios",
    "hour_sin",
]
RICH_NAMES = [
    "n_purchases",
    "avg_price_paid",
    "last_price_paid",
    "days_since_last_purchase",
    "mobile_share",
    "take_rate",
    "age_days",
    "views_decayed",
    "clicks_decayed",
    "purchases_decayed",
    "ctr_smoothed",
    "cvr_smoothed",
    "seller_age_days",
    "seller_rating",
    "seller_is_new",
    "seller_linked_history",
    "seller_sales_velocity",
    "log_price",
    "log_expected_take",
    "hour_sin",
    "hour_cos",
    "device_ios",
    "device_android",
    "price_to_user_avg",
    "complement_strength",
    "complement_max",
    "price_ratio",
    "same_category",
    "same_top_category",
    "basket_size",
    "basket_price",
]


def train_tiny_ranker(
    snapshot: pd.DataFrame,
    users: pd.DataFrame,
    out_dir: Path,
    seed: int = 0,
    names: list[str] | None = None,
    n: int = 4000,
    hidden: list[int] | None = None,
    student_dir: Path | None = None,
) -> Path:
    """One-epoch multi-task ranker on impressions sampled from the snapshot's rates; with
    ``student_dir``, also its distilled student (``models.student.distill``) saved there, as the
    training pipeline's bundles carry one."""
    from checkout_recs.models.ranker import (  # lazy: keeps torch out of this module's import
        RankerConfig,
        train_ranker,
    )

    rng = np.random.default_rng(seed + 3)
    items = snapshot.iloc[rng.integers(0, len(snapshot), n)].reset_index(drop=True)
    u = users.iloc[rng.integers(0, len(users), n)].reset_index(drop=True)
    clicked = rng.random(n) < items["ctr_smoothed"].to_numpy() * 3
    bought = clicked & (rng.random(n) < items["cvr_smoothed"].to_numpy())
    frame = items.assign(
        n_purchases=u["n_purchases"],
        avg_price_paid=u["avg_price_paid"],
        last_price_paid=u["last_price_paid"],
        days_since_last_purchase=u["days_since_last_purchase"],
        mobile_share=u["mobile_share"],
        complement_strength=rng.exponential(1.0, n),
        complement_max=rng.exponential(0.5, n),
        price_ratio=rng.exponential(1.0, n),
        same_category=rng.integers(0, 2, n),
        same_top_category=rng.integers(0, 2, n),
        basket_size=rng.integers(0, 4, n),
        basket_price=rng.exponential(50.0, n),
        device=np.array(["web", "ios", "android"])[rng.integers(0, 3, n)],
        event_timestamp=pd.Timestamp("2026-11-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 24 * 60, n), unit="min"),
        clicked=clicked.astype(np.int8),
        purchased=bought.astype(np.int8),
        request_id=(np.arange(n) // 6).astype(str),
    )
    cfg = RankerConfig(epochs=1, hidden=hidden or [16], seed=seed, version="tiny-ranker-1")
    model = train_ranker(frame, cfg, names or TINY_NAMES)
    if student_dir is not None:
        from checkout_recs.models.student import (
            distill,
        )  # lazy: keeps torch out of this module's import

        distill(model, frame).save(student_dir)
    return model.save(out_dir)


def make_prepared(
    catalog: ItemCatalog,
    cand_rows: np.ndarray,
    session_class: str = "returning",
    fb_rows: np.ndarray | None = None,
    timestamp: str = "2026-11-22T12:00:00Z",
    user_id: int = 1,
) -> Prepared:
    """A ``serving.recommender.Prepared`` over catalogue rows, for policy tests and benchmarks that
    bypass the stores."""

    req = contract.PostCheckoutRequest.model_validate(
        {
            "user_id": user_id,
            "purchased_item_ids": [],
            "region": catalog.regions[0],
            "timestamp": timestamp,
        }
    )
    fb = np.empty(0, np.int64) if fb_rows is None else np.asarray(fb_rows, np.int64)
    return Prepared(
        request=req,
        request_id="r",
        started=0.0,
        user={"n_purchases": 3},
        session_class=session_class,
        fallback_reason=None,
        basket_rows=np.empty(0, np.int64),
        cand_rows=np.asarray(cand_rows, np.int64),
        cand_sources=np.full(len(cand_rows), "ann", dtype=object),
        fb_rows=fb,
        fb_sources=np.full(len(fb), "popular", dtype=object),
    )


def decision_row(i: int) -> dict[str, Any]:
    """A complete ``contract.DECISIONS`` row with request id ``req-<i>`` (a top-30 snapshot, like serving)."""
    return {
        "request_id": f"req-{i}",
        "event_timestamp": dt.datetime(2026, 11, 22, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
        "user_id": i % 97,
        "region": "north",
        "device": "web",
        "basket_ids": [5, 6],
        "policy": "ranker",
        "fallback_reason": None,
        "session_class": "returning",
        "model_version": "m1",
        "index_version": "i1",
        "predictor_version": "i1",
        "item_ids": list(range(i, i + 6)),
        "scores": [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        "propensities": [1.0, 1.0, 1.0, 1.0, 1.0, 0.9],
        "sources": ["ann"] * 6,
        "reasons": ["new seller"] * 6,
        "explored": i % 10 == 0,
        "exploration_cost": 0.01,
        "n_candidates": 250,
        "n_filtered_out": 3,
        "snapshot_ids": list(range(30)),
        "snapshot_scores": [0.5] * 30,
        "latency_ms": 4.2,
        "timings_json": '{"features": 0.2, "policy": 0.5}',
    }
