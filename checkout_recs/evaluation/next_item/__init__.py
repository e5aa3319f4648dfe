"""The shared next-item protocol (``../shared/protocols/offline-next-item.md``).

``protocol`` (split: leave-last-two-out, full catalogue; metrics), ``baselines`` (popularity,
item-kNN, Markov-1, ALS, BPR, and their grids), ``tuning`` (per-data-set tuning of the
baselines on validation, the tuning cache), ``project`` (the project's two-stage model:
SASRec-lite with early stopping, item-kNN, Markov-1), ``runner`` (worker processes, progress,
stage clock), ``evaluate`` (``evaluate-offline``: every model on one split, in one run).
"""

from __future__ import annotations

from checkout_recs.evaluation.next_item.baselines import (
    GRIDS,
    ImplicitMF,
    ItemKNN,
    Markov1,
    Popularity,
    make_baseline,
    user_item_matrix,
)
from checkout_recs.evaluation.next_item.evaluate import (
    PUBLISHED,
    PUBLISHED_SD,
    TOLERANCE,
    run_protocol,
    summary_table,
)
from checkout_recs.evaluation.next_item.project import (
    DEFAULT_CHOICE,
    RETRIEVAL_K,
    project_scores,
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
from checkout_recs.evaluation.next_item.tuning import TABLE_CHOICE, split_hash

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
    "GRIDS",
    "make_baseline",
    "TABLE_CHOICE",
    "split_hash",
    "RETRIEVAL_K",
    "PUBLISHED",
    "PUBLISHED_SD",
    "TOLERANCE",
    "DEFAULT_CHOICE",
    "zscore",
    "two_stage",
    "project_scores",
    "run_protocol",
    "summary_table",
]
