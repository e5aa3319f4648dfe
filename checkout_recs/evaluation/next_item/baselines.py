"""Public baselines of the offline protocol: popularity, item-kNN, Markov-1, ALS, BPR.

Each is a small class with ``fit(seqs, n_items, seed) -> self`` and ``score(seqs) -> float32
(U, I)``; ``seqs`` are per-user item-index sequences, oldest first (``protocol.Split``).

``GRIDS`` holds each baseline's hyperparameter grid: the protocol says only that the table's
configurations were "chosen on the validation target from a small grid (best validation
NDCG@6)" and names the chosen points, not the grids; these grids contain every chosen point,
and on MovieLens-100K validation they choose it again (``tuning.tune_baselines``).
``make_baseline(name, params)`` builds one grid point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def user_item_matrix(seqs: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary (U, I) CSR matrix of the sequences."""
    rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    cols = np.concatenate(seqs) if seqs else np.empty(0, np.int64)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(seqs), n_items))
    m.data[:] = 1.0
    return m


class Popularity:
    """Score = the item's interaction count in the fit data."""

    def fit(self, seqs: list[np.ndarray], n_items: int, seed: int = 0) -> Popularity:
        self.counts = np.bincount(np.concatenate(seqs), minlength=n_items).astype(np.float32)
        return self

    def score(self, seqs: list[np.ndarray]) -> np.ndarray:
        return np.tile(self.counts, (len(seqs), 1))


class ItemKNN:
    """Cosine item-item similarity (top ``k`` neighbours), history weighted by recency.

    score(u, i) = Σ_j decay^(position of j from the end of u's sequence) · sim_k(j, i).
    ``truncate="row"`` keeps each history item's k nearest items (the public baseline; the
    protocol table's k=100, decay 0.5 reproduces its row within ±0.005 on every column but
    coverage@6, 0.426 against 0.433; decay 0.47 reproduces all five, docs/models.md); ``"col"``
    keeps, for each candidate item, its k nearest history items (a stronger variant used inside
    the project's model).
    """

    def __init__(self, k: int = 100, decay: float = 0.5, truncate: str = "row") -> None:
        if truncate not in ("row", "col"):
            raise ValueError("truncate must be 'row' or 'col'")
        self.k, self.decay, self.truncate = k, decay, truncate

    def fit(self, seqs: list[np.ndarray], n_items: int, seed: int = 0) -> ItemKNN:
        x = user_item_matrix(seqs, n_items)
        co = (x.T @ x).toarray().astype(np.float32)
        norm = np.sqrt(np.diag(co)).astype(np.float32)
        sim = co / np.maximum(np.outer(norm, norm), 1e-9)
        np.fill_diagonal(sim, 0.0)
        if self.k < n_items:
            axis = 1 if self.truncate == "row" else 0
            thresh = np.take(-np.partition(-sim, self.k - 1, axis=axis), [self.k - 1], axis=axis)
            sim = np.where(sim >= thresh, sim, 0.0)
        self.sim = sim.astype(np.float32)
        return self

    def weights(self, seqs: list[np.ndarray]) -> sp.csr_matrix:
        """(U, I) recency weights of each user's history."""
        rows, cols, vals = [], [], []
        for u, s in enumerate(seqs):
            rows.append(np.full(len(s), u))
            cols.append(s)
            vals.append(self.decay ** np.arange(len(s))[::-1])
        return sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(seqs), self.sim.shape[0]),
        )

    def score(self, seqs: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self.weights(seqs) @ self.sim, dtype=np.float32)


