"""Measurement commands: drift reports and the drift flag, experiments, off-policy evaluation,
fairness. Heavy libraries (evidently, redis, matplotlib) are imported inside command bodies.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import EXIT_RUNTIME, fail, write_results

RedisUrl = Annotated[
    str | None,
    typer.Option(
        envvar="CHECKOUT_RECS_REDIS_URL",
        help="Redis URL of the drift flag; default: the loopback Redis.",
    ),
]
MetricsTextfile = Annotated[
    Path | None,
    typer.Option(
        help="Also write the run's figures (drift_metrics.prom, Prometheus text format) here, e.g. a "
        "node-exporter textfile-collector folder; OUT always gets one."
    ),
]


def drift(
    reference: Annotated[
        Path, typer.Option(help="Reference table: a parquet file or a folder of parquet.")
    ],
    current: Annotated[
        Path, typer.Option(help="Current table: a parquet file or a folder of parquet.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for drift_report.html and drift_summary.json.")],
    columns: Annotated[
        list[str] | None,
        typer.Option(help="Column to compare (repeat the option); default: all comparable."),
    ] = None,
    thresholds: Annotated[
        Path | None, typer.Option(help="Thresholds YAML; default monitoring/thresholds.yaml.")
    ] = None,
    set_flag: Annotated[
        bool, typer.Option(help="When drift is detected, set the drift flag serving reads (Redis).")
    ] = False,
    redis_url: RedisUrl = None,
    who: Annotated[str, typer.Option(help="Who sets the flag (with --set-flag).")] = "drift-cli",
    metrics_textfile: MetricsTextfile = None,
    fail_on_drift: Annotated[
        bool,
        typer.Option(help="Exit 1 when drift is detected (default: exit 0 whatever the verdict)."),
    ] = False,
) -> None:
    """Compare CURRENT with REFERENCE (Evidently); print the verdict. Exit 1 on drift only with --fail-on-drift.

    Exit status: 0 after a report, whatever the verdict; with --fail-on-drift, 1 when drift is
    detected (the report and the flag are written first); 1 when an input cannot be read."""
    from pydantic import ValidationError

    from monitoring.drift import DriftInputError, drift_report
    from monitoring.thresholds import load_thresholds

    try:
        t = load_thresholds(thresholds)
        summary = drift_report(reference, current, out, thresholds=t, columns=columns or None)
    except (DriftInputError, FileNotFoundError, ValidationError) as exc:
        raise fail(str(exc)) from exc
    print_drift_summary(summary)
    _write_metrics(summary, out, metrics_textfile)
    if set_flag and summary.drift_detected:
        from monitoring.flag import DriftFlagUnavailable, redis_client, set_drift_flag

        try:
            set_drift_flag(
                redis_client(redis_url), who=who, why=summary.reason, report=summary.report_html
            )
        except DriftFlagUnavailable as exc:
            raise fail(f"drift detected but the flag could not be set: {exc}") from exc
        typer.echo("drift flag set")
    if fail_on_drift and summary.drift_detected:
        raise typer.Exit(code=EXIT_RUNTIME)


def _write_metrics(summary, out: Path, textfile: Path | None) -> None:  # noqa: ANN001 - a drift summary
    """The run's figures as Prometheus metrics: ``OUT/drift_metrics.prom``, and ``textfile`` if given."""
    from monitoring.drift_metrics import TEXTFILE_NAME, write_drift_metrics

    for path in (out / TEXTFILE_NAME, textfile):
        if path is not None:
            typer.echo(f"metrics: {write_drift_metrics(summary, path)}")


