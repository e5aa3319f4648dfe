"""ServingSettings: defaults < env < flags, secrets from env only, what a cluster needs."""

from __future__ import annotations

import pytest

from checkout_recs.serving.settings import ENV, ServingSettings, redis_dsn

CLUSTER = {
    "CHECKOUT_RECS_DEPLOYMENT": "cluster",
    "CHECKOUT_RECS_USERS": "feast",
    "CHECKOUT_RECS_FEATURE_ENV": "production",
    "CHECKOUT_RECS_FEAST_REGISTRY_URL": "postgresql://u:p@h/db",
    "CHECKOUT_RECS_DECISION_LOG": "s3://bucket",
    "CHECKOUT_RECS_POLICY_DIR": "/etc/policy",
    "CHECKOUT_RECS_INVENTORY_BACKEND": "replica",
    "CHECKOUT_RECS_REDIS_URL": "rediss://r:6379/0",
}


def test_flags_override_env_which_overrides_defaults():
    assert ServingSettings.from_sources({}, {}).users == "bundle"
    assert ServingSettings.from_sources({}, {"CHECKOUT_RECS_USERS": "feast"}).users == "feast"
    s = ServingSettings.from_sources(
        {"users": "table", "user_table": "u.parquet", "redis_url": None},
        {"CHECKOUT_RECS_USERS": "feast"},
    )
    assert s.users == "table" and s.redis_url == "redis://127.0.0.1:6379/0"  # None = not given


def test_kserve_predictor_host_becomes_the_url_unless_one_is_given():
    assert (
        ServingSettings.from_sources({"predictor_host": "p.ns"}, {}).predictor_url == "http://p.ns"
    )
    s = ServingSettings.from_sources(
        {"predictor_host": "p.ns", "predictor_url": "http://127.0.0.1:8085"}, {}
    )
    assert s.predictor_url == "http://127.0.0.1:8085"


def test_secrets_come_from_env_only_and_never_print():
    with pytest.raises(ValueError, match="environment"):
        ServingSettings.from_sources({"redis_password": "hunter2"}, {})
    s = ServingSettings.from_sources(
        {},
        {
            "CHECKOUT_RECS_REDIS_URL": "rediss://h:6379/0",
            "CHECKOUT_RECS_REDIS_PASSWORD": "p@ss/word",
        },
    )
    assert s.redis_dsn() == "rediss://:p%40ss%2Fword@h:6379/0"
    assert "p@ss" not in repr(s) and "p@ss" not in s.model_dump_json()
    assert redis_dsn("redis://:old@h:1/0", "new") == "redis://:new@h:1/0"
    assert redis_dsn("redis://h:1/0", None) == "redis://h:1/0"


def test_invalid_values_are_refused():
    with pytest.raises(ValueError):
        ServingSettings.from_sources({}, {"CHECKOUT_RECS_USERS": "redis"})
    with pytest.raises(ValueError):
        ServingSettings.from_sources({"model_name": "Checkout_Recs"}, {})


def test_local_runs_need_nothing_a_cluster_needs_everything():
    assert ServingSettings.from_sources({}, {}).missing() == []
    assert ServingSettings.from_sources({}, CLUSTER).missing() == []
    for name in (
        "CHECKOUT_RECS_USERS",
        "CHECKOUT_RECS_DECISION_LOG",
        "CHECKOUT_RECS_POLICY_DIR",
        "CHECKOUT_RECS_REDIS_URL",
        "CHECKOUT_RECS_FEAST_REGISTRY_URL",
        "CHECKOUT_RECS_INVENTORY_BACKEND",
    ):
        env = {k: v for k, v in CLUSTER.items() if k != name}
        missing = ServingSettings.from_sources({}, env).missing()
        assert len(missing) == 1, (name, missing)
    assert ServingSettings.from_sources(
        {}, {**CLUSTER, "CHECKOUT_RECS_DECISION_LOG": "/tmp/log"}
    ).missing()


def test_every_field_has_a_description_and_env_names_are_the_manifests():
    for name, f in ServingSettings.model_fields.items():
        assert f.description, name
    assert set(ENV) <= set(ServingSettings.model_fields)
    assert all(v.startswith("CHECKOUT_RECS_") for v in ENV.values())
