"""The protocol's published MovieLens-100K table, its tolerances, and the comparison with it."""

from __future__ import annotations

from typing import Any

from checkout_recs.evaluation.next_item.baselines import STOCHASTIC
from checkout_recs.evaluation.next_item.tuning import TABLE_CHOICE

#: The protocol's MovieLens-100K table (test): deterministic rows, and the five-seed mean of the
#: stochastic ones (ALS, BPR) at the table's configuration (``tuning.TABLE_CHOICE``).
PUBLISHED = {
    "popularity": {
        "hr@6": 0.036,
        "ndcg@6": 0.021,
        "hr@50": 0.143,
        "hr@300": 0.501,
        "coverage@6": 0.040,
    },
    "item_knn": {
        "hr@6": 0.102,
        "ndcg@6": 0.064,
        "hr@50": 0.371,
        "hr@300": 0.726,
        "coverage@6": 0.433,
    },
    "markov1": {
        "hr@6": 0.108,
        "ndcg@6": 0.069,
        "hr@50": 0.319,
        "hr@300": 0.591,
        "coverage@6": 0.463,
    },
    "als": {"hr@6": 0.054, "ndcg@6": 0.030, "hr@50": 0.279, "hr@300": 0.638, "coverage@6": 0.402},
    "bpr": {"hr@6": 0.066, "ndcg@6": 0.038, "hr@50": 0.308, "hr@300": 0.719, "coverage@6": 0.491},
}
#: The table's standard deviation over seeds 0-4 (stochastic rows).
PUBLISHED_SD = {
    "als": {"hr@6": 0.002, "ndcg@6": 0.001, "hr@50": 0.008, "hr@300": 0.006, "coverage@6": 0.003},
    "bpr": {"hr@6": 0.004, "ndcg@6": 0.003, "hr@50": 0.001, "hr@300": 0.004, "coverage@6": 0.006},
}
#: The protocol's reproduction tolerance: each figure of a deterministic row; the five-seed
#: mean of a stochastic row.
TOLERANCE = {"deterministic": 0.005, "stochastic": 0.01}
#: ``split_hash`` of MovieLens-100K: the published table applies to this split only.
ML100K_SPLIT_SHA256 = "8f8f56d55c848a8b4ae154b5eaa4270b349fb184d1f49cbd8f9e421c2c0d5fe9"


def versus_published(name: str, row: dict, choice: dict[str, Any]) -> dict:
    """``row`` (a test row of ``name``) against the published table: differences, the
    tolerance, whether the row used the table's configuration and whether it is within it."""
    pub = PUBLISHED[name]
    tol = TOLERANCE["stochastic" if name in STOCHASTIC else "deterministic"]
    diff = {k: row[k] - v for k, v in pub.items()}
    return {
        "published": pub,
        "diff": diff,
        "tolerance": tol,
        "table_configuration": choice == TABLE_CHOICE[name],
        "within_tolerance": all(abs(d) <= tol + 1e-9 for d in diff.values()),
    }
