"""Distributed training of the ranker with torch DDP (gloo), the same code as ``train_ranker``.

Run on one machine with two processes::

    torchrun --nproc_per_node 2 -m checkout_recs.models.ddp \\
        --training-set runs/x/training_set.parquet --out runs/x/model_ddp

or as a Kubeflow ``PyTorchJob`` (``torchrun`` sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``).
Each rank trains on the requests whose hash falls in its shard; DDP averages gradients;
feature statistics are all-reduced; rank 0 writes the model (safetensors + config.json) and
``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd


def shard(df: pd.DataFrame, rank: int, world: int) -> pd.DataFrame:
    """The rows of ``df`` whose ``request_id`` (whole requests) hashes to ``rank`` of ``world``."""
    if world <= 1:
        return df
    key = (
        df["request_id"].astype(str)
        if "request_id" in df
        else pd.Series(np.arange(len(df)).astype(str))
    )
    h = np.array([zlib.crc32(k.encode()) % world for k in key.to_numpy()])
    return df[h == rank]


def build_parser() -> argparse.ArgumentParser:
    """Flags of the ``torchrun -m checkout_recs.models.ddp`` entry point (manifests/training)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--training-set", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=7)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun``; returns a process exit code."""
    import torch.distributed as dist  # lazy: torch is optional on the serving path (the transformer and numpy predictor run without it)

    from checkout_recs.models.ranker import (  # lazy: keeps torch out of this module's import
        RankerConfig,
        train_ranker,
    )
    from checkout_recs.models.train import (  # lazy: keeps scipy, torch out of this module's import
        ranker_metrics,
        split_by_time,
    )

    args = build_parser().parse_args(argv)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        df = pd.read_parquet(args.training_set)
        train, val = split_by_time(df, 0.2)
        model = train_ranker(
            shard(train, rank, world), RankerConfig(epochs=args.epochs, seed=args.seed)
        )
        if rank == 0:
            model.metrics.update(ranker_metrics(model, val))
            model.metrics["world_size"] = world
            model.save(args.out / "ranker")
            (args.out / "metrics.json").write_text(
                json.dumps(model.metrics, indent=2, default=float)
            )
            print(json.dumps(model.metrics, default=float))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
