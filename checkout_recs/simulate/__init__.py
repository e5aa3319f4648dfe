"""Marketplace simulator with ground-truth click and purchase probabilities.

* ``run_simulation(cfg, out_dir)`` writes every raw table of ``checkout_recs.contract``.
* ``SimWorld.build(cfg)`` / ``SimWorld.from_raw(raw_dir)``: the world and its hidden truth.
* ``evaluate_policy(policy, days, regions, world)``: what a policy would earn (see ``evaluate``
  for the policy interface).
"""

from checkout_recs.simulate.config import SimConfig, SimSummary
from checkout_recs.simulate.evaluate import (
    CandidateSet,
    Policy,
    PolicyValue,
    RequestContext,
    evaluate_policy,
    heuristic_policy,
    logged_expectations,
    oracle_policy,
    random_policy,
)
from checkout_recs.simulate.run import run_simulation
from checkout_recs.simulate.scenario import SimWorld

__all__ = [
    "CandidateSet",
    "Policy",
    "PolicyValue",
    "RequestContext",
    "SimConfig",
    "SimSummary",
    "SimWorld",
    "evaluate_policy",
    "heuristic_policy",
    "logged_expectations",
    "oracle_policy",
    "random_policy",
    "run_simulation",
]
