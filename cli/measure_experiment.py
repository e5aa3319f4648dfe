"""Measurement commands, part two: experiments (design / analyze / simulate), OPE coverage,
fairness audit. Heavy imports (matplotlib, the simulator) happen inside the command bodies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail, write_results

experiment_app = typer.Typer(help="Online experiments: design, analyze, simulate (geo holdout + DiD).")


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
    unit: Annotated[str, typer.Option(help="'user' (hash split) or 'region' (geo holdout).")] = "user",
    treatment_share: Annotated[float, typer.Option(help="Share of users (or regions) treated.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the region draw.")] = 7,
) -> None:
    """Assignment rule, arms and minimum detectable effects from pre-period data."""
    import pandas as pd

    from checkout_recs.evaluation.experiments.ab import design_geo_holdout, minimum_detectable_effect

    if unit not in ("user", "region"):
        raise fail("unit must be 'user' or 'region'")
    s = _sessions(run)
    key = "user_id" if unit == "user" else "region"
    per_unit = s.groupby(key)[["gmv", "sessions"]].sum()
    n_units = len(per_unit)
    n_treated = max(1, int(n_units * treatment_share))
    gmv_unit = per_unit["gmv"]
    mde = {f"n_per_arm={n}": minimum_detectable_effect(gmv_unit.mean(), gmv_unit.std(), n) for n in
           sorted({min(n_treated, n_units - n_treated), 1_000, 10_000, 100_000})}  # fmt: skip
    spec: dict = {"name": name, "unit": unit, "treatment_share": treatment_share, "mde_gmv_per_unit": mde}
    if unit == "region":
        spec["arms"] = design_geo_holdout(per_unit["gmv"], holdout_share=1 - treatment_share, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec, indent=2))
    typer.echo(pd.Series(spec, dtype=object).to_string())
    typer.echo(f"design written to {out}")


@experiment_app.command("analyze")
def analyze(
    design_file: Annotated[Path, typer.Option("--design", help="Design JSON from `experiment design`.")],
    run: Annotated[Path, typer.Option(help="Run folder with labels/ covering the experiment.")],
    out: Annotated[Path, typer.Option(help="Folder for report.html and results.json.")],
    start: Annotated[str | None, typer.Option(help="Region designs: first treated day (YYYY-MM-DD).")] = None,
) -> None:
    """Lifts with delta-method and bootstrap intervals (user designs) or DiD (region designs)."""
    import numpy as np
    import pandas as pd

    from checkout_recs.evaluation.experiments.ab import analyze_ab, assign_by_user_hash
    from checkout_recs.evaluation.experiments.did import diff_in_diff
    from checkout_recs.evaluation.experiments.report import ab_report, geo_report

    spec = json.loads(design_file.read_text())
    s = _sessions(run)
    if spec["unit"] == "user":
        treated = assign_by_user_hash(s["user_id"].to_numpy(), spec["name"], spec["treatment_share"])
        res = analyze_ab(s.assign(arm=np.where(treated, "treatment", "control")))
        path = ab_report(res, out / "report.html", f"Experiment {spec['name']}")
        (out / "results.json").write_text(res.to_json(orient="records", indent=2))
        typer.echo(res.to_string(index=False))
    else:
        if start is None:
            raise fail("--start is required for a region design")
        panel = (
            s.assign(day=s["event_timestamp"].dt.floor("D"))
            .groupby(["region", "day"])["gmv"]
            .sum()
            .reset_index()
        )
        t0 = pd.Timestamp(start, tz="UTC")
        try:
            res = diff_in_diff(panel, spec["arms"], start=t0)
        except ValueError as exc:
            raise fail(str(exc)) from exc
        path = geo_report(panel, spec["arms"], t0, res, out / "report.html", f"Geo experiment {spec['name']}")
        (out / "results.json").write_text(json.dumps(res.as_dict(), indent=2, default=str))
        typer.echo(f"DiD uplift {res.uplift:+.2%} [{res.lower:+.2%}, {res.upper:+.2%}]; parallel trends "
                   f"{'ok' if res.parallel_trends.passed else 'FAILED'}")  # fmt: skip
    typer.echo(f"report: {path}")


@experiment_app.command("simulate")
def simulate(
    out: Annotated[Path, typer.Option(help="Folder for report.html, results.json and panel.parquet.")],
    treated: Annotated[
        str,
        typer.Option(
            help="Treated policy: 'serving' (our policy; needs --bundle) or 'oracle' (upper bound)."
        ),
    ] = "serving",
    bundle: Annotated[Path | None, typer.Option(help="Serving bundle folder for --treated serving.")] = None,
    users: Annotated[
        Path | None, typer.Option(help="User feature table (default: found in the bundle).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 5,
    pre_days: Annotated[int, typer.Option(help="Days with every region on the heuristic.")] = 14,
    test_days: Annotated[int, typer.Option(help="Days with treated regions on the new policy.")] = 14,
    holdout: Annotated[list[str] | None, typer.Option(help="Holdout region (repeat).")] = None,
    requests_per_day: Annotated[
        int | None, typer.Option(help="Checkouts per day, all regions (default: the world's).")
    ] = None,
    raw: Annotated[
        Path | None,
        typer.Option(help="Simulated raw folder whose world is used (the bundle's training run: its "
                     "pre-period, see checkout_recs.simulate.pre_period)."),
    ] = None,
    policy_config: Annotated[
        Path | None, typer.Option(help="PolicyConfig JSON for the treated serving policy.")
    ] = None,
    results: Annotated[Path | None, typer.Option(help="Also write the figures to this JSON file.")] = None,
) -> None:
    """Geo holdout in the simulator: DiD incremental GMV next to the true uplift, cold start, exposure."""
    from rich.console import Console
    from rich.progress import Progress

    from checkout_recs.evaluation.experiments.report import geo_report
    from checkout_recs.evaluation.html_report import table_html
    from checkout_recs.simulate.evaluate import heuristic_policy, oracle_policy
    from checkout_recs.simulate.scenario import SimWorld
    from checkout_recs.studies.geo_experiment import (
        geo_world_config,
        run_geo_experiment,
        with_cap_row,
        with_floor_row,
    )

    world = SimWorld.from_raw(raw) if raw is not None else SimWorld.build(geo_world_config(seed, pre_days + test_days))
    regions = tuple(world.cfg.regions)
    if not holdout and not {"north", "west"} < set(regions):
        raise fail(f"the world's regions are {regions}: pass --holdout")
    stats: dict = {}
    make_treated = _treated_factory(treated, world, bundle, users, oracle_policy, stats, policy_config)
    with Progress() as bar:
        task = bar.add_task("simulating days (experiment, then counterfactual)", total=2 * (pre_days + test_days))
        res = run_geo_experiment(
            world, make_treated, lambda: heuristic_policy(world, seed), list(holdout or ["north", "west"]),
            pre_days, test_days, requests_per_day, progress=_day_progress(bar, task),
        )  # fmt: skip
    table = res.table
    serving = stats.get("serving")
    if serving is not None:
        table = with_floor_row(with_cap_row(table, serving.ledger), serving.floors)
    label = (
        "our serving policy" if treated == "serving" else "ORACLE (reads the hidden truth: an upper bound)"
    )
    path = geo_report(
        res.panel, res.arms, res.start_day, res.did, out / "report.html", f"Simulated geo holdout: {label}",
        extra=[("Results table", table_html(table))],
    )  # fmt: skip
    res.panel.to_parquet(out / "panel.parquet")
    if serving is not None:
        typer.echo(f"serving path statistics (treated arm): {dict(serving)}")
    import datetime as dt
    import sys

    payload = {"command": " ".join(["checkout-recs", *sys.argv[1:]]), "measured_at": dt.datetime.now(dt.UTC).isoformat(),
               "treated_policy": treated, "world": world.cfg.model_dump(mode="json"),
               "pre_days": pre_days, "test_days": test_days, "true_uplift": res.true_uplift,
               "did": res.did.as_dict(), "did_realised": res.did_realised.as_dict(),
               "policy_config": _policy_config(policy_config) if treated == "serving" else None,
               "serving_stats": dict(serving or {}), "exploration_ledger": getattr(serving, "ledger", {}),
               "exposure_floors": getattr(serving, "floors", {}),
               "table": table.astype(str).to_dict(orient="records")}  # fmt: skip
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=str))
    if results is not None:
        write_results(results, payload)
    Console().print(table.to_string(index=False))
    typer.echo(f"report: {path}")


@experiment_app.command("world")
def world(
    out: Annotated[Path, typer.Option(help="Raw folder to write (the simulated logs of the whole run).")],
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 5,
    days: Annotated[int, typer.Option(help="Simulated days (pre-period + test period).")] = 28,
) -> None:
    """Simulate the world of `experiment simulate` (geo_world_config) and write its raw logs."""
    from checkout_recs.simulate.run import run_simulation
    from checkout_recs.studies.geo_experiment import geo_world_config

    summary = run_simulation(geo_world_config(seed, days), out)
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


def _policy_config(path: Path | None) -> dict:
    """The effective treated ``PolicyConfig`` (the file's, else the serving default) as JSON-ready dict."""
    from checkout_recs.policy.config import PolicyConfig

    cfg = PolicyConfig.model_validate_json(path.read_text()) if path else PolicyConfig()
    return cfg.model_dump(mode="json")


def _treated_factory(kind: str, world, bundle: Path | None, users: Path | None, oracle, stats: dict,  # noqa: ANN001, ANN202
                     policy_config: Path | None = None):
    if kind == "oracle":
        return lambda: oracle(world)
    if kind != "serving":
        raise fail("--treated must be 'serving' or 'oracle'")
    if bundle is None:
        raise fail("--bundle is required with --treated serving")
    from checkout_recs.policy.config import PolicyConfig
    from checkout_recs.studies.serving_policy import serving_policy

    cfg = PolicyConfig.model_validate_json(policy_config.read_text()) if policy_config else None

    def make():  # noqa: ANN202
        policy, counts = serving_policy(bundle, users, cfg=cfg, world=world)
        stats["serving"] = counts
        return policy

    return make


def ope_coverage(
    seeds: Annotated[int, typer.Option(help="Number of seeds.")] = 50,
    world: Annotated[
        str, typer.Option(help="'simulator' (the marketplace simulator) or 'standin' (small position-based world).")
    ] = "simulator",
    results: Annotated[Path, typer.Option(help="JSON file for the figures.")] = Path(
        "benchmarks/results/ope_coverage.json"
    ),
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report with plots here.")] = None,
) -> None:
    """Share of seeds whose 95% interval covers the true value, for every OPE estimator."""
    from rich.progress import Progress

    if world not in ("simulator", "standin"):
        raise fail("--world must be 'simulator' or 'standin'")
    with Progress() as bar:
        task = bar.add_task(f"seeds ({world})", total=seeds)
        if world == "simulator":
            from checkout_recs.studies.ope_sim_coverage import sim_coverage_study

            r = sim_coverage_study(n_seeds=seeds, progress=lambda d, n: bar.update(task, completed=d))
        else:
            from checkout_recs.studies.ope_coverage import coverage_study

            r = coverage_study(n_seeds=seeds)
            bar.update(task, completed=seeds)
    typer.echo(f"{world}: true value {r['truth']:.4f} clicks per request; {seeds} seeds")
    for name, cov in r["coverage"].items():
        flag = "ok" if cov >= 0.9 else "BELOW 90%"
        typer.echo(f"  {name:6s} coverage {cov:5.0%}  mean estimate {r['mean_estimate'][name]:.4f}  "
                   f"mean width {r['mean_width'][name]:.4f}  {flag}")  # fmt: skip
    write_results(results, {"world_kind": world, "command": f"checkout-recs ope-coverage --seeds {seeds} --world {world}", **r})
    if report is not None:
        from checkout_recs.studies.ope_sim_coverage import coverage_report

        typer.echo(f"report: {coverage_report(r, report)}")


def fairness(
    run: Annotated[
        Path, typer.Option(help="Run folder: raw/ (or ingested/validated/) tables, labels/ optional.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for fairness_report.html and fairness_summary.json.")],
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
