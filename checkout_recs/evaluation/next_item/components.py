"""The non-sequential components of the project's model, each z-scored per user.

* ``knn_component``: item-kNN with per-candidate neighbours (``baselines.ItemKNN``,
  ``truncate="col"``), recency-weighted history;
* ``markov_component``: log(1 + Markov-1 transition counts) from the user's last item;
* ``ease_component``: EASE (Steck, 2019, "Embarrassingly Shallow Autoencoders for Sparse
  Data"): the item-item weights ``B = I − P·diag(1/diag(P))``, ``P = (XᵀX + λI)⁻¹``, zero
  diagonal, scores ``X·B``: a closed-form linear model of the whole history, a recall source
  that the sequential models (which see the last ``max_len`` items) do not cover.

Like ``ItemKNN``, EASE holds dense (I, I) matrices: catalogues up to a few tens of thousands of
items, as the protocol's data sets.
"""

from __future__ import annotations

import numpy as np

from checkout_recs.evaluation.next_item.baselines import ItemKNN, Markov1, user_item_matrix
from checkout_recs.evaluation.next_item.protocol import Split

#: EASE's L2 weights tried on validation (the component's own HR@300 picks one).
EASE_LAMBDAS = (100.0, 300.0, 1000.0)


def zscore(s: np.ndarray) -> np.ndarray:
    """Standardise each row of (U, I) scores (rows with zero spread become 0); float32."""
    s = s.astype(np.float64)
    sd = s.std(1, keepdims=True)
    return ((s - s.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def knn_component(split: Split, stage: str, decay: float) -> np.ndarray:
    """z(item-kNN with per-candidate neighbours, k=100) on ``stage``'s fit data; (U, I)."""
    seqs = split.fit_seqs(stage)
    return zscore(ItemKNN(100, decay, truncate="col").fit(seqs, split.n_items).score(seqs))


def markov_component(split: Split, stage: str) -> np.ndarray:
    """z(log(1 + Markov-1 counts)) on ``stage``'s fit data; (U, I)."""
    seqs = split.fit_seqs(stage)
    return zscore(np.log1p(Markov1().fit(seqs, split.n_items).score(seqs)))


def ease_scores(seqs: list[np.ndarray], n_items: int, lam: float) -> np.ndarray:
    """EASE scores (U, I) float32 of the binary user-item matrix of ``seqs``, L2 weight ``lam``."""
    x = user_item_matrix(seqs, n_items)
    g = np.asarray((x.T @ x).todense(), np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return np.asarray(x @ b, np.float32)


def ease_component(split: Split, stage: str, lam: float) -> np.ndarray:
    """z(EASE at ``lam``) on ``stage``'s fit data; (U, I)."""
    seqs = split.fit_seqs(stage)
    return zscore(ease_scores(seqs, split.n_items, lam))
