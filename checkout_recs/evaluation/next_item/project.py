"""The project's two-stage model under the offline protocol.

* retrieval: ``a·z(SASRec) + (1−a)·z(item-kNN, per-candidate neighbours)``; its top 300 are the
  candidate set (HR@300 is the retrieval recall);
* ranking: inside those 300, ``z(SASRec) + b·z(item-kNN) + c·z(Markov-1)``; items outside keep
  their retrieval order below every candidate.

``z`` standardises each user's score vector. Tuning, on the validation target only: for each
SASRec point of ``SASREC_GRID`` (dropout), SASRec is trained on train with early stopping on its
own validation NDCG@6 (a check every ``eval_every`` epochs, at most ``epochs``); the best epoch's
model is blended with item-kNN (decay in ``KNN_DECAYS``) and Markov-1, ``a`` chosen for
validation HR@300, then ``b, c`` for validation NDCG@6. The best (SASRec point, epoch count,
decay, a, b, c) by validation NDCG@6 is refit on train + validation for the chosen number of
epochs and evaluated on test once per seed.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from checkout_recs.evaluation.next_item.baselines import ItemKNN, Markov1
from checkout_recs.evaluation.next_item.protocol import Split, evaluate_scores
from checkout_recs.evaluation.next_item.runner import tick
from checkout_recs.models.sequence import SASRec, SASRecConfig

RETRIEVAL_K = 300
#: SASRec settings shared by every tuning point; ``epochs`` is the early-stopping ceiling.
SASREC_BASE: dict[str, Any] = {"dim": 64, "max_len": 50, "blocks": 2, "heads": 1, "batch_size": 64,
                               "lr": 2e-3, "epochs": 100, "eval_every": 5, "patience": 4}
SASREC_GRID: list[dict[str, Any]] = [{"dropout": 0.2}, {"dropout": 0.5}]
KNN_DECAYS = (0.6, 0.7, 0.8, 0.9)
A_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
BC_GRID = (0.0, 0.25, 0.5, 1.0)
#: ``--no-tune``: the choice that ``evaluate-offline`` made on MovieLens-100K validation
#: (docs/models.md); ``sasrec.epochs`` is the early-stopped epoch count.
DEFAULT_CHOICE: dict[str, Any] = {"sasrec": {**SASREC_BASE, "dropout": 0.2, "epochs": 30},
                                  "knn_decay": 0.6, "a": 0.5, "b": 1.0, "c": 0.25}


def zscore(s: np.ndarray) -> np.ndarray:
    """Standardise each row of (U, I) scores (rows with zero spread become 0)."""
    s = s.astype(np.float64)
    sd = s.std(1, keepdims=True)
    return ((s - s.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def two_stage(retr: np.ndarray, rank: np.ndarray, seqs: list[np.ndarray], k: int = RETRIEVAL_K) -> np.ndarray:
    """Scores whose order is: retrieval's top-k (excluding fit items) by ``rank``, then the rest by
    ``retr``. Both inputs (U, I); returns (U, I) float64."""
    r = retr.astype(np.float64).copy()
    k = min(k, r.shape[1])
    for u, s in enumerate(seqs):
        r[u, s] = -np.inf
    kth = -np.partition(-r, k - 1, axis=1)[:, k - 1 : k]
    in_top = r >= kth
    lo = np.nanmin(np.where(np.isfinite(rank), rank, np.nan))
    base = np.where(in_top, rank.astype(np.float64) - lo + 1.0, 0.0)
    rest = (r - np.nanmax(np.where(np.isfinite(r), r, np.nan))) / 1e3 - 1.0  # below every candidate
    return np.where(in_top, base, rest)


def project_scores(comp: dict, seqs: list[np.ndarray], a: float, b: float, c: float) -> tuple[np.ndarray, np.ndarray]:
    """(retrieval scores, two-stage scores) from the components ``sasrec``, ``knn``, ``markov``."""
    retr = a * comp["sasrec"] + (1 - a) * comp["knn"]
    rank = comp["sasrec"] + b * comp["knn"] + c * comp["markov"]
    return retr, two_stage(retr, rank, seqs)


def knn_component(split: Split, stage: str, decay: float) -> np.ndarray:
    """z(item-kNN with per-candidate neighbours) on ``stage``'s fit data."""
    seqs = split.fit_seqs(stage)
    return zscore(ItemKNN(100, decay, truncate="col").fit(seqs, split.n_items).score(seqs))


