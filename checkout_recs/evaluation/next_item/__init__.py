"""The shared next-item protocol (``../shared/protocols/offline-next-item.md``).

``protocol`` (split: leave-last-two-out, full catalogue; metrics), ``baselines`` (popularity,
item-kNN, Markov-1, ALS, BPR), ``evaluate`` (``evaluate-offline``: baselines and the project's
two-stage system on one split).
"""

from __future__ import annotations

from checkout_recs.evaluation.next_item.baselines import (
    ImplicitMF,
    ItemKNN,
    Markov1,
    Popularity,
    user_item_matrix,
)
from checkout_recs.evaluation.next_item.evaluate import (
    DEFAULT_CHOICE,
    PUBLISHED,
    RETRIEVAL_K,
    project_scores,
    run_baselines,
    run_project,
    run_protocol,
    summary_table,
    tune_project,
    two_stage,
    zscore,
)
from checkout_recs.evaluation.next_item.protocol import (
    KS,
    Split,
    evaluate_scores,
    fit_counts,
    metrics_from_ranks,
    rank_and_top,
    read_atomic,
    split_protocol,
)

__all__ = [
    "KS",
    "Split",
    "read_atomic",
    "split_protocol",
    "fit_counts",
    "rank_and_top",
    "metrics_from_ranks",
    "evaluate_scores",
    "user_item_matrix",
    "Popularity",
    "ItemKNN",
    "Markov1",
    "ImplicitMF",
    "RETRIEVAL_K",
    "PUBLISHED",
    "DEFAULT_CHOICE",
    "zscore",
    "two_stage",
    "project_scores",
    "tune_project",
    "run_baselines",
    "run_project",
    "run_protocol",
    "summary_table",
]