def print_drift_summary(summary) -> None:  # noqa: ANN001 - DriftSummary, imported lazily
    """Print a DriftSummary as a rich table followed by the verdict line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Drift: {summary.current_rows} current vs {summary.reference_rows} reference rows"
    )
    for name in ("column", "kind", "method", "score", "threshold", "drifted"):
        table.add_column(name, justify="right" if name in ("score", "threshold") else "left")
    for c in summary.columns:
        table.add_row(
            c.column,
            c.kind,
            c.method,
            f"{c.score:.4f}",
            f"{c.threshold:g}",
            "[red]yes[/]" if c.drifted else "no",
        )
    console = Console()
    console.print(table)
    colour = "red" if summary.drift_detected else "green"
    verdict = "DRIFT" if summary.drift_detected else "no drift"
    console.print(f"[bold {colour}]{verdict}[/]: {summary.reason}")
    console.print(f"report: {summary.report_html}")


def monitor(
    reference: Annotated[
        Path,
        typer.Option(
            help="Training-reference run folder (raw/ or ingested/validated/ tables; labels/ optional)."
        ),
    ],
    current: Annotated[
        Path,
        typer.Option(
            help="Served-traffic run folder (same layout; the decision log's impressions)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Folder for features/, scores/, index.html and traffic_summary.json."),
    ],
    reference_days: Annotated[
        float | None, typer.Option(help="Keep only the LAST this many days of the reference.")
    ] = None,
    current_days: Annotated[
        float | None, typer.Option(help="Keep only the LAST this many days of the current.")
    ] = None,
    decisions: Annotated[
        Path | None,
        typer.Option(help="Decision-log folder: served slots (with scores) for the current side."),
    ] = None,
    set_flag: Annotated[
        bool, typer.Option(help="Set the drift flag when drift is confirmed.")
    ] = False,
    redis_url: RedisUrl = None,
    who: Annotated[
        str, typer.Option(help="Who sets the flag (with --set-flag).")
    ] = "monitoring-job",
    metrics_textfile: MetricsTextfile = None,
) -> None:
    """Served traffic vs training reference: feature, score and outcome drift; optionally set the flag."""
    from monitoring.drift import DriftInputError
    from monitoring.flag import DriftFlagUnavailable, redis_client
    from monitoring.simcheck import load_traffic
    from monitoring.traffic import monitor_and_flag, traffic_drift

    try:
        ref, cur = (
            _last_days(load_traffic(reference), reference_days),
            _last_days(load_traffic(current, decisions), current_days),
        )
        summary = traffic_drift(ref, cur, out)
    except (DriftInputError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    for name, section in (("features", summary.features), ("scores", summary.scores)):
        if section is not None:
            typer.echo(f"--- {name}")
            print_drift_summary(section)
    for o in summary.outcomes:
        typer.echo(
            f"outcome {o.metric}: {o.reference:.4f} -> {o.current:.4f} ({o.relative_change:+.1%}) drift={o.drifted}"
        )
    typer.echo(
        ("DRIFT CONFIRMED: " + "; ".join(summary.reasons))
        if summary.confirmed
        else "no drift confirmed"
    )
    typer.echo(f"report: {out / 'index.html'}")
    _write_metrics(summary, out, metrics_textfile)
    if set_flag:
        try:
            if monitor_and_flag(summary, redis_client(redis_url), who=who):
                typer.echo("drift flag set: serving falls back until it is cleared")
        except DriftFlagUnavailable as exc:
            raise fail(f"drift confirmed but the flag could not be set: {exc}") from exc


def _last_days(df, days: float | None):  # noqa: ANN001, ANN202 - pandas imported lazily
    if days is None or df.empty:
        return df
    import pandas as pd

    return df[df["event_timestamp"] >= df["event_timestamp"].max() - pd.Timedelta(days=days)]


def drift_check(
    seeds: Annotated[
        int, typer.Option(help="Number of seeds (0..N-1); each simulates two 21-day worlds.")
    ] = 5,
    out: Annotated[
        Path | None, typer.Option(help="Keep the reports here (default: a temporary folder).")
    ] = None,
    results: Annotated[Path, typer.Option(help="JSON file for the figures.")] = Path(
        "benchmarks/results/drift_check.json"
    ),
) -> None:
    """Detection rate on the simulator's seasonal shift and false-alarm rate on quiet weeks."""
    from monitoring.simcheck import false_alarm_study

    def progress(seed: int, seasonal: bool, quiet: bool) -> None:
        typer.echo(
            f"seed {seed + 1}/{seeds}: seasonal confirmed={seasonal}  quiet confirmed={quiet}"
        )

    r = false_alarm_study(list(range(seeds)), out, on_seed=progress)
    typer.echo(
        f"detection rate {r.detection_rate:.0%} over {seeds} seeds; false-alarm rate {r.false_alarm_rate:.0%}"
    )
    write_results(results, r.model_dump())


