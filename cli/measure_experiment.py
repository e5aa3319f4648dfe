"""Measurement commands, part two: experiments (design / analyze / simulate), OPE coverage,
fairness audit. Heavy imports (matplotlib, the simulator) happen inside the command bodies.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail, usage_error, write_results

experiment_app = typer.Typer(
    help="Online experiments: design, analyze, simulate (geo holdout + DiD), reproduce."
)


def _sessions(run: Path):  # noqa: ANN202 - pandas imported lazily
    import pandas as pd

    from checkout_recs.evaluation.experiments.ab import sessions_from_impressions

    f = run / "labels" / "impressions_labelled.parquet"
    if not f.exists():
        raise fail(f"no labelled impressions at {f} (run `checkout-recs label` first)")
    return sessions_from_impressions(pd.read_parquet(f))


@experiment_app.command("design")
def design(
    name: Annotated[str, typer.Option(help="Experiment name (salts the user hash).")],
    run: Annotated[
        Path, typer.Option(help="Run folder with labels/ (pre-period data for balance and power).")
    ],
    out: Annotated[Path, typer.Option(help="Design JSON to write.")],
    unit: Annotated[
        str, typer.Option(help="'user' (hash split) or 'region' (geo holdout).")
    ] = "user",
    treatment_share: Annotated[
        float, typer.Option(help="Share of users (or regions) treated.")
    ] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the region draw.")] = 7,
) -> None:
    """Assignment rule, arms and minimum detectable effects from pre-period data."""
    import pandas as pd

    from checkout_recs.evaluation.experiments.ab import (
        design_geo_holdout,
        minimum_detectable_effect,
    )

    if unit not in ("user", "region"):
        raise usage_error(f"--unit must be 'user' or 'region', got {unit!r}")
    s = _sessions(run)
    key = "user_id" if unit == "user" else "region"
    per_unit = s.groupby(key)[["gmv", "sessions"]].sum()
    n_units = len(per_unit)
    n_treated = max(1, int(n_units * treatment_share))
    gmv_unit = per_unit["gmv"]
    mde = {f"n_per_arm={n}": minimum_detectable_effect(gmv_unit.mean(), gmv_unit.std(), n) for n in
           sorted({min(n_treated, n_units - n_treated), 1_000, 10_000, 100_000})}  # fmt: skip
    spec: dict = {
        "name": name,
        "unit": unit,
        "treatment_share": treatment_share,
        "mde_gmv_per_unit": mde,
    }
    if unit == "region":
        spec["arms"] = design_geo_holdout(
            per_unit["gmv"], holdout_share=1 - treatment_share, seed=seed
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec, indent=2))
    typer.echo(pd.Series(spec, dtype=object).to_string())
    typer.echo(f"design written to {out}")


@experiment_app.command("analyze")
def analyze(
    design_file: Annotated[
        Path, typer.Option("--design", help="Design JSON from `experiment design`.")
    ],
    run: Annotated[Path, typer.Option(help="Run folder with labels/ covering the experiment.")],
    out: Annotated[Path, typer.Option(help="Folder for report.html and results.json.")],
    start: Annotated[
        str | None, typer.Option(help="Region designs: first treated day (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Lifts with delta-method and bootstrap intervals (user designs) or DiD (region designs)."""
    import numpy as np
    import pandas as pd

    from checkout_recs.evaluation.experiments.ab import analyze_ab, assign_by_user_hash
    from checkout_recs.evaluation.experiments.did import diff_in_diff
    from checkout_recs.evaluation.experiments.did_inference import geo_inference
    from checkout_recs.evaluation.experiments.report import ab_report, geo_report

    spec = json.loads(design_file.read_text())
    s = _sessions(run)
    if spec["unit"] == "user":
        treated = assign_by_user_hash(
            s["user_id"].to_numpy(), spec["name"], spec["treatment_share"]
        )
        res = analyze_ab(s.assign(arm=np.where(treated, "treatment", "control")))
        path = ab_report(res, out / "report.html", f"Experiment {spec['name']}")
        (out / "results.json").write_text(res.to_json(orient="records", indent=2))
        typer.echo(res.to_string(index=False))
    else:
        if start is None:
            raise usage_error("--start is required for a region design")
        panel = (
            s.assign(day=s["event_timestamp"].dt.floor("D"))
            .groupby(["region", "day"])["gmv"]
            .sum()
            .reset_index()
        )
        t0 = pd.Timestamp(start, tz="UTC")
        try:
            res = diff_in_diff(panel, spec["arms"], start=t0)
            inference = geo_inference(panel, spec["arms"], t0)
        except ValueError as exc:
            raise fail(str(exc)) from exc
        path = geo_report(panel, spec["arms"], t0, res, out / "report.html", f"Geo experiment {spec['name']}",
                          inference=inference)  # fmt: skip
        (out / "results.json").write_text(json.dumps({**res.as_dict(), "inference": inference.as_dict()},
                                                     indent=2, default=str))  # fmt: skip
        typer.echo(f"DiD uplift {res.uplift:+.2%} [{res.lower:+.2%}, {res.upper:+.2%}]; parallel trends "
                   f"{'ok' if res.parallel_trends.passed else 'FAILED'}")  # fmt: skip
    typer.echo(f"report: {path}")


