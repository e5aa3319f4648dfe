"""CLI: ``train``, ``build-index``, ``build-bundle``, ``evaluate``, ``register``, ``evaluate-offline``.

Heavy libraries (torch, faiss, mlflow) are imported inside the command bodies.
"""

# Imports of heavy libraries (torch, mlflow, feast, kserve, evidently, kfp, ...) and of the modules
# that load them stay inside the command bodies: `checkout-recs --help` imports every module of cli/,
# 1.8 s that way against ~30 s with them at the top (measured 2026-12-07, shared 2-core box).

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.common import EXIT_GATE_REFUSED, progress

console = Console()

TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI; unset: the run is not logged."
    ),
]


def train(
    training_set: Annotated[
        Path, typer.Option(help="Parquet of labelled impressions with features.")
    ],
    labels: Annotated[
        Path, typer.Option(help="Labels folder (interactions.parquet, co-purchase).")
    ],
    features: Annotated[Path, typer.Option(help="Features folder (listing/seller/user views).")],
    out: Annotated[
        Path, typer.Option(help="Output model folder (ranker/, two_tower/, metrics.json).")
    ],
    tracking_uri: TrackingUriOpt = None,
    seed: Annotated[int, typer.Option(help="Seed for both models.")] = 7,
    epochs: Annotated[int, typer.Option(help="Ranker epochs.")] = 6,
    architecture: Annotated[
        str, typer.Option(help="Ranker: shared_bottom or mmoe.")
    ] = "shared_bottom",
) -> None:
    """Train the multi-task ranker and the two-tower model."""
    from checkout_recs.models.ranker import RankerConfig
    from checkout_recs.models.train import TrainConfig, train_all
    from checkout_recs.models.two_tower import TwoTowerConfig

    cfg = TrainConfig(
        ranker=RankerConfig(seed=seed, epochs=epochs, architecture=architecture),
        two_tower=TwoTowerConfig(seed=seed),
        tracking_uri=tracking_uri,
        seed=seed,
    )
    with progress("train") as shown:
        summary = train_all(training_set, labels, features, out, cfg, progress=shown.stage)
    console.print_json(summary.model_dump_json())


def build_index_cmd(
    model: Annotated[Path, typer.Option(help="Model folder from `train` (holds two_tower/).")],
    features: Annotated[Path, typer.Option(help="Features folder (listing and seller views).")],
    out: Annotated[Path, typer.Option(help="Output index folder.")],
    labels: Annotated[
        Path | None, typer.Option(help="Labels folder, to find validated listings (titles).")
    ] = None,
    artifact_root: Annotated[
        str | None,
        typer.Option(
            envvar="CHECKOUT_RECS_ARTIFACT_ROOT",
            help="Artifact store root to publish the index to (kind 'index'); unset: not published.",
        ),
    ] = None,
) -> None:
    """Embed every listing and build the FAISS index + snapshot."""
    from checkout_recs.retrieval.index import build_index, publish_index

    with progress("build-index") as shown:
        shown.stage("embedding the listings a block at a time and building the index")
        manifest = build_index(model, features, out, labels_dir=labels)
        if artifact_root:
            shown.stage("publishing")
            uri = publish_index(out, artifact_root)
    console.print_json(manifest.model_dump_json())
    if artifact_root:
        console.print(f"published: {uri}")


def build_bundle_cmd(
    model: Annotated[
        Path, typer.Option(help="Model folder from `train` (ranker/, student/, two_tower/).")
    ],
    labels: Annotated[
        Path, typer.Option(help="Labels folder (co-purchase, interactions, category pairs).")
    ],
    features: Annotated[
        Path, typer.Option(help="Features folder (listing, seller, user, category_pair views).")
    ],
    out: Annotated[Path, typer.Option(help="Output bundle folder (what `serve --bundle` loads).")],
    run_id: Annotated[
        str | None,
        typer.Option(help="MLflow run id of the training (from `train`), kept in bundle.json."),
    ] = None,
) -> None:
    """Assemble a serving bundle: model, FAISS index + snapshot, candidate tables, user features."""
    from checkout_recs.serving.bundle_writer import assemble_bundle

    info = assemble_bundle(model, labels, features, out, mlflow_run_id=run_id)
    console.print_json(info.model_dump_json())


def evaluate(
    model: Annotated[Path, typer.Option(help="Model folder from `train`.")],
    test_set: Annotated[
        Path, typer.Option(help="Parquet of held-out labelled impressions with features.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder (metrics.json, report.html).")],
) -> None:
    """AUC per head, NDCG@6 and revenue proxy vs logged and popularity orders, per segment."""
    from checkout_recs.evaluation.ranking.offline import evaluate_run

    with progress("evaluate") as shown:
        result = evaluate_run(
            model, test_set, out, progress=lambda part: shown.stage(f"scoring {part}")
        )
    console.print_json(json.dumps(result["overall"], default=float))


def register_model(
    metrics: Annotated[
        Path, typer.Option(help="metrics.json of the challenger (from `evaluate`).")
    ],
    run_id: Annotated[str, typer.Option(help="MLflow run id of the challenger (from `train`).")],
    tracking_uri: Annotated[
        str, typer.Option(envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")
    ] = "sqlite:///artifacts/mlflow.db",
    tolerance: Annotated[
        float, typer.Option(help="Allowed relative loss per gated metric.")
    ] = 0.005,
) -> None:
    """Register a run; the gate marks it challenger (champion moves at `deploy promote`).

    Exit status 3 when the gate refuses the challenger; 1 when the registry or METRICS cannot be read."""
    from checkout_recs.tracking import promote_if_better

    data = json.loads(metrics.read_text())
    flat = data.get("overall", data)
    decision = promote_if_better(tracking_uri, run_id, flat, tolerance)
    console.print_json(decision.model_dump_json())
    if not decision.promote:
        raise typer.Exit(code=EXIT_GATE_REFUSED)


def evaluate_offline(
    dataset: Annotated[Path, typer.Option(help="Folder with an atomic-format *.inter file.")],
    out: Annotated[Path, typer.Option(help="Output JSON file.")],
    seeds: Annotated[int, typer.Option(help="Seeds for the stochastic models' spread.")] = 5,
    tune: Annotated[
        bool, typer.Option(help="Tune on validation (else the recorded choice).")
    ] = True,
    device: Annotated[str, typer.Option(help="torch device for SASRec: cpu or cuda.")] = "cpu",
    baselines_only: Annotated[
        bool, typer.Option(help="Only the public baselines (no project model).")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per CPU, at most 5).")
    ] = None,
    cache: Annotated[
        bool, typer.Option(help="Reuse tuning results cached for this data set and code.")
    ] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run the shared next-item protocol (leave-last-two-out, full catalogue) with baselines."""
    from checkout_recs.evaluation.next_item.evaluate import run_protocol

    result = run_protocol(
        dataset,
        out,
        n_seeds=seeds,
        tune=tune,
        device=device,
        project=not baselines_only,
        workers=workers,
        cache_dir=cache,
        progress=progress,
    )
    console.print_json(
        json.dumps(
            {"summary": result["summary"], "timing": result["timing"]["total"]}, default=float
        )
    )


def register(app: typer.Typer) -> None:
    """Attach the model commands to the ``checkout-recs`` app."""
    app.command("train")(train)
    app.command("build-index")(build_index_cmd)
    app.command("build-bundle")(build_bundle_cmd)
    app.command("evaluate")(evaluate)
    app.command("register")(register_model)
    app.command("evaluate-offline")(evaluate_offline)
