"""Paired per-user comparisons of two models under the offline protocol.

Every model is evaluated on the same users, so the difference between two models is best read
per user: each user's metric (NDCG@6, or the HR@K indicator) is averaged over the seeds of each
model, the per-user differences are averaged over users, and a percentile bootstrap over users
(resampled with replacement, the same resamples for every comparison) gives the interval. The
per-seed noise of both models is inside the per-user values, so the interval covers the
difference of the two seed-means as a property of the user population, not of a fixed set of
users and seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Bootstrap resamples and the interval's coverage.
N_BOOT = 2000
LEVEL = 0.95


def per_user(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user value of ``metric`` ("ndcg@6", "hr@K", "mrr@6") from 1-based ranks; any leading
    axes (e.g. seeds) are kept: ranks (..., U) int → float64 (..., U)."""
    r = np.asarray(ranks, np.float64)
    if metric == "ndcg@6":
        return np.where(r <= 6, 1.0 / np.log2(r + 1.0), 0.0)
    if metric == "mrr@6":
        return np.where(r <= 6, 1.0 / r, 0.0)
    if metric.startswith("hr@"):
        return (r <= int(metric[3:])).astype(np.float64)
    raise ValueError(f"unknown metric {metric!r}")


def boot_indices(n_users: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n_users) user indices drawn with replacement (fixed ``seed``)."""
    return np.random.default_rng(seed).integers(0, n_users, (n_boot, n_users))


def paired_difference(
    ranks_a: np.ndarray,
    ranks_b: np.ndarray,
    metric: str,
    mask: np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean over users of (A − B) in ``metric`` and its bootstrap interval.

    ``ranks_a`` (S_a, U) and ``ranks_b`` (S_b, U): 1-based target ranks of each seed of model A
    and model B (a deterministic model: S = 1); ``mask`` (U,) bool keeps a subset of users (the
    untied ones). Returns ``{"a", "b", "diff", "lo", "hi", "p_le_0", "users"}``: the two means,
    their difference, the ``LEVEL`` percentile interval, and the share of resamples with a
    difference ≤ 0 (a one-sided bootstrap p-value for "A above B")."""
    a = per_user(np.atleast_2d(ranks_a), metric).mean(0)
    b = per_user(np.atleast_2d(ranks_b), metric).mean(0)
    if mask is not None:
        a, b = a[mask], b[mask]
    d = a - b
    boots = d[boot_indices(len(d), n_boot, seed)].mean(1)
    q = (1 - LEVEL) / 2
    return {
        "a": float(a.mean()),
        "b": float(b.mean()),
        "diff": float(d.mean()),
        "lo": float(np.quantile(boots, q)),
        "hi": float(np.quantile(boots, 1 - q)),
        "p_le_0": float((boots <= 0).mean()),
        "users": int(len(d)),
    }
