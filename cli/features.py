"""``checkout-recs features ...``: build feature tables, Feast apply/materialize, freshness, training set."""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import EXIT_RUNTIME, progress, usage_error

features_app = typer.Typer(
    help="Feature store: feature tables, Feast apply/materialize, freshness, training sets.",
    no_args_is_help=True,
)

FeaturesOpt = Annotated[
    str, typer.Option("--features", help="Features folder (or s3:// prefix) with <view>.parquet.")
]
WorkDirOpt = Annotated[
    Path,
    typer.Option(
        "--feast-work-dir",
        help="Feast work folder (rendered feature_store.yaml, "
        "embedded registry and SQLite online store).",
    ),
]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--feature-env",
        envvar="CHECKOUT_RECS_FEATURE_ENV",
        help="Feast environment: 'embedded' (SQLite) or 'production' (Redis + "
        "PostgreSQL registry); default: embedded.",
    ),
]
ProjectOpt = Annotated[str, typer.Option("--project", help="Feast project name.")]


def _when(value: str | None, option: str) -> dt.datetime | None:
    """``value`` of ``option`` as an aware datetime (naive means UTC); a usage error when not ISO 8601."""
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise usage_error(
            f"{option} {value!r} is not an ISO time (e.g. 2026-11-01T00:00:00+00:00)"
        ) from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _store(features: str, work_dir: Path, env: str | None, project: str):
    from checkout_recs.config import Settings
    from feature_repo.store import open_store

    settings = Settings.from_env()
    return open_store(
        env or settings.feature_env,
        features,
        work_dir,
        project=project,
        redis_url=settings.redis_url,
        s3_endpoint=settings.s3_endpoint_url,
    )


@features_app.command("build")
def build(
    validated: Annotated[Path, typer.Option(help="Ingested folder (or its validated/ subfolder).")],
    labels: Annotated[Path, typer.Option(help="Labels folder (output of the label stage).")],
    out: Annotated[Path, typer.Option(help="Output features folder.")],
) -> None:
    """Compute the user, listing, seller and category-pair feature tables (daily snapshots)."""
    from checkout_recs.features.build import build_feature_tables

    report = build_feature_tables(validated, labels, out)
    typer.echo(json.dumps(report, indent=2))


@features_app.command("apply")
def apply(
    features: FeaturesOpt,
    work_dir: WorkDirOpt = Path("artifacts/feast"),
    env: EnvOpt = None,
    project: ProjectOpt = "checkout_recs",
) -> None:
    """Register the entities and feature views with Feast (idempotent)."""
    names = _store(features, work_dir, env, project).apply()
    typer.echo(f"applied: {', '.join(names)}")


@features_app.command("materialize")
def materialize(
    features: FeaturesOpt,
    work_dir: WorkDirOpt = Path("artifacts/feast"),
    env: EnvOpt = None,
    project: ProjectOpt = "checkout_recs",
    start: Annotated[
        str | None,
        typer.Option(
            help="Window start, ISO time (UTC); default: incremental "
            "from the end of the last window."
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Window end, ISO time (UTC); default: now.")
    ] = None,
    view: Annotated[
        list[str] | None, typer.Option(help="Only this view (repeatable); default: all.")
    ] = None,
) -> None:
    """Load feature rows into the online store; the window is logged in materializations.jsonl."""
    from feature_repo.store import VIEWS

    unknown = sorted(set(view or ()) - set(VIEWS))
    if unknown:
        raise usage_error(f"unknown feature views {unknown}; known: {', '.join(VIEWS)}")
    lo, hi = _when(start, "--start"), _when(end, "--end") or dt.datetime.now(dt.UTC)
    with progress("features materialize") as shown:
        shown.stage("opening the feature store")
        store = _store(features, work_dir, env, project)
        records = store.materialize(
            lo, hi, views=view or None, progress=lambda v: shown.stage(f"view {v}")
        )
    typer.echo(json.dumps(records, indent=2))


@features_app.command("freshness")
def freshness(
    features: FeaturesOpt,
    work_dir: WorkDirOpt = Path("artifacts/feast"),
    env: EnvOpt = None,
    project: ProjectOpt = "checkout_recs",
    now: Annotated[
        str | None, typer.Option(help="Clock to judge by, ISO time (UTC); default: now.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the report as JSON here.")] = None,
) -> None:
    """Age of each view's newest online value against its SLA; exits 1 when an SLA is broken."""
    report = _store(features, work_dir, env, project).freshness(_when(now, "--now")).to_dict()
    text = json.dumps(report, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    typer.echo(text)
    if not report["ok"]:
        typer.echo(f"SLA broken for: {', '.join(report['broken'])}", err=True)
        raise typer.Exit(code=EXIT_RUNTIME)


@features_app.command("training-set")
def training_set(
    labels: Annotated[Path, typer.Option(help="Labels folder (impressions_labelled.parquet).")],
    features: FeaturesOpt,
    validated: Annotated[Path, typer.Option(help="Ingested folder (or its validated/ subfolder).")],
    out: Annotated[Path, typer.Option(help="Output parquet file.")],
    join: Annotated[
        str,
        typer.Option(
            help="'pandas' (point-in-time merge_asof) or 'feast' (get_historical_features)."
        ),
    ] = "pandas",
    work_dir: WorkDirOpt = Path("artifacts/feast"),
    env: EnvOpt = None,
    project: ProjectOpt = "checkout_recs",
) -> None:
    """Build the point-in-time training set: one row per labelled impression."""
    from dataclasses import asdict

    from checkout_recs.features.training import build_training_set

    if join not in ("pandas", "feast"):
        raise usage_error(f"--join must be 'pandas' or 'feast', got {join!r}")
    joiner = None
    if join == "feast":
        store = _store(features, work_dir, env, project)
        store.apply()
        joiner = store.training_join()
    report = build_training_set(labels, Path(features), validated, out, join=joiner)
    summary = {k: v for k, v in asdict(report).items() if k != "feature_columns"}
    typer.echo(json.dumps(summary, indent=2))


def register(app: typer.Typer) -> None:
    """Add the ``features`` command group to ``app``."""
    app.add_typer(features_app, name="features")