class Markov1:
    """score(u, i) = n(last → i) / n(i)^beta: the number of times ``i`` directly followed u's last
    item in the fit sequences, divided by ``i``'s interaction count to the power ``beta``.

    ``beta=0`` (the protocol table's choice) is the raw transition count. The protocol names
    ``beta`` without defining it; here it damps popular successors (1 = lift over popularity).
    """

    def __init__(self, beta: float = 0.0) -> None:
        self.beta = beta

    def fit(self, seqs: list[np.ndarray], n_items: int, seed: int = 0) -> Markov1:
        a = np.concatenate([s[:-1] for s in seqs])
        b = np.concatenate([s[1:] for s in seqs])
        self.trans = sp.csr_matrix((np.ones(len(a), np.float32), (a, b)), shape=(n_items, n_items))
        self.trans.sum_duplicates()
        if self.beta:
            counts = np.bincount(np.concatenate(seqs), minlength=n_items).astype(np.float64)
            self.trans = sp.csr_matrix(
                self.trans.multiply(np.maximum(counts, 1.0)[None, :] ** -self.beta)
            )
        return self

    def score(self, seqs: list[np.ndarray]) -> np.ndarray:
        last = np.array([s[-1] for s in seqs])
        return self.trans[last].toarray().astype(np.float32)


class ImplicitMF:
    """``implicit`` ALS or BPR on the binary user-item matrix (CPU, seeded)."""

    def __init__(self, kind: str = "als", factors: int = 128, **params: float) -> None:
        self.kind, self.factors, self.params = kind, factors, params

    def fit(self, seqs: list[np.ndarray], n_items: int, seed: int = 0) -> ImplicitMF:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        cls = AlternatingLeastSquares if self.kind == "als" else BayesianPersonalizedRanking
        self.model = cls(factors=self.factors, random_state=seed, **self.params)
        self.model.fit(user_item_matrix(seqs, n_items), show_progress=False)
        return self

    def score(self, seqs: list[np.ndarray]) -> np.ndarray:
        u = np.asarray(self.model.user_factors)
        v = np.asarray(self.model.item_factors)
        return (u[: len(seqs)] @ v.T).astype(np.float32)


#: name → list of hyperparameter points (``make_baseline``). The protocol table's choice for
#: MovieLens-100K is in each grid: item-kNN k=100, decay 0.5; Markov-1 beta=0; ALS 128 factors,
#: regularization 0.1, alpha 1, 15 iterations; BPR 128 factors, learning rate 0.01,
#: regularization 0.001, 100 iterations.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{}],
    "item_knn": [{"k": k, "decay": d} for k in (50, 100, 200) for d in (0.25, 0.5, 0.75, 1.0)],
    "markov1": [{"beta": b} for b in (0.0, 0.25, 0.5, 1.0)],
    "als": [
        {"factors": f, "regularization": r, "alpha": 1.0, "iterations": 15}
        for f in (64, 128)
        for r in (0.01, 0.1, 1.0)
    ],
    "bpr": [
        {"factors": 128, "learning_rate": lr, "regularization": r, "iterations": 100}
        for lr in (0.01, 0.05)
        for r in (0.001, 0.01)
    ],
}
#: Baselines whose fit depends on the seed (reported as mean ± s.d. over seeds).
STOCHASTIC = frozenset({"als", "bpr"})
#: Settings of ``implicit`` that are not hyperparameters: ALS on the float32 binary matrix with
#: the CG solver (the library's defaults); BPR verifies negative samples and runs on one thread
#: (its multi-threaded SGD is not reproducible run to run; the protocol states one thread).
#: ALS's result does not depend on its thread count; one thread suits the worker processes.
MF_FIXED: dict[str, dict[str, Any]] = {
    "als": {"num_threads": 1},
    "bpr": {"verify_negative_samples": True, "num_threads": 1},
}


def make_baseline(name: str, params: dict[str, Any]) -> Any:
    """One baseline at one grid point (``GRIDS[name]`` entry)."""
    if name == "popularity":
        return Popularity()
    if name == "item_knn":
        return ItemKNN(int(params["k"]), float(params["decay"]), "row")
    if name == "markov1":
        return Markov1(float(params.get("beta", 0.0)))
    if name in ("als", "bpr"):
        p = dict(params)
        return ImplicitMF(name, int(p.pop("factors")), **p, **MF_FIXED[name])
    raise ValueError(f"unknown baseline {name!r}")
