"""The shared offline protocol: next item, leave-last-two-out, full catalogue.

Implements ``/work/shared/protocols/offline-next-item.md`` exactly:

* every interaction is a positive; per user sort by ``(timestamp, item_id)`` (integer ids),
  keep the first occurrence of a repeated (user, item), drop users with < 3 distinct items;
  last = test target, second-to-last = validation target, the rest = train;
* validation: fit on train, rank the catalogue minus the user's train items; test: refit on
  train + validation, rank the catalogue minus train + validation items; no sampling;
* ties: score desc, then the item's interaction count in the fit data desc, then item id asc;
* metrics: HR@{6,50,100,300}, NDCG@6, MRR@6, coverage@6, tail@6 (share of top-6 slots given
  to items with < 5 fit interactions); also on users whose test and validation timestamps
  differ ("untied").

Items are re-indexed 0..I-1 in ascending ``item_id`` so that "item id ascending" is "index
ascending". A model is any object with ``fit(seqs, n_items, seed)`` and
``score(seqs) -> float (n_users, n_items)`` where ``seqs`` are the fit sequences (item indices,
oldest first).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KS = (6, 50, 100, 300)


@dataclass
class Split:
    """One data set split by the protocol (item indices, users in a fixed order)."""

    item_ids: np.ndarray  # (I,) original item ids, ascending
    train: list[np.ndarray]  # per user, item indices, oldest first
    val: np.ndarray  # (U,) validation target item index
    test: np.ndarray  # (U,) test target item index
    tied: np.ndarray  # (U,) bool: test and validation share a timestamp

    @property
    def n_items(self) -> int:
        """Catalogue size."""
        return len(self.item_ids)

    def fit_seqs(self, stage: str) -> list[np.ndarray]:
        """Fit sequences: train for ``"val"``, train + validation target for ``"test"``."""
        if stage == "val":
            return self.train
        return [np.append(s, v) for s, v in zip(self.train, self.val, strict=True)]

    def targets(self, stage: str) -> np.ndarray:
        """Targets of ``stage`` ("val" or "test")."""
        return self.val if stage == "val" else self.test


def read_atomic(dataset: Path) -> pd.DataFrame:
    """Read the ``*.inter`` file of an atomic-format folder → ``user_id, item_id, timestamp``.

    Raises FileNotFoundError when the folder has no ``*.inter`` file.
    """
    dataset = Path(dataset)
    files = sorted(dataset.glob("*.inter")) if dataset.is_dir() else [dataset]
    if not files or not files[0].exists():
        raise FileNotFoundError(f"no *.inter file in {dataset}")
    df = pd.read_csv(files[0], sep="\t")
    df.columns = [c.split(":")[0] for c in df.columns]
    missing = {"user_id", "item_id", "timestamp"} - set(df.columns)
    if missing:
        raise ValueError(f"{files[0]} lacks columns {sorted(missing)}")
    return df[["user_id", "item_id", "timestamp"]].astype(
        {"item_id": np.int64, "timestamp": np.float64}
    )


def split_protocol(df: pd.DataFrame) -> Split:
    """Apply the protocol's split (see module docstring)."""
    item_ids = np.sort(df["item_id"].unique())  # the catalogue: every distinct item in the file
    df = df.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    df = df.drop_duplicates(["user_id", "item_id"], keep="first")
    n = df.groupby("user_id")["item_id"].transform("size")
    df = df[n >= 3]
    df = df.assign(item=np.searchsorted(item_ids, df["item_id"].to_numpy()))
    train, val, test, tied = [], [], [], []
    for _, g in df.groupby("user_id", sort=True):
        items, ts = g["item"].to_numpy(), g["timestamp"].to_numpy()
        train.append(items[:-2])
        val.append(items[-2])
        test.append(items[-1])
        tied.append(ts[-1] == ts[-2])
    return Split(item_ids, train, np.array(val), np.array(test), np.array(tied))


def fit_counts(seqs: list[np.ndarray], n_items: int) -> np.ndarray:
    """Interactions per item in the fit data, (I,) int64."""
    return (
        np.bincount(np.concatenate(seqs), minlength=n_items)
        if seqs
        else np.zeros(n_items, np.int64)
    )


def rank_and_top(
    scores: np.ndarray,
    seqs: list[np.ndarray],
    targets: np.ndarray,
    counts: np.ndarray,
    top: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each target (1-based) and each user's top-``top`` items under the tie rules.

    Parameters
    ----------
    scores : float (U, I); seqs : fit sequences (excluded items); targets : (U,) item indices;
    counts : (I,) fit interaction counts.

    Returns
    -------
    ranks : int64 (U,); tops : int64 (U, top) item indices.
    """
    n_users, n_items = scores.shape
    ranks = np.empty(n_users, np.int64)
    tops = np.empty((n_users, top), np.int64)
    idx = np.arange(n_items)
    for u in range(n_users):
        s = scores[u].astype(np.float64).copy()
        s[seqs[u]] = -np.inf
        t = targets[u]
        st, ct = s[t], counts[t]
        ahead = (s > st) | ((s == st) & ((counts > ct) | ((counts == ct) & (idx < t))))
        ahead[seqs[u]] = False
        ranks[u] = 1 + int(ahead.sum())
        cand = np.argpartition(-s, min(top + 50, n_items - 1))[: top + 50]
        order = np.lexsort((cand, -counts[cand], -s[cand]))
        tops[u] = cand[order[:top]]
    return ranks, tops


def metrics_from_ranks(
    ranks: np.ndarray, tops: np.ndarray, counts: np.ndarray, n_items: int
) -> dict[str, float]:
    """HR@K, NDCG@6, MRR@6, coverage@6, tail@6 (see module docstring)."""
    out = {f"hr@{k}": float((ranks <= k).mean()) for k in KS}
    out["ndcg@6"] = float(np.where(ranks <= 6, 1 / np.log2(ranks + 1), 0).mean())
    out["mrr@6"] = float(np.where(ranks <= 6, 1 / ranks, 0).mean())
    out["coverage@6"] = float(len(np.unique(tops)) / n_items)
    out["tail@6"] = float((counts[tops] < 5).mean())
    out["users"] = int(len(ranks))
    return out


def evaluate_with_ranks(split: Split, stage: str, scores: np.ndarray) -> tuple[dict, np.ndarray]:
    """Protocol metrics of ``scores`` (U, I) at ``stage``, overall and on untied users
    (``"untied"``), and every user's target rank (int64 (U,), 1-based: paired comparisons)."""
    seqs = split.fit_seqs(stage)
    counts = fit_counts(seqs, split.n_items)
    ranks, tops = rank_and_top(scores, seqs, split.targets(stage), counts)
    res: dict[str, Any] = dict(metrics_from_ranks(ranks, tops, counts, split.n_items))
    m = ~split.tied
    res["untied"] = metrics_from_ranks(ranks[m], tops[m], counts, split.n_items)
    return res, ranks


def evaluate_scores(split: Split, stage: str, scores: np.ndarray) -> dict:
    """Protocol metrics of ``scores`` (U, I) at ``stage``, overall and on untied users."""
    return evaluate_with_ranks(split, stage, scores)[0]
