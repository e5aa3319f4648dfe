"""Offline ranking quality of a trained bundle.

``head_auc`` (per-head AUC beside logistic regression, per segment, paired intervals),
``offline`` (the pipeline's ``evaluate`` stage: NDCG@6, revenue proxy, per segment),
``replay`` (shadow mode: a challenger bundle over the decision log), ``report`` (the
simulator's ranker report, HTML).
"""

from __future__ import annotations

from checkout_recs.evaluation.ranking.head_auc import (
    attach_truth,
    expected_auc,
    head_auc_vs_logistic,
    logistic_baseline,
    numeric_column,
    paired_auc_bootstrap,
    truth_auc_vs_logistic,
)
from checkout_recs.evaluation.ranking.offline import (
    evaluate_run,
    evaluate_simulator,
    ranker_policy,
    ranking_metrics,
    slate_ndcg,
)
from checkout_recs.evaluation.ranking.replay import (
    ReplayInputError,
    ReplayReport,
    read_decisions,
    replay,
)
from checkout_recs.evaluation.ranking.report import (
    ablation_table,
    auc_table,
    cells,
    count_above,
    ranker_report_html,
    segments_report_html,
    truth_table,
)

__all__ = [
    "numeric_column",
    "logistic_baseline",
    "paired_auc_bootstrap",
    "expected_auc",
    "head_auc_vs_logistic",
    "attach_truth",
    "truth_auc_vs_logistic",
    "slate_ndcg",
    "ranking_metrics",
    "evaluate_run",
    "ranker_policy",
    "evaluate_simulator",
    "ReplayInputError",
    "ReplayReport",
    "read_decisions",
    "replay",
    "auc_table",
    "truth_table",
    "ablation_table",
    "cells",
    "count_above",
    "ranker_report_html",
    "segments_report_html",
]
