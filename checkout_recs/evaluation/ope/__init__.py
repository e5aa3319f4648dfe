"""Off-policy evaluation: the value of a new policy from logs of an old one.

``estimators`` (one action per round: IPS, SNIPS, DM, DR), ``estimators_slate`` (the six-slot
page: independent and position-based IPS), ``heldout`` (a ranker's greedy policy on held-out
logged impressions). Every estimator has the same ``estimate`` / ``interval`` interface.
"""

from __future__ import annotations

from checkout_recs.evaluation.ope.estimators import (
    DirectMethod,
    DoublyRobust,
    Interval,
    InverseProbabilityWeighting,
    SelfNormalizedIPS,
    bootstrap_ratio_interval,
    tabular_reward_model,
)
from checkout_recs.evaluation.ope.estimators_slate import (
    IndependentIPS,
    PositionBasedIPS,
    estimate_examination,
)
from checkout_recs.evaluation.ope.heldout import REWARDS, greedy_ope, ranker_greedy_ope

__all__ = [
    "Interval",
    "bootstrap_ratio_interval",
    "InverseProbabilityWeighting",
    "SelfNormalizedIPS",
    "DirectMethod",
    "DoublyRobust",
    "tabular_reward_model",
    "IndependentIPS",
    "PositionBasedIPS",
    "estimate_examination",
    "REWARDS",
    "greedy_ope",
    "ranker_greedy_ope",
]
