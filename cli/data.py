"""Data commands: ``simulate``, ``ingest``, ``label`` and ``import movielens|obd``."""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import fail, usage_error

if TYPE_CHECKING:
    from checkout_recs.data.ingest import IngestReport


def simulate(
    out: Annotated[
        Path, typer.Option(help="Folder for the raw tables (one sub-folder per table).")
    ],
    seed: Annotated[int, typer.Option(help="Seed: one seed, identical files.")] = 7,
    listings: Annotated[int, typer.Option(help="Listings in the catalogue.")] = 5_000,
    users: Annotated[int, typer.Option(help="Buyers.")] = 2_000,
    sellers: Annotated[int, typer.Option(help="Sellers.")] = 500,
    days: Annotated[int, typer.Option(help="Simulated days.")] = 14,
    checkouts_per_day: Annotated[
        int, typer.Option(help="Checkouts (each one request) per day.")
    ] = 300,
    seasonality: Annotated[float, typer.Option(help="Seasonal drift strength, 0 = quiet.")] = 1.0,
    regions: Annotated[
        str, typer.Option(help="Comma-separated region codes.")
    ] = "north,south,east",
    epsilon: Annotated[
        float, typer.Option(help="Logged policy's share of uniformly random slates, (0, 1].")
    ] = 0.3,
    chunk_rows: Annotated[
        int, typer.Option(help="Listings per parquet part (memory bound for big catalogues).")
    ] = 500_000,
) -> None:
    """Simulate a marketplace with hidden ground truth and write its raw logs."""
    from rich import print as rprint

    from checkout_recs.simulate import SimConfig, run_simulation

    cfg = SimConfig(
        seed=seed,
        n_listings=listings,
        n_users=users,
        n_sellers=sellers,
        days=days,
        checkouts_per_day=checkouts_per_day,
        seasonality=seasonality,
        epsilon=epsilon,
        regions=tuple(r.strip() for r in regions.split(",") if r.strip()),
        chunk_rows=chunk_rows,
        progress=True,
    )
    summary = run_simulation(cfg, out)
    rprint({"seconds": summary.seconds, "rows": summary.rows, "out": str(out)})


def _parse_now(now: str | None) -> dt.datetime | None:
    """``--now`` as a datetime (naive means UTC); a usage error (exit 2) when it is not ISO 8601."""
    if not now:
        return None
    try:
        return dt.datetime.fromisoformat(now)
    except ValueError:
        raise usage_error(
            f"--now {now!r} is not an ISO time (e.g. 2026-11-01T00:00:00+00:00)"
        ) from None


def _print_ingest_notes(report: IngestReport) -> None:
    """One line per quarantined file, extra column and ignored file; then the file counts."""
    for table, r in report.tables.items():
        for q in r.quarantined_files:
            typer.echo(f"quarantined file {q.name}: {q.reason}: {q.detail}")
        for col, files in r.extra_columns.items():
            more = f" and {len(files) - 1} more" if len(files) > 1 else ""
            typer.echo(
                f"extra column {table}.{col} (not in the contract, not ingested) in {files[0]}{more}"
            )
        if r.ignored:
            typer.echo(f"ignored {len(r.ignored)} hidden file(s) of {table}, e.g. {r.ignored[0]}")
    n_in = sum(r.files_in for r in report.tables.values())
    typer.echo(
        f"files: {n_in} in, {n_in - report.files_quarantined} ingested, {report.files_quarantined} quarantined"
    )


def ingest_cmd(
    source: Annotated[
        str,
        typer.Argument(
            help="Raw folder or s3://bucket/prefix with a <table>/ folder of parquet files per table."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Ingested folder to publish (validated/, quarantine/, report).")
    ],
    now: Annotated[
        str | None, typer.Option(help="ISO time; later timestamps are quarantined (default: now).")
    ] = None,
    s3_endpoint_url: Annotated[
        str | None,
        typer.Option(
            envvar="AWS_ENDPOINT_URL_S3",
            help="S3-compatible endpoint for s3:// sources and the store.",
        ),
    ] = None,
    artifact_root: Annotated[
        str | None,
        typer.Option(
            envvar="CHECKOUT_RECS_ARTIFACT_ROOT",
            help="Artifact store root (folder or s3://) to publish the "
            "result to as kind 'ingested'; unset: not published.",
        ),
    ] = None,
) -> None:
    """Validate raw tables against the contract; quarantine bad rows, and unreadable files whole, with a reason.

    Exit status: 0 when the run completed (even with quarantined rows or files), 1 when the
    source cannot be read (missing folder, nothing under the s3 prefix, unreachable endpoint) or
    the output cannot be written, 2 for a bad option.
    """
    from rich import print as rprint

    from checkout_recs.data.ingest import SourceError, ingest

    when = _parse_now(now)
    try:
        report = ingest(source, out, when, s3_endpoint_url, progress=True)
    except (SourceError, OSError) as e:
        raise fail(str(e)) from None
    rprint({t: (r.read, r.accepted, r.quarantined, r.by_reason) for t, r in report.tables.items()})
    _print_ingest_notes(report)
    if artifact_root:
        from checkout_recs.storage import new_version, open_store

        uri = open_store(artifact_root, s3_endpoint_url).publish("ingested", new_version(), out)
        rprint({"published": uri})


def label(
    validated_dir: Annotated[
        Path, typer.Argument(help="Ingested folder (or its validated/ child).")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the label tables.")],
) -> None:
    """Build click/purchase labels, interactions, co-purchases and user sequences."""
    from rich import print as rprint

    from checkout_recs.data.labels import build_labels

    rprint(build_labels(validated_dir, out).model_dump())


import_app = typer.Typer(
    help="Import real data sets (from files on disk) for training and evaluation.",
    no_args_is_help=True,
)


@import_app.command("movielens")
def import_movielens(
    src: Annotated[
        Path,
        typer.Argument(
            help="Folder with <name>.inter/.item/.user atomic files (e.g. data/external/ml-100k)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output folder (published atomically).")],
    positive_rating: Annotated[
        float, typer.Option(help="Ratings >= this become kind=purchase, else click.")
    ] = 4.0,
) -> None:
    """Import MovieLens or any data set in RecBole's atomic-file format."""
    from rich import print as rprint

    from checkout_recs.data.importers import import_atomic

    rprint(import_atomic(src, out, positive_rating).model_dump())


@import_app.command("obd")
def import_obd_cmd(
    out: Annotated[Path, typer.Option(help="Output folder (published atomically).")],
    behavior_policy: Annotated[
        str, typer.Option(help="Logging policy of the sample: random or bts.")
    ] = "random",
    campaign: Annotated[str, typer.Option(help="Campaign: all, men or women.")] = "all",
) -> None:
    """Import the Open Bandit Dataset sample shipped in the installed obp package."""
    from rich import print as rprint

    from checkout_recs.data.importers import import_obd

    rprint(import_obd(out, behavior_policy, campaign).model_dump())


def register(app: typer.Typer) -> None:
    """Add the data commands to the ``checkout-recs`` app."""
    app.command("simulate")(simulate)
    app.command("ingest")(ingest_cmd)
    app.command("label")(label)
    app.add_typer(import_app, name="import")
