"""Distributed training of one training-pipeline stage with torch DDP (gloo): the stage's own code
(``train_ranker_stage`` or ``train_retrieval_stage``), each rank on its share of the data.

A job reads its input from the artifact store and publishes its output there (kind
``train-input`` / ``train-output``, version = the job's name; ``checkout_recs.deploy.training_job``
puts the input and fetches the output), so the pods need no shared volume::

    torchrun --nproc-per-node 2 -m checkout_recs.models.ddp \\
        --stage ranker --artifact_root s3://bucket --job train-20261207-1200

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` (a Kubeflow ``PyTorchJob`` sets its
``PET_*`` variables, which torchrun reads). Input layout: ``train_config.json`` (the
``TrainConfig`` the pipeline would train with in-process; defaults when absent) and, for
``ranker``, ``training_set.parquet``; for ``retrieval``, ``labels/`` and ``features/``. The ranker shards whole requests by hash
(``distributed.shard_requests``), feature statistics are all-reduced; the two-tower model takes
an equal share of every epoch's permutation; gradients are averaged. Rank 0 publishes the
stage's output folder, with ``world_size`` in its ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the models import torch: only at run time, inside the functions
    from checkout_recs.models.train import TrainConfig

STAGES = ("ranker", "retrieval")
INPUT_KIND, OUTPUT_KIND = "train-input", "train-output"
CONFIG_FILE = "train_config.json"


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``torchrun -m checkout_recs.models.ddp`` (manifests/training/pytorchjob.yaml)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stage", required=True, choices=STAGES, help="which stage to train")
    ap.add_argument("--artifact_root", required=True, help="artifact store (folder or s3://)")
    ap.add_argument("--job", required=True, help="version of the job's input and output")
    return ap


def load_config(input_dir: Path) -> TrainConfig:
    """The job's ``TrainConfig`` (``train_config.json`` of its input; defaults when absent)."""
    from checkout_recs.models.train import TrainConfig  # lazy: torch is heavy to import

    path = Path(input_dir) / CONFIG_FILE
    return TrainConfig.model_validate_json(path.read_text()) if path.exists() else TrainConfig()


def run_stage(stage: str, input_dir: Path, out_dir: Path, cfg: TrainConfig) -> dict:
    """Train ``stage`` from ``input_dir`` (the layout above) into ``out_dir``, as the in-process
    pipeline step does; the stage function's result (``version``, ``metrics``)."""
    from checkout_recs.models.train import (  # lazy: torch and the models are heavy to import
        train_ranker_stage,
        train_retrieval_stage,
    )

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if stage == "ranker":
        return train_ranker_stage(Path(input_dir) / "training_set.parquet", out_dir, cfg)
    return train_retrieval_stage(
        Path(input_dir) / "labels", Path(input_dir) / "features", out_dir, cfg
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun``; returns a process exit code."""
    import torch.distributed as dist  # lazy: torch is optional on the serving path

    from checkout_recs.storage import open_store

    args = build_parser().parse_args(argv)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    store = open_store(args.artifact_root)
    try:
        with tempfile.TemporaryDirectory(prefix=f"ddp-{rank}-") as tmp:
            inputs = store.fetch(INPUT_KIND, args.job, Path(tmp) / "input")
            out = Path(tmp) / "output"
            result = run_stage(args.stage, inputs, out, load_config(inputs))
            if rank == 0:
                metrics_path = out / "metrics.json"
                metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
                metrics[f"{args.stage}_world_size"] = world
                metrics_path.write_text(json.dumps(metrics, indent=2, default=float))
                (out / "stage.json").write_text(
                    json.dumps({"stage": args.stage, "version": result["version"]})
                )
                store.publish(OUTPUT_KIND, args.job, out)
                print(
                    json.dumps(
                        {"job": args.job, "world_size": world, **result["metrics"]}, default=float
                    )
                )
            dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
