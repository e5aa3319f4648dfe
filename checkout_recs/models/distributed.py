"""Data-parallel training helpers: which rank this process is, its shard of the data, and the
gradient average, shared by the ranker and the two-tower model.

Without a ``torch.distributed`` process group every function is the identity of one process
(rank 0 of 1), so the training code is the same in-process and under ``torchrun`` / a
``PyTorchJob`` (``checkout_recs.models.ddp``). Torch is imported lazily: the module is cheap to
import on the serving path.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pandas as pd


def distributed() -> bool:
    """Whether a ``torch.distributed`` process group is up (DDP training)."""
    import torch  # lazy: torch is optional on the serving path

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if not distributed():
        return 0, 1
    import torch  # lazy: torch is optional on the serving path

    return int(torch.distributed.get_rank()), int(torch.distributed.get_world_size())


def shard_requests(
    df: pd.DataFrame, rank: int | None = None, world: int | None = None
) -> pd.DataFrame:
    """The rows of ``df`` whose ``request_id`` hashes (CRC-32) to ``rank`` of ``world``: whole
    slates stay on one rank. Defaults: this process' rank and world; ``df`` itself when world is 1.
    Without a ``request_id`` column the row number is the key."""
    r, w = rank_world()
    world = w if world is None else world
    if world <= 1:
        return df
    return df[shard_mask(df, rank, world)]


def shard_mask(df: pd.DataFrame, rank: int | None = None, world: int | None = None) -> np.ndarray:
    """bool (n,): the rows of ``df`` that ``shard_requests`` keeps (all True when world is 1)."""
    r, w = rank_world()
    rank, world = (r if rank is None else rank), (w if world is None else world)
    if world <= 1:
        return np.ones(len(df), bool)
    key = (
        df["request_id"].astype(str)
        if "request_id" in df
        else pd.Series(np.arange(len(df)).astype(str))
    )
    h = np.fromiter((zlib.crc32(k.encode()) % world for k in key.to_numpy()), np.int64, len(key))
    return h == rank


def rank_slice(perm: np.ndarray) -> np.ndarray:
    """This rank's equal share of a permutation (n,) that every rank drew alike: elements
    ``rank, rank + world, ...``, cut to ``n // world`` so that every rank takes as many steps."""
    rank, world = rank_world()
    if world <= 1:
        return perm
    return perm[rank::world][: len(perm) // world]


def broadcast_parameters(module: Any) -> None:
    """Rank 0's parameters and buffers copied to every rank (a no-op in one process)."""
    if not distributed():
        return
    import torch  # lazy: torch is optional on the serving path

    for t in [*module.parameters(), *module.buffers()]:
        torch.distributed.broadcast(t.data, src=0)


def average_gradients(module: Any) -> None:
    """Every parameter's gradient replaced by its mean over the ranks (after ``backward``; a
    no-op in one process). Parameters without a gradient on this step count as zero."""
    if not distributed():
        return
    import torch  # lazy: torch is optional on the serving path

    _, world = rank_world()
    for p in module.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
        p.grad /= world
