"""The seed's results table in one call: world -> pre-period -> training -> simulate.

``reproduce(out, seed)`` runs the four steps of the geo experiment with the functions the
``experiment`` commands call, so each step's logic exists once:

* ``write_world`` — ``experiment world``: the raw logs of ``geo_world_config(seed, days)``;
* ``pre_period_raw`` — ``experiment pre-period``: the logs the treated system may learn from;
* ``train_bundle`` — ``experiment train``: the training pipeline's steps on those logs (ingest,
  label, feature views, the point-in-time training set with the pandas join, ranker + student +
  two-tower with the ``train`` command's defaults, the serving bundle);
* ``simulate_experiment`` — ``experiment simulate``: the geo holdout with the counterfactual run,
  DiD with its checks (``did.geo_inference``), the HTML report and ``results.json``.

The treated arm runs the shipped cold-start programme (``PROGRAMME``) unless told otherwise;
``committed_comparison`` puts the figures next to those committed in
``benchmarks/results/experiment_sim.json`` for the same seed and profile.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from checkout_recs.data.ingest import ingest
from checkout_recs.data.labels import build_labels
from checkout_recs.evaluation.experiments.did_inference import geo_inference
from checkout_recs.evaluation.experiments.report import geo_report, inference_sections
from checkout_recs.evaluation.html_report import table_html
from checkout_recs.features.build import build_feature_tables
from checkout_recs.features.training import build_training_set
from checkout_recs.models.ranker import RankerConfig
from checkout_recs.models.train import TrainConfig, train_all
from checkout_recs.models.two_tower import TwoTowerConfig
from checkout_recs.policy.config import PolicyConfig
from checkout_recs.serving.bundle_writer import assemble_bundle
from checkout_recs.simulate.config import SimSummary
from checkout_recs.simulate.evaluate import heuristic_policy, oracle_policy
from checkout_recs.simulate.pre_period import pre_period_raw
from checkout_recs.simulate.run import run_simulation
from checkout_recs.simulate.scenario import SimWorld
from checkout_recs.studies.geo_experiment import (
    geo_world_config,
    run_geo_experiment,
    with_cap_row,
    with_floor_row,
)
from checkout_recs.studies.serving_policy import ServingStats, serving_policy

ROOT = Path(__file__).resolve().parents[2]
#: The shipped cold-start programme profile (``--policy-config`` of the committed programme run).
PROGRAMME = ROOT / "configs" / "policy" / "cold_start_programme.json"
#: The committed figures of the geo experiment.
COMMITTED = ROOT / "benchmarks" / "results" / "experiment_sim.json"
#: The steps of ``reproduce``, in order; and the sub-steps of ``train_bundle``.
STEPS = ("world", "pre-period", "training", "simulate")
TRAIN_STEPS = ("ingest", "label", "features", "training set", "train", "bundle")
DEFAULT_HOLDOUT = ("north", "west")
#: Seed of the control heuristic's random slates in ``reproduce`` (``experiment simulate --seed``'s default).
HEURISTIC_SEED = 5

DayProgress = Callable[[int, int], None]
StepProgress = Callable[[str], None]


def write_world(
    out: Path, seed: int, days: int, overrides: dict[str, object] | None = None
) -> SimSummary:
    """``experiment world``: simulate ``geo_world_config(seed, days)`` (plus ``overrides``) into ``out``.

    Returns the simulator's ``SimSummary`` (rows per raw table, wall seconds).
    """
    return run_simulation(geo_world_config(seed, days, overrides=overrides), Path(out))


@dataclass(frozen=True)
class TrainedBundle:
    """What ``train_bundle`` wrote: the bundle, the user feature table and the seconds per sub-step."""

    bundle: Path
    users: Path
    work: Path
    training_rows: int
    seconds: dict[str, float] = field(default_factory=dict)


def run_end(raw: Path) -> dt.datetime:
    """The end of a simulated run (its ``manifest.json``: start + days), UTC."""
    cfg = json.loads((Path(raw) / "manifest.json").read_text())["config"]
    return dt.datetime.fromisoformat(cfg["start"]) + dt.timedelta(days=int(cfg["days"]))


def train_bundle(
    raw: Path, work: Path, seed: int = 7, on_step: StepProgress | None = None
) -> TrainedBundle:
    """``experiment train``: the training pipeline's steps on the raw logs ``raw``, on this machine.

    Writes under ``work``: ``ingested/`` (``ingest``, future timestamps judged against the end of
    the simulated run so the result does not depend on the wall clock), ``labels/``
    (``build_labels``), ``features/`` (``build_feature_tables``), ``training_set.parquet``
    (``build_training_set``, the pandas point-in-time join), ``model/`` (``train_all`` with the
    ``train`` command's defaults: shared-bottom ranker, 6 epochs, student, two-tower, all seeded
    with ``seed``; no MLflow) and ``bundle/`` (``assemble_bundle``).

    Returns
    -------
    TrainedBundle. ``on_step`` is called with each name of ``TRAIN_STEPS`` as it starts.
    """
    raw, work = Path(raw), Path(work)
    seconds: dict[str, float] = {}
    ing, labels, feats = work / "ingested", work / "labels", work / "features"
    tset, model, bundle = work / "training_set.parquet", work / "model", work / "bundle"
    cfg = TrainConfig(
        ranker=RankerConfig(seed=seed), two_tower=TwoTowerConfig(seed=seed), seed=seed
    )
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("ingest", lambda: ingest(str(raw), ing, now=run_end(raw))),
        ("label", lambda: build_labels(ing, labels)),
        ("features", lambda: build_feature_tables(ing, labels, feats)),
        ("training set", lambda: build_training_set(labels, feats, ing, tset)),
        ("train", lambda: train_all(tset, labels, feats, model, cfg)),
        ("bundle", lambda: assemble_bundle(model, labels, feats, bundle)),
    ]
    rows = 0
    for name, run in steps:
        if on_step is not None:
            on_step(name)
        t0 = time.perf_counter()
        result = run()
        seconds[name] = round(time.perf_counter() - t0, 2)
        rows = int(result.rows_out) if name == "training set" else rows
    return TrainedBundle(bundle, feats / "user.parquet", work, rows, seconds)


@dataclass(frozen=True)
class SimulateSpec:
    """The options of ``experiment simulate`` (see its ``--help``)."""

    treated: str = "serving"
    bundle: Path | None = None
    users: Path | None = None
    raw: Path | None = None
    seed: int = 5
    pre_days: int = 14
    test_days: int = 14
    holdout: tuple[str, ...] = ()
    requests_per_day: int | None = None
    policy_config: Path | None = None


def effective_policy_config(path: Path | None) -> dict:
    """The treated arm's ``PolicyConfig`` (the file's, else the serving default) as a JSON-ready dict."""
    return _policy(path).model_dump(mode="json")


def _policy(path: Path | None) -> PolicyConfig:
    return PolicyConfig.model_validate_json(Path(path).read_text()) if path else PolicyConfig()


def _treated_factory(spec: SimulateSpec, world: SimWorld, stats: dict) -> Callable[[], Callable]:
    """The treated policy's factory: the oracle, or the serving path on ``spec.bundle`` (its
    ``ServingStats`` land in ``stats["serving"]``). Raises ``ValueError`` on a bad combination."""
    if spec.treated == "oracle":
        return lambda: oracle_policy(world)
    if spec.treated != "serving":
        raise ValueError("--treated must be 'serving' or 'oracle'")
    if spec.bundle is None:
        raise ValueError("--bundle is required with --treated serving")
    bundle = spec.bundle
    cfg = _policy(spec.policy_config) if spec.policy_config else None

    def make() -> Callable:
        policy, counts = serving_policy(bundle, spec.users, cfg=cfg, world=world)
        stats["serving"] = counts
        return policy

    return make


def simulate_experiment(
    spec: SimulateSpec, out: Path, command: str = "", progress: DayProgress | None = None
) -> tuple[dict, pd.DataFrame]:
    """``experiment simulate``: run the geo holdout, write ``report.html``, ``panel.parquet`` and
    ``results.json`` under ``out``.

    ``progress`` is called with (days done, total) over the experiment and its counterfactual
    run. The payload (what ``results.json`` holds) carries the DiD on expected and realised GMV,
    ``inference`` and ``inference_realised`` (``did.geo_inference``: permutation over region
    assignments, placebo periods, HAC and region-clustered intervals, power by number of
    regions), the treated arm's policy configuration, serving statistics and the results table.

    Returns
    -------
    (payload, table). Raises ``ValueError`` for options that do not fit together.
    """
    out = Path(out)
    world = (
        SimWorld.from_raw(spec.raw)
        if spec.raw is not None
        else SimWorld.build(geo_world_config(spec.seed, spec.pre_days + spec.test_days))
    )
    regions = tuple(world.cfg.regions)
    if not spec.holdout and not set(DEFAULT_HOLDOUT) < set(regions):
        raise ValueError(f"the world's regions are {regions}: pass --holdout")
    stats: dict = {}
    res = run_geo_experiment(
        world, _treated_factory(spec, world, stats), lambda: heuristic_policy(world, spec.seed),
        list(spec.holdout or DEFAULT_HOLDOUT), spec.pre_days, spec.test_days, spec.requests_per_day,
        progress=progress,
    )  # fmt: skip
    serving: ServingStats | None = stats.get("serving")
    table = (
        res.table
        if serving is None
        else with_floor_row(with_cap_row(res.table, serving.ledger), serving.floors)
    )
    inference = geo_inference(res.panel, res.arms, res.start_day, value="gmv")
    realised = geo_inference(
        res.panel, res.arms, res.start_day, value="gmv_realised", scale="level"
    )
    label = (
        "our serving policy"
        if spec.treated == "serving"
        else "ORACLE (reads the hidden truth: an upper bound)"
    )
    extra = [("Results table", table_html(table)), *inference_sections(realised, "realised GMV")]
    geo_report(res.panel, res.arms, res.start_day, res.did, out / "report.html", f"Simulated geo holdout: {label}",
               extra=extra, inference=inference)  # fmt: skip
    res.panel.to_parquet(out / "panel.parquet")
    payload = {
        "command": command, "measured_at": dt.datetime.now(dt.UTC).isoformat(), "treated_policy": spec.treated,
        "world": world.cfg.model_dump(mode="json"), "pre_days": spec.pre_days, "test_days": spec.test_days,
        "true_uplift": res.true_uplift, "did": res.did.as_dict(), "did_realised": res.did_realised.as_dict(),
        "inference": inference.as_dict(), "inference_realised": realised.as_dict(),
        "policy_config": effective_policy_config(spec.policy_config) if spec.treated == "serving" else None,
        "serving_stats": dict(serving or {}), "exploration_ledger": getattr(serving, "ledger", {}),
        "exposure_floors": getattr(serving, "floors", {}),
        "table": table.astype(str).to_dict(orient="records"),
    }  # fmt: skip
    write_json(out / "results.json", payload)
    return payload, table


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON (anything not JSON-native as its ``str``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


@dataclass(frozen=True)
class ReproduceSpec:
    """What ``reproduce`` runs: the world's seed and length, the pre-period, the treated profile.

    ``policy_config`` None means the serving defaults; ``world_overrides`` replaces fields of the
    world recipe (small worlds for tests; empty for the committed figures); ``train_seed`` seeds
    the models (the ``train`` command's default, 7, made the committed bundles).
    """

    seed: int = 5
    days: int = 28
    pre_days: int = 14
    policy_config: Path | None = PROGRAMME
    world_overrides: dict[str, object] = field(default_factory=dict)
    requests_per_day: int | None = None
    train_seed: int = 7


def reproduce(
    out: Path,
    spec: ReproduceSpec,
    command: str = "",
    on_step: StepProgress | None = None,
    on_day: DayProgress | None = None,
) -> tuple[dict, pd.DataFrame]:
    """World -> pre-period -> training -> simulate into ``out`` (``raw/``, ``pre_raw/``, ``run/``,
    ``report.html``, ``results.json``, ``panel.parquet``).

    ``on_step`` is called with each name of ``STEPS`` and of ``TRAIN_STEPS`` (prefixed
    ``"training: "``) as it starts; ``on_day`` with (days done, total) while simulating. The
    payload is ``simulate_experiment``'s plus ``reproduce``: the spec, wall seconds per step and
    training sub-step, and ``committed`` (``committed_comparison`` rows, or None when nothing was
    committed for this seed and profile).

    Returns
    -------
    (payload, results table).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def step(name: str, run: Callable[[], Any]) -> Any:
        if on_step is not None:
            on_step(name)
        t0 = time.perf_counter()
        result = run()
        seconds[name] = round(time.perf_counter() - t0, 2)
        return result

    def sub(name: str) -> None:
        if on_step is not None:
            on_step(f"training: {name}")

    step(
        "world",
        lambda: write_world(out / "raw", spec.seed, spec.days, spec.world_overrides or None),
    )
    step("pre-period", lambda: pre_period_raw(out / "raw", out / "pre_raw", spec.pre_days))
    trained: TrainedBundle = step(
        "training", lambda: train_bundle(out / "pre_raw", out / "run", spec.train_seed, sub)
    )
    # the heuristic's own draws keep `experiment simulate`'s default seed whatever the world's seed,
    # as in every committed run (the seed-6 replication included)
    sim = SimulateSpec(bundle=trained.bundle, users=trained.users, raw=out / "raw", seed=HEURISTIC_SEED,
                       pre_days=spec.pre_days, test_days=spec.days - spec.pre_days,
                       requests_per_day=spec.requests_per_day, policy_config=spec.policy_config)  # fmt: skip
    payload, table = step("simulate", lambda: simulate_experiment(sim, out, command, on_day))
    profile = profile_name(spec.policy_config)
    committed = committed_figures(spec.seed, profile) if not spec.world_overrides else None
    payload["reproduce"] = {
        "seed": spec.seed, "days": spec.days, "pre_days": spec.pre_days, "profile": profile,
        "policy_config_file": str(spec.policy_config) if spec.policy_config else None,
        "world_overrides": spec.world_overrides, "train_seed": spec.train_seed,
        "seconds": {**seconds, "total": round(sum(seconds.values()), 2)},
        "training_seconds": trained.seconds, "training_rows": trained.training_rows,
        "committed": None if committed is None else committed_comparison(payload, committed).to_dict(orient="records"),
    }  # fmt: skip
    write_json(out / "results.json", payload)
    return payload, table


def profile_name(policy_config: Path | None) -> str:
    """``"programme"`` for the shipped cold-start programme, ``"defaults"`` for None, else the path."""
    if policy_config is None:
        return "defaults"
    return (
        "programme" if Path(policy_config).resolve() == PROGRAMME.resolve() else str(policy_config)
    )


def committed_figures(seed: int, profile: str, path: Path = COMMITTED) -> dict | None:
    """The committed run of ``seed`` and ``profile`` in ``experiment_sim.json``: keys ``true_uplift``,
    ``did``, ``did_realised`` and ``rows`` ({quantity: {treated, holdout, counterfactual, note}});
    None when that run was not committed (seeds 5 and 6, profiles ``programme`` and ``defaults``)."""
    if not Path(path).exists():
        return None
    data = json.loads(Path(path).read_text())
    programme = data.get("cold_start_programme", {})
    runs = {(5, "defaults"): data, (5, "programme"): programme}
    for name, run in programme.get("replication_seed6", {}).get("runs", {}).items():
        runs[(6, "defaults" if name == "default" else name)] = run
    run = runs.get((seed, profile))
    if run is None or "did" not in run:
        return None
    rows = run.get("rows") or {r["quantity"]: r for r in run.get("table", [])}
    return {"true_uplift": run.get("true_uplift"), "did": run["did"], "did_realised": run.get("did_realised", {}),
            "rows": rows}  # fmt: skip


def committed_comparison(payload: dict, committed: dict) -> pd.DataFrame:
    """Figure by figure: the reproduced value, the committed one and whether they agree.

    Numbers agree when equal to a relative 1e-9; the table's cells (strings as printed) when
    identical. Columns: ``figure``, ``reproduced``, ``committed``, ``same``.
    """
    rows: list[dict] = [_number("true uplift", payload["true_uplift"], committed["true_uplift"])]
    for key in ("did", "did_realised"):
        for part in ("uplift", "lower", "upper"):
            if part in committed[key]:
                rows.append(_number(f"{key}.{part}", payload[key][part], committed[key][part]))
    mine = {r["quantity"]: r for r in payload["table"]}
    for quantity, theirs in committed["rows"].items():
        for col in ("treated", "holdout", "counterfactual"):
            got = mine.get(quantity, {}).get(col)
            rows.append({"figure": f"{quantity} [{col}]", "reproduced": got, "committed": theirs.get(col),
                         "same": got == theirs.get(col)})  # fmt: skip
    return pd.DataFrame(rows)


def _number(name: str, got: float, expected: float | None) -> dict:
    same = expected is not None and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
    return {"figure": name, "reproduced": got, "committed": expected, "same": same}
