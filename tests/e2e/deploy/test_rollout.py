"""Canary rollout against an in-process fake Kubernetes API server on loopback, its guardrails
read in PromQL from a real Prometheus scraping the simulated revisions' metrics."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from checkout_recs.deploy.kill_switch import set_kill_switch
from checkout_recs.deploy.kube import DeployError, IsvcRef, KubeApi
from checkout_recs.deploy.metrics import MetricsSpec, PrometheusQuerySource
from checkout_recs.deploy.rollout import RampPlan, Rollout, storage_uri
from checkout_recs.evaluation.experiments.guardrails import GuardrailConfig
from tests.fixtures_ops_servers import (
    OPS_REDIS_URL,
    TrafficSimulator,
    fake_kube,
    ops_redis,
    staging_docs,
)
from tests.fixtures_prometheus import kube_prometheus  # noqa: F401

pytestmark = pytest.mark.e2e

REF = IsvcRef(name="checkout-recs", namespace="checkout-recs-staging")
NEW = "s3://checkout-recs-staging-artifacts/bundle/bundle-new"
FAST = RampPlan(hold_s=1.0, poll_s=0.25, max_hold_s=6.0, ready_timeout_s=5.0)
LIMITS = GuardrailConfig(min_requests=20, max_error_rate=0.02)
SPEC = MetricsSpec(matchers=f'namespace="{REF.namespace}"')


def _rollout(
    host: str, prometheus_url: str = "http://127.0.0.1:9", plan: RampPlan = FAST
) -> Rollout:
    return Rollout(
        KubeApi(host=host), REF, PrometheusQuerySource(prometheus_url, SPEC), plan, LIMITS
    )


def _percents(fake) -> list:  # noqa: ANN001
    """``canaryTrafficPercent`` of every patch; every component present in a patch moves alike
    (collocated: the predictor component alone, which holds both containers)."""
    out = []
    for body in fake.patches():
        spec = body.get("spec", {})
        values = {
            c: spec[c].get("canaryTrafficPercent", "absent")
            for c in ("transformer", "predictor")
            if c in spec
        }
        assert len(set(values.values())) == 1, values  # the components present move together
        out.append(next(iter(values.values())))
    return out


def test_healthy_ramp_reaches_100(kube_prometheus):  # noqa: F811
    fake, host, set_metrics, prom = kube_prometheus
    set_metrics(TrafficSimulator(fake, REF.namespace, REF.name, error_rate=lambda pct: 0.002))
    champion = storage_uri(fake.isvcs[(REF.namespace, REF.name)])
    result = _rollout(host, prom.url).run(NEW)
    assert result.outcome == "promoted", result.reason
    assert result.champion_uri == champion
    assert [s.percent for s in result.steps] == [5, 25, 50, 100]
    assert all(s.action == "continue" for s in result.steps[:3])
    assert _percents(fake) == [5, 25, 50, None]  # None: the field removed = promoted
    isvc = fake.isvcs[(REF.namespace, REF.name)]
    assert storage_uri(isvc) == NEW
    assert list(fake.traffic(REF.namespace, REF.name).values()) == [100]
    watches = [h for h in fake.history if h["query"].get("watch", "").lower() == "true"]
    assert watches and all(
        h["query"]["fieldSelector"] == "metadata.name=checkout-recs" for h in watches
    )


def test_error_jump_at_25_rolls_back_to_champion(kube_prometheus):  # noqa: F811
    fake, host, set_metrics, prom = kube_prometheus
    set_metrics(
        TrafficSimulator(
            fake, REF.namespace, REF.name, error_rate=lambda pct: 0.002 if pct < 25 else 0.08
        )
    )
    before = fake.traffic(REF.namespace, REF.name)
    result = _rollout(host, prom.url).run(NEW)
    assert result.outcome == "rolled_back"
    assert "at 25%" in result.reason and "error_rate" in result.reason
    assert [s.action for s in result.steps] == ["continue", "rollback"]
    assert _percents(fake) == [5, 25, 0]
    after = fake.traffic(REF.namespace, REF.name)
    champion_rev = next(iter(before))
    assert after[champion_rev] == 100  # every request back on the champion's revision
    ann = fake.isvcs[(REF.namespace, REF.name)]["metadata"]["annotations"]
    assert ann["checkout-recs.io/rollout-state"] == "rolled-back"
    assert "error_rate" in ann["checkout-recs.io/rollback-reason"]


def test_guardrail_figures_read_in_promql_match_the_simulated_traffic(kube_prometheus):  # noqa: F811
    fake, host, set_metrics, prom = kube_prometheus
    set_metrics(TrafficSimulator(fake, REF.namespace, REF.name, error_rate=lambda pct: 0.08))
    rollout = _rollout(host, prom.url)
    rollout.wait_for(25, rollout.start(NEW, 25))
    canary = next(r for r, pct in fake.traffic(REF.namespace, REF.name).items() if pct == 25)
    source = PrometheusQuerySource(prom.url, SPEC)
    prom.wait_for(f'revision_app_request_count{{revision_name="{canary}"}}', lambda r: len(r) == 2)
    time.sleep(1.5)  # a few scrapes of the 25 % split
    w = source.window(1.5)[canary]
    assert w.requests > 20 and w.errors / w.requests == pytest.approx(0.08, rel=1e-6)
    assert w.fallbacks / w.answers == pytest.approx(0.02 / 0.92, rel=1e-6)  # answers are the 2xx
    assert w.p95_ms == pytest.approx(
        10 + 40 * (0.95 - 0.485) / (0.97 - 0.485), rel=1e-3
    )  # interpolated in (10, 50]
    assert w.gmv / w.sessions == pytest.approx(1.5, rel=1e-6)
    other = PrometheusQuerySource(prom.url, MetricsSpec(matchers='namespace="elsewhere"')).window(
        1.5
    )
    assert other == {}  # the namespace matcher keeps other namespaces' revisions out


def test_metrics_down_is_inconclusive_and_rolls_back(fake_kube):  # noqa: F811
    fake, host, _ = fake_kube
    source = PrometheusQuerySource("http://127.0.0.1:9", timeout_s=0.2)  # nothing listens there
    plan = RampPlan(hold_s=0.1, poll_s=0.05, max_hold_s=0.3, ready_timeout_s=5.0)
    result = Rollout(KubeApi(host=host), REF, source, plan, LIMITS).run(NEW)
    assert result.outcome == "rolled_back" and "inconclusive" in result.reason
    assert "metrics unavailable" in result.steps[0].summary
    assert _percents(fake) == [5, 0]


def test_controller_never_ready_fails_and_rolls_back(fake_kube):  # noqa: F811
    fake, host, set_metrics = fake_kube
    fake.reconcile = False
    plan = RampPlan(hold_s=0.1, poll_s=0.05, max_hold_s=0.5, ready_timeout_s=1.0)
    result = _rollout(host, plan=plan).run(NEW)
    assert result.outcome == "failed" and "not ready at 5%" in result.reason
    assert _percents(fake) == [5, 0]


def test_same_bundle_is_refused_without_patching(fake_kube):  # noqa: F811
    fake, host, _ = fake_kube
    current = storage_uri(fake.isvcs[(REF.namespace, REF.name)])
    result = _rollout(host).run(current)
    assert result.outcome == "failed" and "already serving" in result.reason
    assert fake.patches() == []


def test_kill_switch_sets_configmap_and_the_redis_key_serving_reads(fake_kube, ops_redis):  # noqa: F811
    from checkout_recs.serving.switches import KILL_SWITCH_KEY, Switches

    fake, host, _ = fake_kube
    res = set_kill_switch(
        KubeApi(host=host), REF, True, who="oncall", reason="bad slates", redis=ops_redis
    )
    assert (
        res.effective
        and res.configmap["kill_switch"] == "true"
        and res.configmap["kill_switch_by"] == "oncall"
    )
    assert (
        "policy.json" in res.configmap and "max_per_seller" in res.configmap["policy.json"]
    )  # knobs untouched
    patch = [h for h in fake.history if h["method"] == "PATCH" and "/configmaps/" in h["path"]][-1]
    assert patch["content_type"] == "application/json-patch+json"
    assert {"op": "add", "path": "/data/kill_switch", "value": "true"} in patch["body"]
    assert json.loads(ops_redis.get(KILL_SWITCH_KEY))["who"] == "oncall"
    seen = asyncio.run(
        Switches(OPS_REDIS_URL, ttl_s=0, timeout_s=1.0).state()
    )  # what serving reads
    assert seen.read_ok and seen.kill_switch
    off = set_kill_switch(
        KubeApi(host=host), REF, False, who="oncall", reason="fixed", redis=ops_redis
    )
    assert off.configmap["kill_switch"] == "false" and ops_redis.get(KILL_SWITCH_KEY) is None


def test_kill_switch_reports_each_failed_write():
    class Down:
        def set(self, *a):  # noqa: ANN002
            raise ConnectionError("redis down")

    res = set_kill_switch(
        KubeApi(host="http://127.0.0.1:9"), REF, True, "oncall", "x", redis=Down()
    )
    assert not res.effective and "redis down" in res.redis_error
    assert res.configmap is None and "configmap" in res.configmap_error


def test_unknown_isvc_and_unreachable_api_raise_deploy_error(fake_kube):  # noqa: F811
    _, host, _ = fake_kube
    with pytest.raises(DeployError, match="404"):
        KubeApi(host=host).get_isvc(IsvcRef(name="nope", namespace=REF.namespace))
    with pytest.raises(DeployError):
        KubeApi(host="http://127.0.0.1:9").get_isvc(REF)


def test_status_reports_split_and_annotations(fake_kube):  # noqa: F811
    fake, host, _ = fake_kube
    r = _rollout(host)
    r.start(NEW, 5)
    assert r.wait_for(5, fake.isvcs[(REF.namespace, REF.name)]) is not None
    st = r.status()
    assert st["storage_uri"] == NEW and st["ready"]
    assert sorted(t["percent"] for t in st["traffic"]["predictor"]) == [5, 95]
    assert st["rollout"]["candidate-uri"] == NEW and st["rollout"]["rollout-state"] == "canary-5"


def test_cli_canary_status_rollback_and_kill_switch(kube_prometheus, ops_redis, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from cli.app import app

    fake, host, set_metrics, prom = kube_prometheus
    set_metrics(TrafficSimulator(fake, REF.namespace, REF.name, error_rate=lambda pct: 0.002))
    common = ["--host", host, "--namespace", REF.namespace]
    limits = tmp_path / "limits.yaml"
    limits.write_text("min_requests: 20\nmax_error_rate: 0.02\n")
    res = CliRunner().invoke(
        app,
        [
            "deploy",
            "canary",
            NEW,
            "--prometheus-url",
            prom.url,
            *common,
            "--steps",
            "5,100",
            "--hold-s",
            "1",
            "--poll-s",
            "0.25",
            "--max-hold-s",
            "6",
            "--guardrails",
            str(limits),
            "--result-json",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["outcome"] == "promoted"
    res = CliRunner().invoke(app, ["deploy", "rollback", "--reason", "drill", *common])
    assert res.exit_code == 0, res.output
    status = CliRunner().invoke(app, ["deploy", "status", *common])
    assert status.exit_code == 0 and "rolled-back" in status.output
    ks = CliRunner().invoke(
        app,
        [
            "deploy",
            "kill-switch",
            "on",
            "--who",
            "me",
            "--reason",
            "drill",
            "--redis-url",
            OPS_REDIS_URL,
            *common,
        ],
    )
    assert ks.exit_code == 0, ks.output
    assert ops_redis.exists("checkout_recs:kill_switch")
    assert fake.configmaps[(REF.namespace, "checkout-recs-policy")]["data"]["kill_switch"] == "true"
    bad = CliRunner().invoke(
        app, ["deploy", "kill-switch", "maybe", "--who", "me", "--reason", "x", *common]
    )
    assert bad.exit_code == 2