@experiment_app.command("simulate")
def simulate(
    out: Annotated[
        Path, typer.Option(help="Folder for report.html, results.json and panel.parquet.")
    ],
    treated: Annotated[
        str,
        typer.Option(
            help="Treated policy: 'serving' (our policy; needs --bundle) or 'oracle' (upper bound)."
        ),
    ] = "serving",
    bundle: Annotated[
        Path | None, typer.Option(help="Serving bundle folder for --treated serving.")
    ] = None,
    users: Annotated[
        Path | None, typer.Option(help="User feature table (default: found in the bundle).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 5,
    pre_days: Annotated[int, typer.Option(help="Days with every region on the heuristic.")] = 14,
    test_days: Annotated[
        int, typer.Option(help="Days with treated regions on the new policy.")
    ] = 14,
    holdout: Annotated[list[str] | None, typer.Option(help="Holdout region (repeat).")] = None,
    requests_per_day: Annotated[
        int | None, typer.Option(help="Checkouts per day, all regions (default: the world's).")
    ] = None,
    raw: Annotated[
        Path | None,
        typer.Option(
            help="Simulated raw folder whose world is used (the bundle's training run: its "
            "pre-period, see checkout_recs.simulate.pre_period)."
        ),
    ] = None,
    policy_config: Annotated[
        Path | None, typer.Option(help="PolicyConfig JSON for the treated serving policy.")
    ] = None,
    results: Annotated[
        Path | None, typer.Option(help="Also write the figures to this JSON file.")
    ] = None,
) -> None:
    """Geo holdout in the simulator: DiD incremental GMV next to the true uplift, cold start, exposure."""
    from rich.console import Console
    from rich.progress import Progress

    from checkout_recs.studies.geo_reproduce import SimulateSpec, simulate_experiment

    spec = SimulateSpec(treated=treated, bundle=bundle, users=users, raw=raw, seed=seed, pre_days=pre_days,
                        test_days=test_days, holdout=tuple(holdout or ()), requests_per_day=requests_per_day,
                        policy_config=policy_config)  # fmt: skip
    with Progress() as bar:
        task = bar.add_task(
            "simulating days (experiment, then counterfactual)", total=2 * (pre_days + test_days)
        )
        try:
            payload, table = simulate_experiment(spec, out, _command(), _day_progress(bar, task))
        except ValueError as exc:
            raise fail(str(exc)) from exc
    if payload["serving_stats"]:
        typer.echo(f"serving path statistics (treated arm): {payload['serving_stats']}")
    if results is not None:
        write_results(results, payload)
    Console().print(table.to_string(index=False))
    _echo_inference(payload)
    typer.echo(f"report: {out / 'report.html'}")


@experiment_app.command("world")
def world(
    out: Annotated[
        Path, typer.Option(help="Raw folder to write (the simulated logs of the whole run).")
    ],
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 5,
    days: Annotated[int, typer.Option(help="Simulated days (pre-period + test period).")] = 28,
) -> None:
    """Simulate the world of `experiment simulate` (geo_world_config) and write its raw logs."""
    from checkout_recs.studies.geo_reproduce import write_world

    summary = write_world(out, seed, days)
    typer.echo(json.dumps(summary.rows, indent=2))
    typer.echo(f"raw folder: {out} ({summary.seconds:.0f} s)")


@experiment_app.command("pre-period")
def pre_period(
    raw: Annotated[Path, typer.Option(help="Simulated raw folder of the whole run.")],
    out: Annotated[Path, typer.Option(help="Raw folder to write with the pre-period rows only.")],
    days: Annotated[int, typer.Option(help="Pre-period length, days from the run's start.")] = 14,
) -> None:
    """Keep a simulated run's pre-period logs: what the treated system may be trained on."""
    from checkout_recs.simulate.pre_period import pre_period_raw

    try:
        kept = pre_period_raw(raw, out, days)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from exc
    typer.echo(json.dumps(kept, indent=2))
    typer.echo(f"pre-period raw folder: {out}")


@experiment_app.command("train")
def train(
    raw: Annotated[
        Path,
        typer.Option(help="Raw folder to learn from (the pre-period of `experiment pre-period`)."),
    ],
    out: Annotated[
        Path, typer.Option(help="Work folder: ingested/, labels/, features/, model/, bundle/.")
    ],
    seed: Annotated[
        int, typer.Option(help="Seed of the models (the `train` command's default).")
    ] = 7,
) -> None:
    """Train the treated system on a raw folder: ingest, label, features, training set, train, bundle."""
    from rich.progress import Progress

    from checkout_recs.studies.geo_reproduce import TRAIN_STEPS, train_bundle

    with Progress() as bar:
        task = bar.add_task("training", total=len(TRAIN_STEPS))
        trained = train_bundle(raw, out, seed, _step_progress(bar, task, TRAIN_STEPS))
        bar.update(task, completed=len(TRAIN_STEPS))
    typer.echo(json.dumps(trained.seconds, indent=2))
    typer.echo(
        f"bundle: {trained.bundle} (users: {trained.users}; {trained.training_rows} training rows)"
    )


@experiment_app.command("reproduce")
def reproduce(
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for everything: raw/, pre_raw/, run/, report.html, results.json."
        ),
    ],
    seed: Annotated[
        int, typer.Option(help="World seed (the committed figures: 5, and 6 for the replication).")
    ] = 5,
    policy_config: Annotated[
        Path | None,
        typer.Option(help="Treated PolicyConfig JSON (default: the shipped cold-start programme)."),
    ] = None,
    serving_defaults: Annotated[
        bool,
        typer.Option(
            "--serving-defaults",
            help="Treat with the serving defaults instead (the README's headline row).",
        ),
    ] = False,
    days: Annotated[int, typer.Option(help="Simulated days, pre-period + test period.")] = 28,
    pre_days: Annotated[
        int, typer.Option(help="Pre-period days (training data, every region on the heuristic).")
    ] = 14,
    results: Annotated[
        Path | None, typer.Option(help="Also write the figures to this JSON file.")
    ] = None,
    world_overrides: Annotated[
        str,
        typer.Option(
            hidden=True,
            help="JSON of SimConfig fields replacing the world recipe's (small test worlds).",
        ),
    ] = "{}",
) -> None:
    """The seed's results table in one command: world -> pre-period -> training -> simulate.

    Calls the functions of `experiment world`, `pre-period`, `train` and `simulate`.
    """
    from rich.console import Console
    from rich.progress import Progress

    from checkout_recs.studies.geo_reproduce import PROGRAMME, STEPS, ReproduceSpec
    from checkout_recs.studies.geo_reproduce import reproduce as run_reproduce

    if serving_defaults and policy_config is not None:
        raise usage_error("--serving-defaults and --policy-config exclude each other")
    profile = None if serving_defaults else (policy_config or PROGRAMME)
    spec = ReproduceSpec(seed=seed, days=days, pre_days=pre_days, policy_config=profile,
                         world_overrides=json.loads(world_overrides))  # fmt: skip
    with Progress() as bar:
        steps = bar.add_task("steps", total=len(STEPS))
        days_task = bar.add_task(
            "simulating days (experiment, then counterfactual)", total=2 * days
        )
        payload, table = run_reproduce(out, spec, _command(), _step_progress(bar, steps, STEPS),
                                       _day_progress(bar, days_task))  # fmt: skip
        bar.update(steps, completed=len(STEPS))
    if results is not None:
        write_results(results, payload)
    Console().print(table.to_string(index=False))
    _echo_inference(payload)
    rep = payload["reproduce"]
    typer.echo("seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in rep["seconds"].items()))
    if rep["committed"] is None:
        typer.echo(f"no committed figures for seed {seed} and profile {rep['profile']}")
    else:
        differ = [r for r in rep["committed"] if not r["same"]]
        typer.echo(f"against the committed figures (seed {seed}, {rep['profile']}): "
                   f"{len(rep['committed']) - len(differ)} of {len(rep['committed'])} identical")  # fmt: skip
        for r in differ:
            typer.echo(
                f"  differs: {r['figure']}: reproduced {r['reproduced']}, committed {r['committed']}"
            )
    typer.echo(f"report: {out / 'report.html'}")


def _command() -> str:
    """The command line as typed, for results files."""
    import sys

    return " ".join(["checkout-recs", *sys.argv[1:]])


def _echo_inference(payload: dict) -> None:
    """One line each: the permutation test, the HAC and clustered intervals, the placebo periods."""
    inf = payload["inference"]
    p, pl, hac, cl = inf["permutation"], inf["placebo"], inf["hac"], inf["cluster"]
    typer.echo(f"permutation over {p['n_assignments']} region assignments: p one-sided {p['p_one_sided']:.3f}, "
               f"two-sided {p['p_two_sided']:.3f} (smallest possible {p['min_p_one_sided']:.3f} / "
               f"{p['min_p_two_sided']:.3f})")  # fmt: skip
    for r in (hac, cl):
        if r is not None:
            typer.echo(f"{r['method']}: {r['uplift']:+.1%} [{r['lower']:+.1%}, {r['upper']:+.1%}]")
    typer.echo(f"placebo periods: mean {pl['mean_uplift']:+.1%}, largest |{pl['max_abs_uplift']:.1%}|, "
               f"{pl['share_covering_zero']:.0%} of intervals cover 0")  # fmt: skip


def _step_progress(bar, task, names: tuple[str, ...]):  # noqa: ANN001, ANN202 - rich Progress and its task id
    """Step callback: the bar's description and count follow the step; one line per step on stderr
    when not on a terminal (logs)."""
    import sys
    import time

    t0, tty = time.perf_counter(), sys.stderr.isatty()

    def update(name: str) -> None:
        done = names.index(name) if name in names else None
        bar.update(task, description=name, **({} if done is None else {"completed": done}))
        if not tty:
            typer.echo(f"step {name}, {time.perf_counter() - t0:.0f} s", err=True)

    return update


def _day_progress(bar, task):  # noqa: ANN001, ANN202 - rich Progress and its task id
    """Progress callback: the bar on a terminal; one line per simulated day on stderr otherwise (logs)."""
    import sys
    import time

    t0, tty = time.perf_counter(), sys.stderr.isatty()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done)
        if not tty:
            typer.echo(f"simulated day {done}/{total}, {time.perf_counter() - t0:.0f} s", err=True)

    return update


