"""Shared fixtures and table builders for the measurement tests (drift, OPE, experiments, fairness).

Import explicitly: ``from tests.fixtures_measure import ...``. Redis tests use DB
``MEASURE_REDIS_DB`` and keys under a per-test prefix, and delete them afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

MEASURE_REDIS_DB = 13
REDIS_URL = f"redis://127.0.0.1:6379/{MEASURE_REDIS_DB}"


def traffic_frame(
    n: int, seed: int, price_scale: float = 1.0, region_p: tuple[float, ...] = (0.5, 0.3, 0.2)
) -> pd.DataFrame:
    """A served-traffic-like table of ``n`` rows: ids (ignored by drift), price, score, region, device.

    ``price_scale`` multiplies prices (a seasonal shift); ``region_p`` are region shares.
    """
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 10_000, n),
            "listing_id": rng.integers(0, 50_000, n),
            "price": rng.lognormal(3.0, 0.8, n) * price_scale,
            "score": rng.beta(2, 30, n),
            "region": rng.choice(["eu-west", "us-east", "apac"], n, p=list(region_p)),
            "device": rng.choice(["web", "ios", "android"], n),
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 7 * 86400, n), "s"),
        }
    )


@pytest.fixture(name="redis_flag")
def redis_flag_fixture() -> Iterator[tuple[object, str]]:
    """(client, key) on Redis DB ``MEASURE_REDIS_DB`` with a unique key; skipped if Redis is down."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2.0)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis does not answer on 127.0.0.1:6379")
    key = f"test_measure:{uuid.uuid4().hex[:8]}:drift_flag"
    yield client, key
    client.delete(key, f"{key}:history")


def geo_panel(
    seed: int,
    uplift: float,
    n_regions: int = 6,
    pre_days: int = 28,
    post_days: int = 28,
    noise: float = 0.05,
    trend_gap: float = 0.0,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """A region-day GMV panel with a planted multiplicative ``uplift`` on treated post days.

    Regions differ in size; all share a weekly cycle and a common seasonal trend; ``trend_gap``
    adds a diverging pre-trend to treated regions (breaks parallel trends). Returns the panel
    (``region, day, gmv``) and the arms (half the regions held out).
    """
    rng = np.random.default_rng(seed)
    regions = [f"r{i}" for i in range(n_regions)]
    size = rng.uniform(5_000, 20_000, n_regions)
    arms = {r: ("treatment" if i % 2 else "control") for i, r in enumerate(regions)}
    days = np.arange(pre_days + post_days)
    season = 1 + 0.2 * np.sin(2 * np.pi * days / 28) + 0.1 * np.sin(2 * np.pi * days / 7)
    rows = []
    for i, r in enumerate(regions):
        treated = arms[r] == "treatment"
        effect = np.where((days >= pre_days) & treated, 1 + uplift, 1.0)
        drift = 1 + trend_gap * days / len(days) if treated else 1.0
        gmv = size[i] * season * effect * drift * rng.lognormal(0, noise, len(days))
        rows.append(pd.DataFrame({"region": r, "day": days, "gmv": gmv}))
    return pd.concat(rows, ignore_index=True), arms


def ab_sessions(seed: int, n_users: int = 4_000, ctr_lift: float = 0.0) -> pd.DataFrame:
    """Per-session A/B data (``sessions_from_impressions`` columns + ``arm``), hash-assigned users.

    Users have heterogeneous click propensity and 1-5 sessions each; treatment multiplies the
    click probability by ``1 + ctr_lift``.
    """
    from checkout_recs.evaluation.experiments.ab import assign_by_user_hash

    rng = np.random.default_rng(seed)
    users = np.arange(n_users)
    treated = assign_by_user_hash(users, f"test-{seed}")
    n_sess = rng.integers(1, 6, n_users)
    user = np.repeat(users, n_sess)
    base = np.repeat(rng.beta(2, 20, n_users), n_sess)
    p_click = np.clip(base * np.where(treated[user], 1 + ctr_lift, 1.0), 0, 1)
    clicks = rng.binomial(6, p_click)
    purchases = rng.binomial(clicks, 0.15)
    gmv = purchases * rng.lognormal(3, 0.7, len(user))
    return pd.DataFrame(
        {
            "request_id": [f"q{i}" for i in range(len(user))],
            "user_id": user,
            "arm": np.where(treated[user], "treatment", "control"),
            "sessions": 1,
            "impressions": 6,
            "clicks": clicks,
            "purchases": purchases,
            "gmv": gmv,
            "revenue": gmv * 0.1,
        }
    )
