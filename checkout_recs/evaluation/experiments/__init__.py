"""Online experiments: A/B assignment and analysis, geo holdouts by difference-in-differences,
the guardrails that stop a ramp, and their HTML reports.

``ab`` (assignment, per-arm lifts with delta-method and bootstrap intervals, power / MDE),
``did`` (difference-in-differences with a parallel-trends check), ``did_inference``
(permutation and placebo tests, HAC and clustered intervals, the regions' power table), ``guardrails`` (latency,
errors, fallback rate, GMV floor), ``report`` (HTML).
"""

from __future__ import annotations

from checkout_recs.evaluation.experiments.ab import (
    UNIT_COLUMNS,
    MetricResult,
    analyze_ab,
    assign_by_user_hash,
    compare_bootstrap,
    compare_delta,
    design_geo_holdout,
    hash_fraction,
    minimum_detectable_effect,
    required_units_per_arm,
    sessions_from_impressions,
    unit_totals,
)
from checkout_recs.evaluation.experiments.did import (
    DidResult,
    ParallelTrends,
    daily_arm_means,
    diff_in_diff,
    parallel_trends_check,
)
from checkout_recs.evaluation.experiments.guardrails import (
    Breach,
    GuardrailConfig,
    GuardrailDecision,
    GuardrailMetrics,
    evaluate_guardrails,
)
from checkout_recs.evaluation.experiments.report import ab_report, did_plots, geo_report, lift_plot

__all__ = [
    "UNIT_COLUMNS",
    "hash_fraction",
    "assign_by_user_hash",
    "design_geo_holdout",
    "sessions_from_impressions",
    "unit_totals",
    "MetricResult",
    "compare_delta",
    "compare_bootstrap",
    "analyze_ab",
    "minimum_detectable_effect",
    "required_units_per_arm",
    "ParallelTrends",
    "DidResult",
    "daily_arm_means",
    "parallel_trends_check",
    "diff_in_diff",
    "GuardrailConfig",
    "GuardrailMetrics",
    "Breach",
    "GuardrailDecision",
    "evaluate_guardrails",
    "lift_plot",
    "ab_report",
    "did_plots",
    "geo_report",
]
