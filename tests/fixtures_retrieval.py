"""Shared fixtures of the retrieval tests: a small synthetic catalogue with categories and regions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from checkout_recs.retrieval.index import RetrievalIndex
from checkout_recs.retrieval.index_build import IndexConfig


def synthetic_catalogue(
    n: int = 2000,
    d: int = 16,
    n_cat: int = 8,
    seed: int = 0,
    regions: tuple[str, ...] = ("eu", "us"),
) -> tuple[np.ndarray, pd.DataFrame]:
    """Unit vectors (n, d) float32 clustered by category, and the aligned snapshot frame.

    Snapshot columns: ``listing_id`` (1000 + row), ``category_id`` (row % n_cat), ``region``
    (cycling over ``regions`` in blocks of n_cat rows), ``age_days``, ``purchases_decayed``.
    """
    rng = np.random.default_rng(seed)
    cat = np.arange(n) % n_cat
    centres = rng.normal(size=(n_cat, d))
    emb = centres[cat] + 0.8 * rng.normal(size=(n, d))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    snap = pd.DataFrame(
        {
            "listing_id": np.arange(n, dtype=np.int64) + 1000,
            "category_id": cat.astype(np.int32),
            "region": np.asarray(regions)[(np.arange(n) // n_cat) % len(regions)],
            "age_days": rng.uniform(0, 60, n),
            "purchases_decayed": rng.poisson(2.0, n).astype(float),
        }
    )
    return emb, snap


def synthetic_index(
    n: int = 2000, d: int = 16, cfg: IndexConfig | None = None, **kw: object
) -> tuple[RetrievalIndex, np.ndarray, pd.DataFrame]:
    """``RetrievalIndex`` over ``synthetic_catalogue`` → (index, emb (n, d), snapshot)."""
    emb, snap = synthetic_catalogue(n, d, **kw)  # type: ignore[arg-type]
    return RetrievalIndex.from_embeddings(snap["listing_id"].to_numpy(), emb, snap, cfg), emb, snap


def brute_force(emb: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids (q, k) by inner product over float16-rounded ``emb`` (what the store holds)."""
    e = emb.astype(np.float16).astype(np.float32)
    sc = np.atleast_2d(q) @ e.T
    return ids[np.argsort(-sc, axis=1, kind="stable")[:, :k]]
