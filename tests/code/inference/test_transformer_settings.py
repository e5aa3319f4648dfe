"""The transformer's command line: KServe's injected arguments accepted, anything unknown refused,
settings resolved once from env and flags, and a cluster deployment refused when it lacks one."""

from __future__ import annotations

import pytest

from inference import transformer
from inference.transformer import TRANSFORMER_NAME, build_parser, resolve_settings


def test_kserve_injected_arguments_are_accepted_and_name_the_model():
    args = build_parser().parse_args(
        [
            "--bundle",
            "/mnt/models",
            "--model_name",
            "checkout-recs",
            "--predictor_host",
            "checkout-recs-predictor.ns",
            "--http_port",
            "8080",
            "--workers",
            "1",
        ]
    )
    s = resolve_settings(args, {})
    assert s.model_name == TRANSFORMER_NAME == "checkout-recs"
    assert args.predictor_url == "http://checkout-recs-predictor.ns" and args.http_port == 8080


@pytest.mark.parametrize(
    "argv", [["--workers", "16"], ["--predictor_timeout_ms", "40"], ["--users", "redis"]]
)
def test_anything_the_transformer_does_not_read_is_refused(argv, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--bundle", "b", *argv])


def test_env_fills_what_flags_leave_and_the_password_stays_out_of_the_flags():
    env = {
        "CHECKOUT_RECS_USERS": "feast",
        "CHECKOUT_RECS_REDIS_URL": "rediss://r:6379/0",
        "CHECKOUT_RECS_REDIS_PASSWORD": "tok",
        "CHECKOUT_RECS_INVENTORY_BACKEND": "redis",
    }
    args = build_parser().parse_args(["--bundle", "b", "--inventory", "memory"])
    s = resolve_settings(args, env)
    assert (s.users, s.inventory, args.inventory) == ("feast", "memory", "memory")  # the flag wins
    assert args.redis_url == "rediss://:tok@r:6379/0" and s.redis_url == "rediss://r:6379/0"


def test_unproven_inventory_answer_comes_from_env_or_flag_and_is_checked():
    parse = build_parser().parse_args
    assert resolve_settings(parse(["--bundle", "b"]), {}).inventory_unproven == "known"
    env = {"CHECKOUT_RECS_INVENTORY_UNPROVEN": "refuse"}
    args = parse(["--bundle", "b"])
    assert resolve_settings(args, env).inventory_unproven == "refuse"
    assert args.inventory_unproven == "refuse"  # what build_transformer hands the recommender
    args = parse(["--bundle", "b", "--inventory_unproven", "known"])
    assert resolve_settings(args, env).inventory_unproven == "known"  # the flag wins
    with pytest.raises(ValueError, match="inventory_unproven"):
        resolve_settings(parse(["--bundle", "b"]), {"CHECKOUT_RECS_INVENTORY_UNPROVEN": "guess"})
    with pytest.raises(SystemExit):
        parse(["--bundle", "b", "--inventory_unproven", "guess"])


def test_a_cluster_deployment_without_its_settings_does_not_start(monkeypatch):
    monkeypatch.setenv("CHECKOUT_RECS_DEPLOYMENT", "cluster")
    for var in ("CHECKOUT_RECS_USERS", "CHECKOUT_RECS_DECISION_LOG", "CHECKOUT_RECS_POLICY_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(
        transformer, "build_transformer", lambda a: pytest.fail("must not load the bundle")
    )
    with pytest.raises(SystemExit, match="decision log"):
        transformer.main(["--bundle", "/nonexistent"])
