"""Small metric helpers shared by training, evaluation and benchmarks (numpy only)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of binary labels ``y`` (n,) against ``score`` (n,); ties count half.

    Returns NaN when ``y`` holds a single class (AUC undefined).
    """
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(np.asarray(score, dtype=np.float64))
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def recall_at_k(retrieved: np.ndarray, truth: np.ndarray) -> float:
    """Share of rows whose ``truth`` id (q,) appears in ``retrieved`` (q, k)."""
    if len(truth) == 0:
        return float("nan")
    return float((retrieved == np.asarray(truth)[:, None]).any(1).mean())


def overlap_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean |approx_i ∩ exact_i| / |exact_i| over rows; both (q, k) id arrays (-1 ignored)."""
    vals = []
    for a, e in zip(approx, exact, strict=True):
        e = e[e >= 0]
        if len(e):
            vals.append(len(np.intersect1d(a, e)) / len(e))
    return float(np.mean(vals)) if vals else float("nan")
