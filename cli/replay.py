"""Shadow mode / replay: ``checkout-recs replay`` runs a challenger bundle over the decision log.

Heavy libraries (torch via the ranker) are imported inside the command body.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail, progress, usage_error


def _bundle_path(uri: str) -> Path:
    """Local bundle folder of ``uri`` (a path or ``file://`` URI; other schemes are refused)."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" in uri:
        raise ValueError(f"only local bundles (path or file://) are supported, got {uri!r}")
    return Path(uri)


def replay_cmd(
    decisions: Annotated[
        Path, typer.Option(help="Decision log: artifact-store root, folder of parquet or a file.")
    ],
    bundle: Annotated[
        str, typer.Option(help="Challenger serving bundle: local folder or file:// URI.")
    ],
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Outcomes for OPE: labelled impressions or clicks parquet (file or folder)."
        ),
    ] = None,
    policy_config: Annotated[
        Path | None,
        typer.Option(help="Challenger PolicyConfig JSON; default: defaults with exploration off."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
    seed: Annotated[int, typer.Option(help="Exploration seed of the challenger.")] = 7,
) -> None:
    """Replay logged requests through a challenger: overlap with the logged six, OPE, latency."""
    import pandas as pd
    from pydantic import ValidationError

    from checkout_recs.evaluation.ranking.replay import ReplayInputError, read_decisions, replay
    from checkout_recs.policy.config import PolicyConfig

    try:
        bundle_dir = _bundle_path(bundle)
    except ValueError as exc:
        raise usage_error(f"--bundle: {exc}") from exc
    try:
        with progress("replay") as shown:
            shown.stage("reading the decision log")
            frame = read_decisions(decisions)
            lab = None
            if labels is not None:
                shown.stage("reading the labels")
                files = [labels] if labels.is_file() else sorted(labels.rglob("*.parquet"))
                if not files:
                    raise FileNotFoundError(f"no parquet under {labels}")
                lab = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
            cfg = (
                PolicyConfig.model_validate(json.loads(policy_config.read_text()))
                if policy_config
                else None
            )
            shown.stage(f"replaying {len(frame):,} requests")
            report = replay(
                frame,
                bundle_dir,
                labels=lab,
                cfg=cfg,
                seed=seed,
                progress=lambda done, total: shown.count(done, total, "requests"),
            )
    except (ReplayInputError, FileNotFoundError, ValidationError, ValueError) as exc:
        raise fail(str(exc)) from exc
    r = report
    typer.echo(
        f"replayed {r.n_replayed}/{r.n_logged} requests (skipped {r.n_skipped}: {r.skipped_reasons})"
    )
    typer.echo(
        f"overlap mean |A∩B|/6 = {r.mean_overlap:.3f}   identical six = {r.share_identical:.3f}"
    )
    typer.echo(f"latency p50 = {r.latency_p50_ms:.2f} ms   p95 = {r.latency_p95_ms:.2f} ms")
    if r.challenger_fallbacks:
        typer.echo(f"challenger fallbacks: {r.challenger_fallbacks}")
    for kind, v in (r.ope or {}).items():
        if isinstance(v, dict):
            typer.echo(
                f"OPE {kind}/request: logged {v['logged']:.4f}   challenger IIPS {v['iips']:.4f} "
                f"[{v['lower']:.4f}, {v['upper']:.4f}]"
            )
    for note in r.notes:
        typer.echo(f"note: {note}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r.to_dict(), indent=2, default=str))
        typer.echo(f"report written to {out}")


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the CLI."""
    app.command("replay")(replay_cmd)
