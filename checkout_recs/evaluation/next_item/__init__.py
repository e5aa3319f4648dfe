"""The shared next-item protocol (``../shared/protocols/offline-next-item.md``).

``protocol`` (split: leave-last-two-out, full catalogue; metrics), ``baselines`` (popularity,
item-kNN, Markov-1, ALS, BPR, and their grids), ``sequential`` (SASRec with full cross-entropy
and gSASRec, tuned with early stopping), ``tuning`` (per-data-set tuning of the baselines on
validation, the tuning cache), ``project`` (the project's two-stage model over the sequential
baselines, item-kNN and Markov-1), ``paired`` and ``report`` (per-user paired differences with
bootstrap intervals; the JSON rows), ``published`` (the protocol's MovieLens-100K table),
``runner`` (worker processes, progress, stage clock), ``evaluate`` (``evaluate-offline``:
every model on one split, in one run).
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
from checkout_recs.evaluation.next_item.evaluate import run_protocol
from checkout_recs.evaluation.next_item.paired import paired_difference
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
    evaluate_with_ranks,
    fit_counts,
    metrics_from_ranks,
    rank_and_top,
    read_atomic,
    split_protocol,
)
from checkout_recs.evaluation.next_item.published import PUBLISHED, PUBLISHED_SD, TOLERANCE
from checkout_recs.evaluation.next_item.report import summary_table
from checkout_recs.evaluation.next_item.sequential import SEQ_GRIDS, SEQ_NAMES
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
    "evaluate_with_ranks",
    "user_item_matrix",
    "Popularity",
    "ItemKNN",
    "Markov1",
    "ImplicitMF",
    "GRIDS",
    "make_baseline",
    "SEQ_NAMES",
    "SEQ_GRIDS",
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
    "paired_difference",
    "run_protocol",
    "summary_table",
]
