"""The project's two-stage model under the offline protocol.

Components, each z-scored per user: the two sequential baselines (``sequential.py``: SASRec
with full cross-entropy, gSASRec), each as the checkpoint ensemble of its own training run (the
mean of its last three checkpoints' standardised scores, ``sequential.snapshot_epochs``),
item-kNN with per-candidate neighbours, Markov-1 and EASE (``components.py``). The project
trains no network of its own: seed ``s`` of the project uses the runs of seed ``s`` of the
sequential baselines that its chosen blend weighs (``sequential_used``; a sequential baseline
with weight 0 in both blends is trained for its baseline row only, and the JSON's
``project.sequential_components`` says so).

* retrieval: ``z(sasrec_ce) + g·z(gsasrec) + k·z(item-kNN) + e·z(EASE)``; its top
  ``RETRIEVAL_K`` (300) items are the candidate set (HR@300 is the retrieval recall);
* ranking: inside those 300, ``z(sasrec_ce) + g'·z(gsasrec) + k'·z(item-kNN) + m·z(Markov-1)``;
  items outside keep their retrieval order below every candidate (``two_stage``).

Tuning, on the validation target only, with the validation scores of the sequential baselines'
chosen configurations (trained on train, tuning seed). EASE's λ is the one of ``EASE_LAMBDAS``
with the best validation HR@300 of EASE alone. For each item-kNN decay of ``KNN_DECAYS``: the
retrieval weights (``RETRIEVAL_GRID``) by validation HR@300, then the ranking weights
(``RANKING_GRID``) by validation NDCG@6 of the two stages, over every decay. Each choice follows
the one-standard-error rule (``one_se_pick``): among the points whose validation figure is
within one paired standard error (over users) of the best, the one with the least total weight
on components other than SASRec-CE (then the first in grid order). On MovieLens-100K one
validation NDCG@6 figure moves by ±0.005-0.008 between neighbouring blends, and the plain argmax
of a 36-point grid mostly picks that noise (docs/models.md). Nothing here depends on the data
set: the same grids run on any atomic-format data.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from checkout_recs.evaluation.next_item.components import (
    EASE_LAMBDAS,
    ease_component,
    knn_component,
    markov_component,
    zscore,
)
from checkout_recs.evaluation.next_item.paired import per_user
from checkout_recs.evaluation.next_item.protocol import Split, evaluate_with_ranks
from checkout_recs.evaluation.next_item.runner import tick

RETRIEVAL_K = 300
KNN_DECAYS = (0.7, 0.8, 0.9)
#: Weights of the retrieval blend (sasrec_ce's weight is 1).
RETRIEVAL_GRID: dict[str, tuple[float, ...]] = {
    "gsasrec": (0.0, 0.5, 1.0),
    "knn": (0.0, 0.25, 0.5, 1.0),
    "ease": (0.0, 0.5, 1.0),
}
#: Weights of the ranking blend inside the candidates (sasrec_ce's weight is 1).
RANKING_GRID: dict[str, tuple[float, ...]] = {
    "gsasrec": (0.0, 0.5, 1.0),
    "knn": (0.0, 0.25, 0.5, 1.0),
    "markov": (0.0, 0.25, 0.5),
}
#: ``--no-tune``: the choice ``evaluate-offline`` made on MovieLens-100K validation
#: (docs/models.md).
DEFAULT_CHOICE: dict[str, Any] = {
    "knn_decay": 0.7,
    "ease_lambda": 300.0,
    "retrieval": {"gsasrec": 0.0, "knn": 0.25, "ease": 0.5},
    "ranking": {"gsasrec": 0.0, "knn": 0.25, "markov": 0.0},
}

__all__ = [
    "RETRIEVAL_K",
    "KNN_DECAYS",
    "RETRIEVAL_GRID",
    "RANKING_GRID",
    "DEFAULT_CHOICE",
    "zscore",
    "two_stage",
    "blend",
    "project_scores",
    "one_se_pick",
    "tune_project",
    "pick_project",
    "sequential_used",
    "project_test",
]


def two_stage(
    retr: np.ndarray, rank: np.ndarray, seqs: list[np.ndarray], k: int = RETRIEVAL_K
) -> np.ndarray:
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


def blend(comp: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """``comp["sasrec_ce"] + Σ weights[c]·comp[c]`` over (U, I) components (0: skipped)."""
    out = comp["sasrec_ce"].astype(np.float32).copy()
    for name, w in weights.items():
        if w:
            out += np.float32(w) * comp[name]
    return out


def project_scores(
    comp: dict[str, np.ndarray], seqs: list[np.ndarray], choice: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """(retrieval scores, two-stage scores) (U, I) of ``choice`` from the z-scored (U, I)
    components ``sasrec_ce``, ``gsasrec``, ``knn``, ``markov``, ``ease``."""
    retr = blend(comp, choice["retrieval"])
    return retr, two_stage(retr, blend(comp, choice["ranking"]), seqs)


def one_se_pick(values: list[np.ndarray], complexity: list[float]) -> int:
    """The one-standard-error rule: ``values[j]`` (U,) per-user figures of point ``j``.

    The best point has the highest mean (first on a tie); the candidates are the points whose
    mean is within one standard error of the paired per-user difference from the best; the
    pick is the candidate with the least ``complexity`` (then the lowest index)."""
    means = [float(v.mean()) for v in values]
    best = max(range(len(values)), key=lambda j: (means[j], -j))
    n = len(values[best])

    def close(j: int) -> bool:
        se = float(np.std(values[best] - values[j])) / np.sqrt(max(1, n))
        return means[best] - means[j] <= se + 1e-12

    return min((j for j in range(len(values)) if close(j)), key=lambda j: (complexity[j], j))


def _points(grid: dict[str, tuple[float, ...]]) -> list[dict[str, float]]:
    return [dict(zip(grid, ws, strict=True)) for ws in itertools.product(*grid.values())]


def _components(
    split: Split, stage: str, seq: dict[str, np.ndarray], decay: float, lam: float
) -> dict[str, np.ndarray]:
    return {
        **seq,
        "knn": knn_component(split, stage, decay),
        "markov": markov_component(split, stage),
        "ease": ease_component(split, stage, lam),
    }


def _strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "untied"}


def tune_project(split: Split, seq_val: dict[str, np.ndarray], decay: float) -> dict:
    """Task: the project's weights at item-kNN ``decay`` on validation.

    ``seq_val``: z-scored validation scores (U, I) of ``sasrec_ce`` and ``gsasrec`` (their chosen
    configurations). EASE's λ by its own validation HR@300; the retrieval weights by
    ``one_se_pick`` on validation HR@300; then every ranking point's validation metrics and
    per-user NDCG@6 (``"ndcg_users"``, (U,), for ``pick_project``)."""
    seqs = split.fit_seqs("val")
    ease_hr = {
        lam: evaluate_with_ranks(split, "val", ease_component(split, "val", lam))[0]["hr@300"]
        for lam in EASE_LAMBDAS
    }
    lam = max(EASE_LAMBDAS, key=lambda x: (ease_hr[x], -EASE_LAMBDAS.index(x)))
    comp = _components(split, "val", seq_val, decay, lam)
    retr_points = _points(RETRIEVAL_GRID)
    retr_res = []
    for w in retr_points:
        retr_res.append(evaluate_with_ranks(split, "val", blend(comp, w)))
        tick()
    j = one_se_pick(
        [per_user(r, "hr@300") for _, r in retr_res], [sum(w.values()) for w in retr_points]
    )
    retr = blend(comp, retr_points[j])
    rows = []
    for w in _points(RANKING_GRID):
        res, ranks = evaluate_with_ranks(split, "val", two_stage(retr, blend(comp, w), seqs))
        rows.append({"weights": w, "val": _strip(res), "ndcg_users": per_user(ranks, "ndcg@6")})
        tick()
    return {
        "knn_decay": decay,
        "ease_lambda": lam,
        "ease_val_hr@300": ease_hr,
        "retrieval": retr_points[j],
        "retrieval_val": _strip(retr_res[j][0]),
        "retrieval_grid": [
            {"weights": w, "val_hr@300": r[0]["hr@300"]}
            for w, r in zip(retr_points, retr_res, strict=True)
        ],
        "ranking": rows,
    }


def tune_units() -> int:
    """Progress units of one ``tune_project`` task."""
    return len(_points(RETRIEVAL_GRID)) + len(_points(RANKING_GRID))


def pick_project(tuned: list[dict]) -> dict:
    """The choice over every decay's ``tune_project`` result by ``one_se_pick`` on validation
    NDCG@6 (complexity: the ranking's total weight off SASRec-CE), its validation metrics, the
    plain argmax for comparison, and a per-decay summary (JSON-ready: no per-user arrays)."""
    table = [(t, row) for t in tuned for row in t["ranking"]]
    j = one_se_pick(
        [row["ndcg_users"] for _, row in table], [sum(row["weights"].values()) for _, row in table]
    )
    best = max(range(len(table)), key=lambda i: (table[i][1]["val"]["ndcg@6"], -i))

    def choice(i: int) -> dict[str, Any]:
        t, row = table[i]
        return {
            "knn_decay": t["knn_decay"],
            "ease_lambda": t["ease_lambda"],
            "retrieval": t["retrieval"],
            "ranking": row["weights"],
        }

    return {
        "choice": choice(j),
        "val": table[j][1]["val"],
        "retrieval_val": table[j][0]["retrieval_val"],
        "argmax": {"choice": choice(best), "val_ndcg@6": table[best][1]["val"]["ndcg@6"]},
        "by_decay": [
            {
                "knn_decay": t["knn_decay"],
                "ease_lambda": t["ease_lambda"],
                "ease_val_hr@300": t["ease_val_hr@300"],
                "retrieval": t["retrieval"],
                "retrieval_val_hr@300": t["retrieval_val"]["hr@300"],
                "retrieval_grid": t["retrieval_grid"],
                "ranking_grid": [
                    {"weights": r["weights"], "val_ndcg@6": r["val"]["ndcg@6"]}
                    for r in t["ranking"]
                ],
            }
            for t in tuned
        ],
        "rule": "one standard error (paired, over users) of the best; least weight off SASRec-CE",
        "trials": len(table),
    }


def sequential_used(choice: dict[str, Any], names: tuple[str, ...] | list[str]) -> list[str]:
    """The sequential components of ``names`` that ``choice`` uses: SASRec-CE (weight 1 in both
    blends) and every other one with a non-zero weight in the retrieval or the ranking blend.
    A component outside it changes no score of the project (``blend`` skips zero weights): its
    runs are not passed to ``project_test`` nor counted in the project's seconds."""
    return [
        n
        for n in names
        if n == "sasrec_ce" or choice["retrieval"].get(n, 0.0) or choice["ranking"].get(n, 0.0)
    ]


def project_test(split: Split, choice: dict[str, Any], seq_test: dict[str, np.ndarray]) -> dict:
    """Task: test metrics and per-user target ranks (``ranks``, (U,)) of the project's retrieval
    and two stages, given one seed's z-scored test scores (U, I) of ``sasrec_ce`` and of every
    other sequential component that ``choice`` weighs (``sequential_used``)."""
    seqs = split.fit_seqs("test")
    comp = _components(split, "test", seq_test, choice["knn_decay"], choice["ease_lambda"])
    retr, final = project_scores(comp, seqs, choice)
    r_metrics, r_ranks = evaluate_with_ranks(split, "test", retr)
    f_metrics, f_ranks = evaluate_with_ranks(split, "test", final)
    tick()
    return {
        "retrieval": {**r_metrics, "ranks": r_ranks},
        "two_stage": {**f_metrics, "ranks": f_ranks},
    }
