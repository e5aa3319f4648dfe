"""A canary moves the pair, against the fake Kubernetes API server on loopback.

Collocated (production's layout: ``staging-collocated`` as rendered): ``deploy canary|promote|
rollback`` patch the one predictor component whose revision holds transformer and ranker, so every
answer is served by one bundle. Split (``staging``: two components): the ramp still patches both
alike, but KServe draws each component's split independently, and the GMV attribution leaves the
mismatched answers out and counts them.
"""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from typer.testing import CliRunner

from checkout_recs.deploy.attribution import DecisionLogGmv, folder_outcomes
from checkout_recs.deploy.isvc import layout, storage_uri, transformer_container
from checkout_recs.deploy.kube import DeployError, IsvcRef, KubeApi
from checkout_recs.deploy.rollout import RampPlan, Rollout
from checkout_recs.storage import LocalArtifactStore
from cli.app import app
from tests.fixtures_ops_gmv import DecisionTraffic
from tests.fixtures_ops_servers import fake_kube, fake_kube_split, split_docs, staging_docs  # noqa: F401

pytestmark = pytest.mark.e2e

REF = IsvcRef(name="checkout-recs", namespace="checkout-recs-staging")
NEW = "s3://checkout-recs-staging-artifacts/bundle/bundle-new"
PLAN = RampPlan(hold_s=1.0, poll_s=0.25, max_hold_s=6.0, ready_timeout_s=5.0)
ARMS = {"canary": "idx-new", "champion": "idx-champ"}
KEY = (REF.namespace, REF.name)


def _cli(host: str, *args: str) -> str:
    """``checkout-recs deploy ARGS`` against ``host``; its output (the command must succeed)."""
    res = CliRunner().invoke(app, ["deploy", *args, "--host", host, "--namespace", REF.namespace])
    assert res.exit_code == 0, res.output
    return res.output


def test_canary_promote_rollback_patch_one_revision_holding_transformer_and_ranker(fake_kube):  # noqa: F811
    fake, host, _ = fake_kube
    isvc = fake.isvcs[KEY]
    assert layout(isvc) == "collocated"
    transformer_before = copy.deepcopy(transformer_container(isvc))
    rollout = Rollout(KubeApi(host=host), REF, plan=PLAN)
    assert rollout.wait_for(25, rollout.start(NEW, 25)) is not None
    (body,) = fake.patches()
    assert (
        set(body["spec"]) == {"predictor"}
        and body["spec"]["predictor"]["canaryTrafficPercent"] == 25
    )
    isvc = fake.isvcs[KEY]
    assert (
        storage_uri(isvc) == NEW
    )  # the one STORAGE_URI: the ranker container's, mounted into both
    assert (
        transformer_container(isvc) == transformer_before
    )  # no STORAGE_URI of its own, args untouched
    assert set(isvc["status"]["components"]) == {"predictor"}  # one revision per bundle: one split
    assert sorted(fake.traffic(*KEY).values()) == [25, 75]
    assert rollout.status()["layout"] == "collocated"
    canary = next(r for r, pct in fake.traffic(*KEY).items() if pct == 25)

    assert "canaryTrafficPercent 0" in _cli(host, "rollback", "--reason", "drill")
    assert fake.patches()[-1]["spec"] == {"predictor": {"canaryTrafficPercent": 0}}
    assert fake.traffic(*KEY)[canary] == 0  # the pair went back together

    rollout.start(NEW, 5)
    assert "all traffic on the latest revision" in _cli(host, "promote", "--timeout-s", "5")
    assert fake.patches()[-1]["spec"] == {"predictor": {"canaryTrafficPercent": None}}
    assert list(fake.traffic(*KEY).values()) == [100] and storage_uri(fake.isvcs[KEY]) == NEW
    assert "'layout': 'collocated'" in _cli(host, "status")


def test_the_api_refuses_a_storage_uri_in_the_transformer_container(fake_kube):  # noqa: F811
    """KServe's webhook rule, kept by the fake: the rollout never writes one (above)."""
    fake, host, _ = fake_kube
    containers = copy.deepcopy(fake.isvcs[KEY]["spec"]["predictor"]["containers"])
    containers[1]["env"].insert(0, {"name": "STORAGE_URI", "value": NEW})
    with pytest.raises(DeployError, match="403.*transformer-container"):
        KubeApi(host=host).patch_isvc(REF, {"spec": {"predictor": {"containers": containers}}})


@pytest.mark.parametrize(
    "fixture, layout_name", [("fake_kube", "collocated"), ("fake_kube_split", "split")]
)
def test_attribution_keeps_the_served_pairs_and_counts_the_mismatched(
    fixture, layout_name, request, tmp_path
):
    fake, host, _ = request.getfixturevalue(fixture)
    champion = storage_uri(fake.isvcs[KEY])
    store = LocalArtifactStore(tmp_path / "store")
    traffic = DecisionTraffic(
        fake, *KEY, store, tmp_path / "logs", ARMS, lambda arm, pct: 0.3, per_tick=2000
    )
    notes: list[str] = []
    rollout = Rollout(KubeApi(host=host), REF, plan=PLAN, log=notes.append)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert rollout.wait_for(25, rollout.start(NEW, 25)) is not None
    assert rollout.status()["layout"] == layout_name
    components = {"predictor"} if layout_name == "collocated" else {"transformer", "predictor"}
    assert set(fake.patches()[0]["spec"]) == components  # every component present moves alike
    assert any("split layout" in n for n in notes) == (layout_name == "split")
    traffic()
    traffic()
    gmv = DecisionLogGmv(
        store,
        folder_outcomes(tmp_path / "logs"),
        min_sessions=50,
        resolve_arm={NEW: ARMS["canary"], champion: ARMS["champion"]}.__getitem__,
    )
    r = gmv.compare(NEW, champion, since)
    assert r.mismatched_answers == traffic.mismatched
    assert r.canary_sessions + r.champion_sessions + r.mismatched_answers == 4000
    if layout_name == "collocated":
        assert r.mismatched_answers == 0 and set(r.served_pairs) == {
            "idx-new -> idx-new",
            "idx-champ -> idx-champ",
        }
    else:  # 2p(1-p) = 37.5 % of the answers at 25 %: one bundle's transformer, the other's ranker
        assert 0.3 * 4000 < r.mismatched_answers < 0.45 * 4000 and "left out" in r.note
        assert {"idx-new -> idx-champ", "idx-champ -> idx-new"} <= set(r.served_pairs)
