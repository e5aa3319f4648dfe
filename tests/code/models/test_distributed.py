"""Data-parallel helpers: whole slates per rank, equal shares of a permutation, and identities in
one process (no process group)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from checkout_recs.models.distributed import (
    average_gradients,
    broadcast_parameters,
    rank_slice,
    rank_world,
    shard_requests,
)


def _slates(n_requests: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(n_requests), 6).astype(str),
            "slot": np.tile(range(6), n_requests),
        }
    )


def test_shards_partition_whole_requests():
    f = _slates()
    parts = [shard_requests(f, r, 3) for r in range(3)]
    assert sum(len(p) for p in parts) == len(f)
    assert all(
        not set(parts[i]["request_id"]) & set(parts[j]["request_id"])
        for i in range(3)
        for j in range(i)
    )
    assert all(len(p) % 6 == 0 and len(p) > 0 for p in parts)  # whole slates, none empty


def test_one_process_is_rank_0_of_1_and_everything_is_the_identity():
    f = _slates(10)
    assert rank_world() == (0, 1)
    assert shard_requests(f) is f
    perm = np.random.default_rng(0).permutation(11)
    assert rank_slice(perm) is perm
    net = torch.nn.Linear(3, 2)
    net(torch.ones(4, 3)).sum().backward()
    before = [p.grad.clone() for p in net.parameters()]
    broadcast_parameters(net)
    average_gradients(net)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, net.parameters(), strict=True))