flag_app = typer.Typer(help="Set, clear or show the drift flag that sends serving to the fallback.")

FlagKey = Annotated[str, typer.Option(help="Redis key of the flag.")]


@flag_app.command("set")
def flag_set(
    who: Annotated[str, typer.Option(help="Your name or the job's name.")],
    why: Annotated[str, typer.Option(help="Why serving must fall back (one line).")],
    report: Annotated[str | None, typer.Option(help="Path or URI of the drift report.")] = None,
    redis_url: RedisUrl = None,
    key: FlagKey = "checkout_recs:drift_flag",
) -> None:
    """Set the drift flag: serving answers with the deterministic fallback until it is cleared."""
    from monitoring.flag import DriftFlagUnavailable, redis_client, set_drift_flag

    try:
        flag = set_drift_flag(redis_client(redis_url), who=who, why=why, report=report, key=key)
    except DriftFlagUnavailable as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"drift flag set: {flag.model_dump_json()}")


@flag_app.command("clear")
def flag_clear(
    who: Annotated[str, typer.Option(help="Your name, or the retrain job's name.")],
    why: Annotated[str, typer.Option(help="Why it is safe to resume (e.g. 'retrained on v42').")],
    redis_url: RedisUrl = None,
    key: FlagKey = "checkout_recs:drift_flag",
) -> None:
    """Clear the drift flag: serving returns to the ranker."""
    from monitoring.flag import DriftFlagUnavailable, clear_drift_flag, redis_client

    try:
        previous = clear_drift_flag(redis_client(redis_url), who=who, why=why, key=key)
    except DriftFlagUnavailable as exc:
        raise fail(str(exc)) from exc
    typer.echo("drift flag cleared" if previous else "drift flag was not set")


@flag_app.command("show")
def flag_show(redis_url: RedisUrl = None, key: FlagKey = "checkout_recs:drift_flag") -> None:
    """Show the drift flag and its recent history."""
    from rich.console import Console
    from rich.table import Table

    from monitoring.flag import DriftFlagUnavailable, flag_history, read_drift_flag, redis_client

    try:
        client = redis_client(redis_url)
        flag, history = read_drift_flag(client, key), flag_history(client, key)
    except DriftFlagUnavailable as exc:
        raise fail(str(exc)) from exc
    console = Console()
    if flag is None:
        console.print("[green]drift flag: clear[/]")
    else:
        console.print(f"[bold red]drift flag: SET[/] by {flag.who} at {flag.when}: {flag.why}")
        if flag.report:
            console.print(f"report: {flag.report}")
    table = Table(title="history (newest first)")
    for name in ("when", "action", "who", "why"):
        table.add_column(name)
    for e in history:
        table.add_row(e.when, e.action, e.who, e.why)
    console.print(table)


def drift_exporter(
    artifact_root: Annotated[
        str,
        typer.Option(
            envvar="CHECKOUT_RECS_ARTIFACT_ROOT",
            help="Artifact store root the monitoring job publishes to (folder or s3://); kind drift is read.",
        ),
    ],
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 in a pod).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of /metrics.")] = 9109,
    refresh_s: Annotated[float, typer.Option(help="Seconds between reads of the store.")] = 60.0,
    s3_endpoint_url: Annotated[
        str | None,
        typer.Option(envvar="AWS_ENDPOINT_URL_S3", help="S3-compatible endpoint of the store."),
    ] = None,
) -> None:
    """Serve the newest published drift figures on /metrics for Prometheus; Ctrl-C stops."""
    from checkout_recs.storage import open_store
    from monitoring.exporter import serve

    typer.echo(f"drift metrics of {artifact_root} on http://{host}:{port}/metrics")
    serve(open_store(artifact_root, s3_endpoint_url), host, port, refresh_s)


def register(app: typer.Typer) -> None:
    """Register the measurement commands on the ``checkout-recs`` app."""
    app.command("drift")(drift)
    app.command("monitor")(monitor)
    app.command("drift-exporter")(drift_exporter)
    app.command("drift-check")(drift_check)
    app.add_typer(flag_app, name="drift-flag")