def ope_coverage(
    seeds: Annotated[int, typer.Option(help="Number of seeds.")] = 50,
    world: Annotated[
        str,
        typer.Option(
            help="'simulator' (the marketplace simulator) or 'standin' (small position-based world)."
        ),
    ] = "simulator",
    results: Annotated[Path, typer.Option(help="JSON file for the figures.")] = Path(
        "benchmarks/results/ope_coverage.json"
    ),
    report: Annotated[
        Path | None, typer.Option(help="Also write an HTML report with plots here.")
    ] = None,
) -> None:
    """Share of seeds whose 95% interval covers the true value, for every OPE estimator."""
    from rich.progress import Progress

    if world not in ("simulator", "standin"):
        raise usage_error(f"--world must be 'simulator' or 'standin', got {world!r}")
    with Progress() as bar:
        task = bar.add_task(f"seeds ({world})", total=seeds)
        if world == "simulator":
            from checkout_recs.studies.ope_sim_coverage import sim_coverage_study

            r = sim_coverage_study(
                n_seeds=seeds, progress=lambda d, n: bar.update(task, completed=d)
            )
        else:
            from checkout_recs.studies.ope_coverage import coverage_study

            r = coverage_study(n_seeds=seeds)
            bar.update(task, completed=seeds)
    typer.echo(f"{world}: true value {r['truth']:.4f} clicks per request; {seeds} seeds")
    for name, cov in r["coverage"].items():
        flag = "ok" if cov >= 0.9 else "BELOW 90%"
        typer.echo(f"  {name:6s} coverage {cov:5.0%}  mean estimate {r['mean_estimate'][name]:.4f}  "
                   f"mean width {r['mean_width'][name]:.4f}  {flag}")  # fmt: skip
    write_results(
        results,
        {
            "world_kind": world,
            "command": f"checkout-recs ope-coverage --seeds {seeds} --world {world}",
            **r,
        },
    )
    if report is not None:
        from checkout_recs.studies.ope_sim_coverage import coverage_report

        typer.echo(f"report: {coverage_report(r, report)}")


def fairness(
    run: Annotated[
        Path,
        typer.Option(help="Run folder: raw/ (or ingested/validated/) tables, labels/ optional."),
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for fairness_report.html and fairness_summary.json.")
    ],
) -> None:
    """Exposure and clicks by seller cohort and proxy audit bucket, disparity over time."""
    import pandas as pd

    from checkout_recs.evaluation.fairness import run_audit, write_report

    def find(table: str) -> Path:
        for base in (run / "raw", run / "ingested" / "validated", run):
            if (base / table).exists():
                return base / table
        raise fail(f"no {table} table under {run}")

    labelled = run / "labels" / "impressions_labelled.parquet"
    imp = pd.read_parquet(labelled if labelled.exists() else find("impressions"))
    try:
        audit = run_audit(imp, pd.read_parquet(find("listings")), pd.read_parquet(find("sellers")))
    except ValueError as exc:
        raise fail(str(exc)) from exc
    path = write_report(audit, out)
    typer.echo(audit.published.to_string(index=False))
    typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Register experiment, OPE-coverage and fairness commands."""
    app.add_typer(experiment_app, name="experiment")
    app.command("ope-coverage")(ope_coverage)
    app.command("fairness")(fairness)
