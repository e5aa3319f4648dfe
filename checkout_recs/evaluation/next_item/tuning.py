"""Per-data-set tuning of the public baselines, and the cache of tuning results.

Every baseline is tuned on the validation target of the data set it runs on (the protocol:
"choose hyperparameters on the validation target only"): each point of its grid
(``baselines.GRIDS``) is fit on train and scored on validation; the point with the best
validation NDCG@6 is the choice (first in grid order on a tie). Stochastic baselines (ALS, BPR)
are tuned at seed 0, as the protocol's table was; their test rows are over ``n_seeds`` seeds.

Tuning results are cached as JSON, keyed by a hash of the split (the data set as the protocol
sees it) and a fingerprint of the code and grids that produced them; any change to either is a
miss. The cache folder is ``$CHECKOUT_RECS_CACHE/next-item`` (default ``~/.cache/checkout-recs``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import checkout_recs.evaluation.next_item.baselines as _baselines
import checkout_recs.evaluation.next_item.protocol as _protocol
from checkout_recs.evaluation.next_item.baselines import GRIDS, STOCHASTIC, make_baseline
from checkout_recs.evaluation.next_item.protocol import Split, evaluate_with_ranks
from checkout_recs.evaluation.next_item.runner import tick

#: The protocol table's configuration for MovieLens-100K (``--no-tune`` uses it on any data set).
TABLE_CHOICE: dict[str, dict[str, Any]] = {
    "popularity": {},
    "item_knn": {"k": 100, "decay": 0.5},
    "markov1": {"beta": 0.0},
    "als": {"factors": 128, "regularization": 0.1, "alpha": 1.0, "iterations": 15},
    "bpr": {"factors": 128, "learning_rate": 0.01, "regularization": 0.001, "iterations": 100},
}
#: Bump to invalidate every cached result.
CACHE_VERSION = 1


def split_hash(split: Split) -> str:
    """sha256 of the split: catalogue, every train sequence, targets and tie flags."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(split.item_ids, np.int64).tobytes())
    h.update(np.asarray([len(s) for s in split.train], np.int64).tobytes())
    for s in split.train:
        h.update(np.ascontiguousarray(s, np.int64).tobytes())
    for a in (split.val, split.test, split.tied.astype(np.int64)):
        h.update(np.ascontiguousarray(a, np.int64).tobytes())
    return h.hexdigest()


def code_fingerprint(*modules: Any, extra: Any = None) -> str:
    """sha256 of the modules' source, ``extra`` (grids, settings) and library versions."""
    import importlib.metadata as md

    h = hashlib.sha256(str(CACHE_VERSION).encode())
    for m in modules:
        h.update(inspect.getsource(m).encode())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for lib in ("numpy", "scipy", "implicit", "torch"):
        try:
            h.update(f"{lib}={md.version(lib)}".encode())
        except md.PackageNotFoundError:
            h.update(f"{lib}=absent".encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$CHECKOUT_RECS_CACHE/next-item``, default ``~/.cache/checkout-recs/next-item``."""
    root = os.environ.get("CHECKOUT_RECS_CACHE") or (Path.home() / ".cache" / "checkout-recs")
    return Path(root) / "next-item"


class Cache:
    """JSON files ``{kind}-{data hash}-{code fingerprint}.json`` in ``folder`` (None: disabled)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None

    def path(self, kind: str, data_key: str, code_key: str) -> Path | None:
        """Where ``kind``'s result for this data and code lives (None when disabled)."""
        if self.folder is None:
            return None
        return self.folder / f"{kind}-{data_key[:16]}-{code_key[:16]}.json"

    def get(self, kind: str, data_key: str, code_key: str) -> dict | None:
        """The cached result, or None (disabled, missing or unreadable)."""
        p = self.path(kind, data_key, code_key)
        if p is None or not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def get_arrays(self, kind: str, data_key: str, code_key: str) -> dict[str, np.ndarray] | None:
        """Arrays stored with ``put_arrays`` (an ``.npz`` beside the JSON), or None."""
        p = self.path(kind, data_key, code_key)
        if p is None or not p.with_suffix(".npz").exists():
            return None
        try:
            with np.load(p.with_suffix(".npz")) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None

    def put_arrays(
        self, kind: str, data_key: str, code_key: str, arrays: dict[str, np.ndarray]
    ) -> None:
        """Store ``arrays`` as an ``.npz`` beside ``kind``'s JSON (a failure only loses it)."""
        p = self.path(kind, data_key, code_key)
        if p is None:
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
            tmp.replace(p.with_suffix(".npz"))
        except OSError:
            pass

    def put(self, kind: str, data_key: str, code_key: str, value: dict) -> None:
        """Store ``value`` (atomically; a failure to write only loses the cache)."""
        p = self.path(kind, data_key, code_key)
        if p is None:
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(value, indent=1, default=float))
            tmp.replace(p)
        except OSError:
            pass


def baselines_fingerprint(names: list[str]) -> str:
    """Code fingerprint of the baselines' tuning (modules, grids of ``names``)."""
    import sys

    return code_fingerprint(
        _baselines, _protocol, sys.modules[__name__], extra={n: GRIDS[n] for n in names}
    )


def fit_score(split: Split, name: str, params: dict[str, Any], stage: str, seed: int) -> dict:
    """Task: fit baseline ``name`` at ``params`` on ``stage``'s fit data; its metrics there and
    ``ranks`` (int64 (U,), each user's target rank)."""
    seqs = split.fit_seqs(stage)
    model = make_baseline(name, params).fit(seqs, split.n_items, seed)
    res, ranks = evaluate_with_ranks(split, stage, model.score(seqs))
    tick()
    return {**res, "ranks": ranks}


def grid_tasks(names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every (baseline, grid point) to fit on validation; stochastic ones (slowest) first."""
    order = sorted(names, key=lambda n: n not in STOCHASTIC)
    return [(n, p) for n in order for p in GRIDS[n]]


def choose(
    names: list[str],
    points: list[tuple[str, dict[str, Any]]],
    results: list[dict],
    seconds: list[float],
) -> dict[str, dict[str, Any]]:
    """name → {choice, val (its validation metrics), grid (every point's validation NDCG@6 / HR@300)}."""
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        rows = [(p, r, s) for (m, p), r, s in zip(points, results, seconds, strict=True) if m == n]
        best = max(range(len(rows)), key=lambda i: (rows[i][1]["ndcg@6"], -i))
        p, r, _ = rows[best]
        out[n] = {
            "choice": p,
            "val": {k: v for k, v in r.items() if k not in ("untied", "ranks")},
            "grid": [
                {"params": q, "val_ndcg@6": x["ndcg@6"], "val_hr@300": x["hr@300"], "seconds": s}
                for q, x, s in rows
            ],
            "seed": 0 if n in STOCHASTIC else None,
        }
    return out
