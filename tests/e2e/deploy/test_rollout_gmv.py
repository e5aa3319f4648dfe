"""The ramp's GMV guardrail (decision log x outcome events) and the MLflow aliases it moves,
against the fake Kubernetes API server on loopback, a real Prometheus scraping the simulated
revisions (the other guardrails, in PromQL) and a real MLflow registry (SQLite file)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from checkout_recs.deploy.attribution import DecisionLogGmv, folder_outcomes
from checkout_recs.deploy.kube import IsvcRef, KubeApi
from checkout_recs.deploy.metrics import MetricsSpec, PrometheusQuerySource
from checkout_recs.deploy.rollout import RampPlan, Rollout, storage_uri
from checkout_recs.evaluation.experiments.guardrails import GuardrailConfig
from checkout_recs.storage import LocalArtifactStore
from checkout_recs.tracking import MlflowAliases, alias_version, register_run, set_challenger
from tests.fixtures_ops_gmv import DecisionTraffic, _mlflow_template, logged_run, mlflow_db  # noqa: F401
from tests.fixtures_ops_servers import TrafficSimulator, fake_kube, staging_docs  # noqa: F401
from tests.fixtures_prometheus import kube_prometheus  # noqa: F401

pytestmark = pytest.mark.e2e

REF = IsvcRef(name="checkout-recs", namespace="checkout-recs-staging")
NEW = "s3://checkout-recs-staging-artifacts/bundle/bundle-new"
PLAN = RampPlan(hold_s=1.0, poll_s=0.25, max_hold_s=6.0, ready_timeout_s=5.0)
LIMITS = GuardrailConfig(min_requests=20, max_error_rate=0.02, gmv_floor_ratio=0.97)
ARMS = {"canary": "idx-new", "champion": "idx-champ"}
SPEC = MetricsSpec(matchers=f'namespace="{REF.namespace}"')


def _source(prom) -> PrometheusQuerySource:  # noqa: ANN001
    return PrometheusQuerySource(prom.url, SPEC)


@pytest.fixture
def ticking() -> Iterator[Callable[[Callable[[], object]], None]]:
    """``start(fn)`` calls ``fn`` every 0.25 s in the background until the test ends; an error in
    ``fn`` fails the test at teardown."""
    stop, threads, errors = threading.Event(), [], []

    def start(fn: Callable[[], object]) -> None:
        def loop() -> None:
            while not stop.wait(0.25):
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - reported at teardown
                    errors.append(e)
                    return

        threads.append(threading.Thread(target=loop, daemon=True))
        threads[-1].start()

    yield start
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors


def _setup(kube_prometheus, tmp_path, buy_rate, ticking, per_tick: int = 1500):  # noqa: ANN001, ANN202, F811
    fake, host, set_metrics, prom = kube_prometheus
    champion = storage_uri(fake.isvcs[(REF.namespace, REF.name)])
    store = LocalArtifactStore(tmp_path / "store")
    traffic = DecisionTraffic(
        fake, REF.namespace, REF.name, store, tmp_path / "logs", ARMS, buy_rate, per_tick
    )
    set_metrics(TrafficSimulator(fake, REF.namespace, REF.name, error_rate=lambda pct: 0.002))
    ticking(
        traffic
    )  # new answers, clicks and purchases every 0.25 s (off the scrape: its timeout is short)
    gmv = DecisionLogGmv(
        store,
        folder_outcomes(tmp_path / "logs"),
        resolve_arm={NEW: ARMS["canary"], champion: ARMS["champion"]}.__getitem__,
        min_sessions=100,
    )
    return fake, host, champion, gmv, traffic, prom


def _registered(uri: str, tmp_path, champion: str) -> tuple[str, str]:  # noqa: ANN001
    """Champion version (serving ``champion``) and a gate-passed challenger carrying ``NEW``."""
    old = register_run(uri, logged_run(uri, {"ndcg@6": 0.1}, tmp_path / "a"), "champion")
    set_challenger(uri, old, True, champion)
    new = register_run(uri, logged_run(uri, {"ndcg@6": 0.2}, tmp_path / "b"))
    set_challenger(uri, new, True, NEW)
    return old, new


def _percents(fake) -> list:  # noqa: ANN001
    return [
        b.get("spec", {}).get("predictor", {}).get("canaryTrafficPercent", "absent")
        for b in fake.patches()
    ]


def test_healthy_gmv_ramp_reaches_100_and_moves_the_champion_alias(  # noqa: F811
    kube_prometheus, tmp_path, mlflow_db, ticking
):  # noqa: F811
    fake, host, champion, gmv, traffic, prom = _setup(
        kube_prometheus, tmp_path, lambda arm, pct: 0.33 if arm == "canary" else 0.3, ticking
    )
    old, new = _registered(mlflow_db, tmp_path, champion)
    assert (
        alias_version(mlflow_db, "champion")[0] == old
        and alias_version(mlflow_db, "challenger")[0] == new
    )
    rollout = Rollout(
        KubeApi(host=host),
        REF,
        _source(prom),
        PLAN,
        LIMITS,
        gmv=gmv,
        registry=MlflowAliases(mlflow_db),
    )
    result = rollout.run(NEW)
    assert result.outcome == "promoted", result.reason
    assert _percents(fake) == [5, 25, 50, None]  # each patch in the API server's history
    measured = [s for s in result.steps if s.metrics and s.metrics["gmv_ratio"] is not None]
    assert measured and measured[-1].percent == 50  # GMV was judged before the last step
    assert measured[-1].metrics["gmv_ratio_upper"] > measured[-1].metrics["gmv_ratio"] > 0.97
    assert any("GMV/session canary" in n for n in measured[-1].notes)
    assert traffic.sessions["canary"] > 100 and traffic.sessions["champion"] > 100
    assert alias_version(mlflow_db, "champion")[0] == new  # moved only now, at 100 %
    assert alias_version(mlflow_db, "challenger") is None


def test_gmv_drop_at_25_rolls_back_and_leaves_the_champion_alias(  # noqa: F811
    kube_prometheus, tmp_path, mlflow_db, ticking
):  # noqa: F811
    from mlflow import MlflowClient

    def buy_rate(arm: str, pct: int) -> float:
        return 0.1 if arm == "canary" and pct >= 25 else 0.3

    fake, host, champion, gmv, _, prom = _setup(kube_prometheus, tmp_path, buy_rate, ticking)
    old, new = _registered(mlflow_db, tmp_path, champion)
    before = fake.traffic(REF.namespace, REF.name)
    rollout = Rollout(
        KubeApi(host=host),
        REF,
        _source(prom),
        PLAN,
        LIMITS,
        gmv=gmv,
        registry=MlflowAliases(mlflow_db),
    )
    result = rollout.run(NEW)
    assert result.outcome == "rolled_back", result.reason
    assert (
        "at 25%" in result.reason
        and "GMV ratio" in result.reason
        and "upper bound" in result.reason
    )
    assert [s.action for s in result.steps][-1] == "rollback"
    assert _percents(fake)[-1] == 0 and 100 not in _percents(fake)
    assert (
        fake.traffic(REF.namespace, REF.name)[next(iter(before))] == 100
    )  # all back on the champion
    assert alias_version(mlflow_db, "champion")[0] == old  # untouched
    tags = MlflowClient(tracking_uri=mlflow_db).get_model_version("checkout-recs-ranker", new).tags
    assert tags["rollout"] == "rolled_back" and "GMV" in tags["rollback_reason"]


def test_unmeasurable_gmv_holds_the_50_step_and_rolls_back_as_inconclusive(  # noqa: F811
    kube_prometheus, tmp_path, ticking
):  # noqa: F811
    fake, host, _, gmv, _, prom = _setup(
        kube_prometheus, tmp_path, lambda arm, pct: 0.3, ticking, per_tick=20
    )
    gmv.min_sessions = 10_000  # never enough sessions
    plan = RampPlan(
        steps=(5, 50, 100), hold_s=1.0, poll_s=0.25, max_hold_s=2.5, ready_timeout_s=5.0
    )
    result = Rollout(
        KubeApi(host=host), REF, _source(prom), plan, GuardrailConfig(min_requests=1), gmv=gmv
    ).run(NEW)
    assert [s.action for s in result.steps] == [
        "continue",
        "hold",
    ]  # 5 % passes without GMV, 50 % does not
    assert (
        result.outcome == "rolled_back"
        and "inconclusive" in result.reason
        and "not measurable" in result.reason
    )
    assert _percents(fake) == [5, 50, 0]


def test_cli_canary_reads_gmv_from_the_store_and_promote_rollback_move_aliases(  # noqa: F811
    kube_prometheus, tmp_path, mlflow_db, ticking
):  # noqa: F811
    import json

    from typer.testing import CliRunner

    from cli.app import app

    fake, host, _, _, _, prom = _setup(kube_prometheus, tmp_path, lambda arm, pct: 0.3, ticking)
    store = LocalArtifactStore(tmp_path / "store")
    uris = {}
    for (
        arm,
        idx,
    ) in ARMS.items():  # two published bundles; the decision log carries their index versions
        src = tmp_path / f"src-{arm}"
        src.mkdir()
        (src / "bundle.json").write_text(json.dumps({"index_version": idx}))
        uris[arm] = store.publish("bundle", f"bundle-{arm}", src)
    isvc = fake.isvcs[(REF.namespace, REF.name)]
    for comp in (
        "transformer",
        "predictor",
    ):  # the champion bundle is the one serving (collocated: no transformer)
        for c in isvc["spec"].get(comp, {}).get("containers") or []:
            for e in c.get("env") or []:
                if e["name"] == "STORAGE_URI":
                    e["value"] = uris["champion"]
    old, new = _registered(mlflow_db, tmp_path, uris["champion"])
    set_challenger(mlflow_db, new, True, uris["canary"])
    limits = tmp_path / "limits.yaml"
    limits.write_text("min_requests: 20\nmax_error_rate: 0.02\ngmv_floor_ratio: 0.5\n")
    common = ["--host", host, "--namespace", REF.namespace, "--tracking-uri", mlflow_db]
    res = CliRunner().invoke(
        app,
        [
            "deploy",
            "canary",
            uris["canary"],
            "--prometheus-url",
            prom.url,
            *common,
            "--steps",
            "5,50,100",
            "--hold-s",
            "1",
            "--poll-s",
            "0.25",
            "--max-hold-s",
            "6",
            "--guardrails",
            str(limits),
            "--artifact-root",
            str(tmp_path / "store"),
            "--outcomes",
            str(tmp_path / "logs"),
            "--gmv-min-sessions",
            "100",
            "--result-json",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    steps = json.loads((tmp_path / "r.json").read_text())["steps"]
    assert steps[1]["percent"] == 50 and steps[1]["metrics"]["gmv_ratio"] is not None
    assert alias_version(mlflow_db, "champion")[0] == new and "now champion" in res.output
    res = CliRunner().invoke(app, ["deploy", "rollback", "--reason", "drill", *common])
    assert res.exit_code == 0 and "champion unchanged" in res.output, res.output
    assert alias_version(mlflow_db, "champion")[0] == new  # a rollback never moves the alias


def test_cli_promote_moves_champion_after_the_controller_confirms(fake_kube, tmp_path, mlflow_db):  # noqa: F811
    from typer.testing import CliRunner

    from cli.app import app

    fake, host, _ = fake_kube
    champion = storage_uri(fake.isvcs[(REF.namespace, REF.name)])
    old, new = _registered(mlflow_db, tmp_path, champion)
    rollout = Rollout(KubeApi(host=host), REF, plan=PLAN)
    assert rollout.wait_for(5, rollout.start(NEW, 5)) is not None  # a canary stuck at 5 %
    assert alias_version(mlflow_db, "champion")[0] == old
    res = CliRunner().invoke(
        app,
        [
            "deploy",
            "promote",
            "--host",
            host,
            "--namespace",
            REF.namespace,
            "--tracking-uri",
            mlflow_db,
            "--timeout-s",
            "5",
        ],
    )
    assert res.exit_code == 0, res.output
    assert list(fake.traffic(REF.namespace, REF.name).values()) == [100]
    assert alias_version(mlflow_db, "champion")[0] == new and "now champion" in res.output
    other = "s3://checkout-recs-staging-artifacts/bundle/other"
    set_challenger(
        mlflow_db,
        register_run(mlflow_db, logged_run(mlflow_db, {"ndcg@6": 0.3}, tmp_path / "c")),
        True,
        other,
    )
    fake.reconcile = False  # a controller that never confirms: the alias must not move
    rollout.start(other, 5)
    res = CliRunner().invoke(
        app,
        [
            "deploy",
            "promote",
            "--host",
            host,
            "--namespace",
            REF.namespace,
            "--tracking-uri",
            mlflow_db,
            "--timeout-s",
            "0.5",
        ],
    )
    assert res.exit_code == 1 and "registry unchanged" in res.output
    assert alias_version(mlflow_db, "champion")[0] == new


def test_a_failing_gmv_source_holds_and_rolls_back_instead_of_crashing(  # noqa: F811
    kube_prometheus, tmp_path, ticking
):  # noqa: F811
    fake, host, _, gmv, _, prom = _setup(
        kube_prometheus, tmp_path, lambda arm, pct: 0.3, ticking, per_tick=50
    )
    gmv.resolve_arm = {}.__getitem__  # a bundle the source cannot resolve
    plan = RampPlan(
        steps=(5, 50, 100), hold_s=1.0, poll_s=0.25, max_hold_s=2.5, ready_timeout_s=5.0
    )
    result = Rollout(
        KubeApi(host=host), REF, _source(prom), plan, GuardrailConfig(min_requests=1), gmv=gmv
    ).run(NEW)
    assert result.outcome == "rolled_back" and [s.action for s in result.steps] == [
        "continue",
        "hold",
    ]
    assert any("GMV source failed: KeyError" in n for n in result.steps[-1].notes)
    assert _percents(fake) == [5, 50, 0]
