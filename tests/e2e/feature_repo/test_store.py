"""Feast adapter, one suite for both environments: embedded (SQLite + file registry) and
production (Redis db 13 + SQL registry in PostgreSQL database checkout_recs_features_test)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from checkout_recs.features.pit import pit_join_views
from checkout_recs.features.training import _entity_rows
from tests.fixtures_features import (  # noqa: F401
    START,
    assert_no_future_poison,
    open_test_store,
    s3_features,
    synthetic_features,
    write_poisoned_features,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAY3 = (START + pd.Timedelta(days=3)).to_pydatetime()
DAY6 = (START + pd.Timedelta(days=6)).to_pydatetime()


@pytest.fixture(scope="module", params=["embedded", "production"])
def feast_run(request, synthetic_features, tmp_path_factory):  # noqa: F811
    """apply; materialize to day 3; check freshness at day 6; materialize incrementally to day 6.

    embedded reads the parquet from the local folder; production from S3 (moto on loopback).
    """
    if request.param == "production":
        uri, endpoint = request.getfixturevalue("s3_features")
        store = open_test_store(
            "production", uri, tmp_path_factory.mktemp("feast"), s3_endpoint=endpoint
        )
    else:
        store = open_test_store(
            "embedded", synthetic_features["features"], tmp_path_factory.mktemp("feast")
        )
    try:
        store.apply()
        first = store.materialize(None, DAY3)
        stopped = store.freshness(DAY6)
        second = store.materialize(None, DAY6)
        yield {
            "store": store,
            "first": first,
            "second": second,
            "stopped": stopped,
            **synthetic_features,
        }
    finally:
        store.teardown()


def test_materialization_is_incremental_and_logged(feast_run):
    assert all(r["end"] == DAY3.isoformat() for r in feast_run["first"])
    assert all(
        r["start"] == DAY3.isoformat() and r["end"] == DAY6.isoformat() for r in feast_run["second"]
    )
    log = [
        json.loads(line)
        for line in (feast_run["store"].work_dir / "materializations.jsonl")
        .read_text()
        .splitlines()
    ]
    assert len(log) == 8 and {r["view"] for r in log} == {
        "user",
        "listing",
        "seller",
        "category_pair",
    }
    assert feast_run["store"].materialized_until("user") == DAY6


def test_online_read_equals_offline_point_in_time_row(feast_run):
    users = list(range(60)) + [10_000]
    online = feast_run["store"].online_user_features(users)
    ent = pd.DataFrame(
        {
            "row_id": range(len(users)),
            "user_id": users,
            "listing_id": 1000,
            "seller_id": 0,
            "event_timestamp": pd.Timestamp(DAY6),
        }
    )
    offline = pit_join_views(feast_run["features"])(ent)
    assert online["user_id"] == users
    assert online["n_purchases"][-1] is None  # unknown user: nothing online
    for name, values in online.items():
        if name == "user_id":
            continue
        want = offline[f"user_{name}"].tolist()[:-1]
        got = values[:-1]
        if name.startswith("recent_"):
            assert [list(g) for g in got] == [list(w) for w in want], name
        elif isinstance(got[0], str):
            assert got == want, name
        else:
            assert np.allclose(np.array(got, dtype=float), np.array(want, dtype=float)), name


def test_online_listing_lifts_equal_the_offline_point_in_time_row(feast_run):
    listings = pd.read_parquet(feast_run["features"] / "listing.parquet")
    ids = sorted(listings["listing_id"].unique().tolist())[:80]
    online = feast_run["store"].online_features("listing", "listing_id", ids)
    ent = pd.DataFrame(
        {
            "row_id": range(len(ids)),
            "user_id": 0,
            "listing_id": ids,
            "seller_id": 0,
            "event_timestamp": pd.Timestamp(DAY6),
        }
    )
    offline = pit_join_views(feast_run["features"])(ent)
    assert online["listing_id"] == ids
    for name in ("ctr_lift", "cvr_lift"):
        got = np.array([np.nan if v is None else v for v in online[name]], dtype=float)
        want = offline[f"listing_{name}"].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(got), np.isnan(want)) and (~np.isnan(got)).sum() > 40
        assert np.allclose(got[~np.isnan(got)], want[~np.isnan(want)]), name


def test_historical_retrieval_counts_rows_feast_drops_and_matches_pandas(feast_run):
    imp = pd.read_parquet(feast_run["labels"] / "impressions_labelled.parquet")
    ent = _entity_rows(imp, pd.read_parquet(feast_run["validated"] / "listings"))
    got = feast_run["store"].historical_training_set(ent)
    want = pit_join_views(feast_run["features"])(ent)
    assert len(got) == len(ent) and got["row_id"].tolist() == ent["row_id"].tolist()  # nothing lost
    # impressions on day 1 come before every end-of-day user snapshot: Feast drops them; we count them
    early = (ent["event_timestamp"] < START + pd.Timedelta(days=1)).sum()
    assert (
        got.attrs["feast_dropped"]["user"]
        == int(want["user_n_purchases"].isna().sum())
        >= early
        > 0
    )
    assert got["feast_dropped"].sum() >= early
    for col in (
        "user_n_purchases",
        "user_avg_price_paid",
        "listing_ctr_smoothed",
        "listing_ctr_lift",
        "listing_cvr_lift",
        "listing_views_decayed",
        "seller_sales_velocity",
        "seller_rating",
    ):
        a, b = got[col].to_numpy(dtype=float), want[col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(
            a[~np.isnan(a)], b[~np.isnan(b)]
        ), col


def test_freshness_detects_stopped_materialization_and_moved_clock(feast_run):
    stopped = feast_run["stopped"]
    assert not stopped.ok and {"user", "listing", "seller"} <= set(stopped.broken)
    store = feast_run["store"]
    fresh = store.freshness(DAY6 + dt.timedelta(hours=12))
    assert fresh.ok, fresh.to_dict()
    late = store.freshness(DAY6 + dt.timedelta(days=4))
    assert not late.ok and "user" in late.broken and "category_pair" not in late.broken
    assert all(v.age_s is not None and v.age_s > v.sla_s for v in late.views if not v.ok)


def test_cli_apply_materialize_freshness_exit_codes(synthetic_features, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from cli.app import app

    common = [
        "--features",
        str(synthetic_features["features"]),
        "--feast-work-dir",
        str(tmp_path / "feast"),
        "--feature-env",
        "embedded",
    ]
    runner = CliRunner()
    assert runner.invoke(app, ["features", "apply", *common]).exit_code == 0
    bad = runner.invoke(app, ["features", "materialize", *common, "--view", "users"])
    assert bad.exit_code == 2 and "unknown feature views" in bad.output
    res = runner.invoke(
        app, ["features", "materialize", *common, "--end", DAY6.isoformat(), "--view", "user"]
    )
    assert (
        res.exit_code == 0 and '"view": "user"' in res.output and '"listing"' not in res.output
    ), res.output
    res = runner.invoke(app, ["features", "materialize", *common, "--end", DAY6.isoformat()])
    assert res.exit_code == 0, res.output
    ok = runner.invoke(app, ["features", "freshness", *common, "--now", "2026-03-06T10:00:00"])
    assert ok.exit_code == 0, ok.output
    broken = runner.invoke(
        app,
        [
            "features",
            "freshness",
            *common,
            "--now",
            "2026-03-12T00:00:00",
            "--out",
            str(tmp_path / "fresh.json"),
        ],
    )
    assert broken.exit_code == 1
    assert json.loads((tmp_path / "fresh.json").read_text())["broken"][:3] == [
        "user",
        "listing",
        "seller",
    ]


def test_production_config_renders_redis_and_sql_registry(tmp_path):
    from feature_repo.store import StoreConfig, redis_connection_string

    cfg = StoreConfig(
        env="production",
        features_uri="s3://bucket/run/features",
        work_dir=tmp_path,
        redis_url="redis://10.0.0.5:6380/4",
        registry_url="postgresql+psycopg://u@db:5432/feast",
    )
    rendered = cfg.render()
    assert rendered["online_store"] == {"type": "redis", "connection_string": "10.0.0.5:6380,db=4"}
    assert rendered["registry"]["registry_type"] == "sql" and rendered["registry"]["path"].endswith(
        "/feast"
    )
    assert redis_connection_string("redis://127.0.0.1:6379") == "127.0.0.1:6379,db=0"
    # ElastiCache: TLS and the AUTH token (ServingSettings.redis_dsn) in Feast's form
    assert (
        redis_connection_string("rediss://:t%40k@h:6379/0") == "h:6379,db=0,password=t@k,ssl=true"
    )
    with pytest.raises(ValueError, match="unknown feature environment"):
        StoreConfig(env="staging").render()


def test_no_future_value_through_feast_historical_retrieval(synthetic_features, tmp_path):  # noqa: F811
    """The poison test of tests/code/features/test_pit.py, with Feast doing the join."""
    from checkout_recs.features.training import build_training_set

    f = synthetic_features
    after = write_poisoned_features(f, tmp_path / "features")
    store = open_test_store("embedded", tmp_path / "features", tmp_path / "feast")
    store.apply()
    rep = build_training_set(
        f["labels"],
        tmp_path / "features",
        f["validated"],
        tmp_path / "t.parquet",
        join=store.training_join(),
    )
    assert rep.rows_in == rep.rows_out and sum(rep.dropped_by_join.values()) > 0
    assert_no_future_poison(pd.read_parquet(tmp_path / "t.parquet"), after)


def test_feature_repo_module_defines_what_feast_apply_registers(monkeypatch, synthetic_features):  # noqa: F811
    import importlib

    from feast import Entity, FeatureView

    from checkout_recs.features.sla import FEATURE_SLAS

    monkeypatch.setenv("CHECKOUT_RECS_FEATURES_DIR", str(synthetic_features["features"]))
    repo = importlib.reload(importlib.import_module("feature_repo.repo"))
    entities = [v for v in vars(repo).values() if isinstance(v, Entity)]
    views = {v.name: v for v in vars(repo).values() if isinstance(v, FeatureView)}
    assert {e.name for e in entities} == {"user", "listing", "seller", "category_a", "category_b"}
    assert set(views) == {"user", "listing", "seller", "category_pair"}
    for name, view in views.items():
        assert view.ttl == FEATURE_SLAS[name] and view.tags["staleness_sla_s"] == str(
            int(view.ttl.total_seconds())
        )
        assert view.batch_source.path == f"{synthetic_features['features']}/{name}.parquet"
    assert views["category_pair"].entities == ["category_a", "category_b"]
    ignored = (Path(repo.__file__).parent / ".feastignore").read_text().split()
    assert "store.py" in ignored
