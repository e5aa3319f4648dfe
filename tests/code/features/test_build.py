"""Feature computation: decay, snapshot grid, priors, and point-in-time correct snapshots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from checkout_recs import contract
from checkout_recs.features.build import build_feature_tables
from checkout_recs.features.priors import (
    DEFAULT_CTR_PRIOR,
    BetaPrior,
    fit_beta_prior,
    smoothed_rate,
)
from checkout_recs.features.tables import decayed_daily, read_raw, snapshot_grid
from tests.fixtures_features import make_feature_inputs, synthetic_features  # noqa: F401


def test_snapshot_grid_is_end_of_each_utc_day():
    grid = snapshot_grid(
        pd.Timestamp("2026-03-01 05:00", tz="UTC"), pd.Timestamp("2026-03-03 00:00", tz="UTC")
    )
    assert len(grid) == 3
    assert grid[0] == pd.Timestamp("2026-03-01 23:59:59.999999", tz="UTC")
    assert grid[-1] == pd.Timestamp("2026-03-03 23:59:59.999999", tz="UTC")


def test_decayed_daily_matches_brute_force():
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    ts = pd.Series(start + pd.to_timedelta(rng.uniform(0, 6 * 86400, 50), unit="s"))
    ent = rng.integers(0, 4, 50)
    w = rng.uniform(0.5, 2, 50)
    grid = snapshot_grid(start, start + pd.Timedelta(days=5))
    got = decayed_daily(ent, ts, grid, 4, half_life_days=3.0, weights=w)
    for e in range(4):
        for d, g in enumerate(grid):
            m = (ent == e) & (ts <= g).to_numpy()
            age = ((g - ts[m]) / pd.Timedelta(days=1)).to_numpy()
            assert np.isclose(got[e, d], np.sum(w[m] * 2.0 ** (-age / 3.0)))


def test_beta_prior_pools_and_shrinks():
    rng = np.random.default_rng(1)
    trials = rng.integers(20, 200, 400).astype(float)
    p = rng.beta(4, 36, 400)  # mean 0.1
    succ = rng.binomial(trials.astype(int), p).astype(float)
    prior = fit_beta_prior(succ, trials, DEFAULT_CTR_PRIOR)
    assert abs(prior.mean - 0.1) < 0.02
    assert 10 < prior.alpha + prior.beta < 200  # true strength 40, fitted within reason
    cold = smoothed_rate(np.array([0.0]), np.array([0.0]), prior)[0]
    assert np.isclose(cold, prior.mean)  # a never-shown listing gets the population's rate
    assert fit_beta_prior(succ[:3], trials[:3], DEFAULT_CTR_PRIOR) == DEFAULT_CTR_PRIOR


def test_smoothed_rate_moves_towards_data_with_exposure():
    prior = BetaPrior(1.0, 19.0)
    few = smoothed_rate(np.array([1.0]), np.array([2.0]), prior)[0]
    many = smoothed_rate(np.array([500.0]), np.array([1000.0]), prior)[0]
    assert prior.mean < few < 0.5 and abs(many - 0.5) < 0.01


def test_tables_have_exactly_the_contract_schemas(synthetic_features):  # noqa: F811
    for view, schema in contract.FEATURE_TABLES.items():
        table = pq.read_table(synthetic_features["features"] / f"{view}.parquet")
        assert table.schema.equals(schema, check_metadata=False), view


def test_user_snapshot_counts_only_events_up_to_its_time(synthetic_features):  # noqa: F811
    user = pd.read_parquet(synthetic_features["features"] / "user.parquet")
    orders = read_raw(synthetic_features["validated"], "orders")
    purchases = read_raw(synthetic_features["validated"], "purchases")
    sample = user.sample(80, random_state=0)
    for _, row in sample.iterrows():
        t = row["event_timestamp"]
        o = orders[(orders.user_id == row.user_id) & (orders.event_timestamp <= t)]
        p = purchases[(purchases.user_id == row.user_id) & (purchases.event_timestamp <= t)]
        p = p[~p.listing_id.isin(orders.loc[orders.user_id == row.user_id, "listing_id"])]
        assert row["n_purchases"] == len(o) + len(p)
        if len(o) + len(p):
            last = pd.concat([o, p]).sort_values("event_timestamp").iloc[-1]
            assert row["last_price_paid"] == last["price"]
            assert list(row["recent_listing_ids"])[-1] == last["listing_id"]


@pytest.mark.slow
def test_future_events_do_not_change_past_snapshots(tmp_path):
    validated, labels = make_feature_inputs(tmp_path)
    build_feature_tables(validated, labels, tmp_path / "before")
    cutoff = pd.Timestamp("2026-03-06", tz="UTC")
    # append a burst of late events (orders, impressions, clicks, purchases) after the cutoff
    for table in ("orders", "impressions", "clicks", "purchases"):
        df = read_raw(validated, table)
        late = df.assign(
            event_timestamp=df["event_timestamp"].clip(lower=cutoff) + pd.Timedelta(hours=1)
        )
        key = [c for c in contract.PRIMARY_KEYS[table] if df[c].dtype == object][:1]
        for c in key:
            late[c] = late[c] + "-late"
        pq.write_table(
            pq.read_table(validated / table / "part-0.parquet").from_pandas(
                late, schema=contract.RAW_TABLES[table], preserve_index=False
            ),
            validated / table / "part-1.parquet",
        )
    build_feature_tables(validated, labels, tmp_path / "after")
    for view in ("user", "listing", "seller"):
        a = pd.read_parquet(tmp_path / "before" / f"{view}.parquet")
        b = pd.read_parquet(tmp_path / "after" / f"{view}.parquet")
        a, b = (x[x.event_timestamp < cutoff].reset_index(drop=True) for x in (a, b))
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_like=False, obj=view)
        changed = pd.read_parquet(tmp_path / "after" / f"{view}.parquet")
        assert len(changed) >= len(a)