def markov_component(split: Split, stage: str) -> np.ndarray:
    """z(log(1 + Markov-1 counts)) on ``stage``'s fit data."""
    seqs = split.fit_seqs(stage)
    return zscore(np.log1p(Markov1().fit(seqs, split.n_items).score(seqs)))


def sasrec_config(params: dict[str, Any], device: str) -> SASRecConfig:
    """SASRecConfig from a choice's ``sasrec`` entry (unknown keys are an error)."""
    return SASRecConfig(**{**params, "device": device})


def blend_search(split: Split, comp: dict) -> tuple[dict[str, Any], int]:
    """Best (decay, a, b, c) on validation for SASRec scores ``comp["sasrec"]``; (best, trials)."""
    seqs = split.fit_seqs("val")
    markov = comp.get("markov")
    if markov is None:
        markov = markov_component(split, "val")
    best: dict[str, Any] = {"ndcg@6": -1.0}
    trials = 0
    for decay in KNN_DECAYS:
        c_ = {"sasrec": comp["sasrec"], "knn": knn_component(split, "val", decay), "markov": markov}
        a = _best_a(split, c_)
        for b, c in itertools.product(BC_GRID, BC_GRID):
            _, final = project_scores(c_, seqs, a, b, c)
            m = evaluate_scores(split, "val", final)
            trials += 1
            if m["ndcg@6"] > best["ndcg@6"]:
                best = {"knn_decay": decay, "a": a, "b": b, "c": c,
                        **{k: v for k, v in m.items() if k != "untied"}}
    return best, trials


def _best_a(split: Split, comp: dict) -> float:
    best_a, best_hr = 0.0, -1.0
    for a in A_GRID:
        m = evaluate_scores(split, "val", a * comp["sasrec"] + (1 - a) * comp["knn"])
        if m["hr@300"] > best_hr:
            best_a, best_hr = a, m["hr@300"]
    return best_a


def tune_sasrec_point(split: Split, params: dict[str, Any], device: str, seed: int = 0,
                      base: dict[str, Any] | None = None) -> dict:
    """Task: train SASRec at ``base | params`` (default base ``SASREC_BASE``) on train with early
    stopping on validation, then search the blend. Returns the point's best blend (with
    ``sasrec`` holding the chosen epoch count), the early-stopping history and the SASRec-alone
    validation metrics."""
    base = SASREC_BASE if base is None else base
    cfg = sasrec_config({**base, **params}, device)
    seqs = split.fit_seqs("val")

    def monitor(m: SASRec) -> float:
        return evaluate_scores(split, "val", m.score(seqs))["ndcg@6"]

    model = SASRec(cfg).fit(seqs, split.n_items, seed, monitor=monitor, on_epoch=lambda _: tick())
    tick(cfg.epochs - model.epochs_run)  # the epochs early stopping saved
    scores = model.score(seqs)
    alone = evaluate_scores(split, "val", scores)
    best, trials = blend_search(split, {"sasrec": zscore(scores)})
    choice = {"sasrec": {**base, **params, "epochs": model.best_epoch},
              **{k: best[k] for k in ("knn_decay", "a", "b", "c")}}
    return {"choice": choice, "val": {k: v for k, v in best.items() if k not in choice},
            "sasrec_alone_val": {k: v for k, v in alone.items() if k != "untied"},
            "history": model.history, "epochs_run": model.epochs_run, "best_epoch": model.best_epoch,
            "fit_seconds": model.fit_seconds, "trials": trials}


def pick_project(points: list[dict]) -> dict:
    """The tuning point with the best validation NDCG@6 (first on a tie)."""
    best = max(range(len(points)), key=lambda i: (points[i]["val"]["ndcg@6"], -i))
    return {"choice": points[best]["choice"], "val": points[best]["val"], "points": points,
            "trials": sum(p["trials"] for p in points)}


def refit_seed(split: Split, choice: dict, device: str, seed: int) -> dict:
    """Task: the chosen configuration refit on train + validation with ``seed``; test metrics of
    the retrieval stage and of the two stages."""
    seqs = split.fit_seqs("test")
    cfg = sasrec_config(choice["sasrec"], device)
    model = SASRec(cfg).fit(seqs, split.n_items, seed, on_epoch=lambda _: tick())
    comp = {"sasrec": zscore(model.score(seqs)), "knn": knn_component(split, "test", choice["knn_decay"]),
            "markov": markov_component(split, "test")}
    retr, final = project_scores(comp, seqs, choice["a"], choice["b"], choice["c"])
    return {"retrieval": evaluate_scores(split, "test", retr), "two_stage": evaluate_scores(split, "test", final),
            "sasrec_fit_seconds": model.fit_seconds}
