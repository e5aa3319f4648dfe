"""The manifest <-> code contract: every container's args and env are what its entry point reads.

For each rendered overlay (and the training kustomization): the command line each container of our
images will run (KServe's injected transformer arguments included) parses with the entry point's
own parser, every env var is read by something, and what a cluster deployment needs is there.
Each planted mismatch below must be caught.
"""

from __future__ import annotations

import copy
import json

import pytest

from checkout_recs.deploy.entrypoints import command_line, kserve_injected_args
from checkout_recs.deploy.isvc import transformer_container
from checkout_recs.policy.config import PolicyConfig
from checkout_recs.serving.policy_source import POLICY_FILE, parse_policy
from cli.manifest_contract import contract_findings
from tests.fixtures_ops import find, rendered  # noqa: F401

TARGETS = [
    "overlays/local",
    "overlays/staging",
    "overlays/production",
    "overlays/staging-collocated",
    "training",
]


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_runs_what_its_entry_point_accepts(target, rendered):  # noqa: F811
    findings = contract_findings(rendered[target])
    assert findings == [], "\n".join(map(str, findings))


def _planted(rendered, target="overlays/production"):  # noqa: ANN001, F811
    """A copy of ``target`` and the transformer's container in it (production: collocated)."""
    docs = copy.deepcopy(rendered[target])
    return docs, transformer_container(find(docs, "InferenceService"))


def _messages(docs) -> list[str]:  # noqa: ANN001
    return [f.message for f in contract_findings(docs)]


def test_an_unknown_transformer_flag_fails(rendered):  # noqa: F811
    docs, transformer = _planted(rendered)
    transformer["args"].append("--predictor_timeout_ms=40")
    assert any(
        "inference.transformer refuses" in m and "--predictor_timeout_ms" in m
        for m in _messages(docs)
    )


def test_an_unknown_predictor_flag_fails(rendered):  # noqa: F811
    docs, _ = _planted(rendered)
    find(docs, "InferenceService")["spec"]["predictor"]["containers"][0]["args"].append(
        "--workers=4"
    )
    assert any("inference.predictor refuses" in m for m in _messages(docs))


def test_an_env_var_nothing_reads_fails(rendered):  # noqa: F811
    docs, transformer = _planted(rendered)
    transformer["env"].append({"name": "CHECKOUT_RECS_FEATURE_ENVIRONMENT", "value": "production"})
    assert any("CHECKOUT_RECS_FEATURE_ENVIRONMENT is read by nothing" in m for m in _messages(docs))


@pytest.mark.parametrize(
    "drop, says",
    [
        ("CHECKOUT_RECS_DECISION_LOG", "no decision log root"),
        ("CHECKOUT_RECS_USERS", "no user-feature source"),
        ("CHECKOUT_RECS_POLICY_DIR", "no policy folder"),
        ("CHECKOUT_RECS_REDIS_URL", "no Redis URL"),
        ("CHECKOUT_RECS_FEAST_REGISTRY_URL", "no Feast registry"),
    ],
)
def test_a_missing_production_setting_fails(rendered, drop, says):  # noqa: F811
    docs, c = _planted(rendered)
    c["env"] = [e for e in c["env"] if e["name"] != drop]
    assert any(says in m for m in _messages(docs)), _messages(docs)


def test_an_embedded_feature_store_in_a_pod_fails(rendered):  # noqa: F811
    docs, transformer = _planted(rendered)
    env = transformer["env"]
    next(e for e in env if e["name"] == "CHECKOUT_RECS_FEATURE_ENV")["value"] = "embedded"
    assert any("unknown_user" in m for m in _messages(docs))


def test_without_workers_1_kserve_would_pass_the_concurrency_and_it_fails(rendered):  # noqa: F811
    docs, c = _planted(
        rendered, "overlays/staging"
    )  # a transformer component: KServe injects --workers
    c["args"] = [a for a in c["args"] if not a.startswith("--workers")]
    assert any("--workers" in m and "16" in m for m in _messages(docs)), _messages(docs)


def test_kserve_injection_follows_the_controller():
    isvc = {
        "metadata": {"name": "checkout-recs", "namespace": "ns"},
        "spec": {"transformer": {"containerConcurrency": 8}},
    }
    assert kserve_injected_args(isvc, "transformer", ["--http_port=8080"]) == [
        "--model_name",
        "checkout-recs",
        "--predictor_host",
        "checkout-recs-predictor.ns",
        "--workers",
        "8",
    ]
    assert kserve_injected_args(isvc, "predictor", []) == []
    # command replaces ENTRYPOINT (and CMD); args replace CMD only
    defaults = (["python", "-m", "a"], ["--help"])
    assert command_line({}, defaults, []) == ["python", "-m", "a", "--help"]
    assert command_line({"args": ["--x"]}, defaults, ["--x"]) == ["python", "-m", "a", "--x"]
    assert command_line({"command": ["torchrun"], "args": []}, defaults, ["-m", "b"]) == [
        "torchrun",
        "-m",
        "b",
    ]


def test_the_policy_configmap_is_one_policyconfig_with_the_code_defaults(rendered):  # noqa: F811
    for target in TARGETS[:4]:
        data = find(rendered[target], "ConfigMap", "checkout-recs-policy")["data"]
        assert set(data) == {POLICY_FILE, "kill_switch"}, target
        assert data["kill_switch"] == "false"
        doc = json.loads(data[POLICY_FILE])
        assert (
            "ledger" not in doc["exploration"]
        )  # serving derives it (shared in the inventory's Redis)
        assert parse_policy(data[POLICY_FILE]) == PolicyConfig(), target


def test_a_bad_drift_exporter_flag_or_a_missing_store_fails(rendered):  # noqa: F811
    docs = copy.deepcopy(rendered["overlays/production"])
    dep = find(docs, "Deployment", "checkout-recs-drift-exporter")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["args"].append("--scrape_interval=15")
    assert any("monitoring.exporter refuses" in m for m in _messages(docs))
    container["args"].pop()
    assert _messages(docs) == []
    container["env"] = []  # --artifact_root=$(CHECKOUT_RECS_ARTIFACT_ROOT) expands to nothing
    assert _messages(docs) != []
