"""Slate off-policy estimators for the six-slot page.

The value of a slate policy is the expected *sum* of slot rewards per request (clicks, or revenue
``click * purchase * price * take_rate`` in currency units). Data come in long format, one row per
shown slot (what the impressions table holds), and every estimator has the interface of
``checkout_recs.evaluation.ope.estimators``: ``estimate_policy_value(**data)`` and
``estimate_interval(**data, alpha, n_bootstrap_samples, random_state)``. The bootstrap resamples
whole requests (``slate_id``), so the six slots of one request stay together.

Shapes (``N`` rows = shown slots over ``n`` requests, ``L`` = 6 positions)
-------------------------------------------------------------------------
``slate_id``  (N,) request identifier (any hashable dtype)
``position``  (N,) int slot in [0, L)
``reward``    (N,) reward observed at that slot
``pscore``    (N,) logging policy's marginal P(this item at this slot | x), in (0, 1]
``evaluation_policy_pscore`` (N,) evaluation policy's marginal P(this item at this slot | x)
``pscore_item_position``     (N, L) logging policy's P(this item at slot j | x) for every j
``evaluation_policy_pscore_item_position`` (N, L) the same under the evaluation policy
``examination`` (L,) position examination weights theta_j (theta_0 = 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from checkout_recs.evaluation.ope.estimators import Interval, _Estimator

__all__ = ["IndependentIPS", "PositionBasedIPS", "estimate_examination"]


def _per_slate_denominator(slate_id: np.ndarray) -> np.ndarray:
    """(N,) weights 1/rows-in-slate, so that each request counts once in the denominator."""
    _, inv, counts = np.unique(np.asarray(slate_id), return_inverse=True, return_counts=True)
    return 1.0 / counts[inv]


class _SlateEstimator(_Estimator):
    """``ope._Estimator`` whose bootstrap resamples whole requests (``slate_id``)."""

    def estimate_interval(  # type: ignore[override]
        self,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 1000,
        random_state: int | None = None,
        **data: np.ndarray,
    ) -> Interval:
        """Bootstrap interval, resampling whole requests (``slate_id``)."""
        return super().estimate_interval(
            alpha, n_bootstrap_samples, random_state, groups=np.asarray(data["slate_id"]), **data
        )


@dataclass
class IndependentIPS(_SlateEstimator):
    """Independent IPS (Li et al. 2018, "Offline evaluation of ranking policies with click models").

    ``V_IIPS = (1/n) sum_i sum_k r_ik * pi_e(a_ik at k | x_i) / pi_0(a_ik at k | x_i)``.

    Unbiased when a slot's reward depends only on the listing in that slot (no interaction
    between slots) and the logging marginals cover the evaluation policy's. Uses the per-slot
    propensities the decision log carries. Data: ``slate_id, reward, pscore,
    evaluation_policy_pscore`` (``position`` is accepted and unused).
    """

    lambda_: float = np.inf
    estimator_name: str = "iips"

    def _terms(self, slate_id, reward, pscore, evaluation_policy_pscore, **_):  # type: ignore[override]
        pscore = np.asarray(pscore, float)
        if np.any(pscore <= 0) or np.any(pscore > 1):
            raise ValueError("pscore must be in (0, 1]")
        w = np.minimum(np.asarray(evaluation_policy_pscore, float) / pscore, self.lambda_)
        return np.asarray(reward, float) * w, _per_slate_denominator(slate_id)


@dataclass
class PositionBasedIPS(_SlateEstimator):
    """Position-based-model IPS (PBM estimator of Li et al. 2018).

    Under the position-based click model ``E[r | item a at slot j] = theta_j * rho(x, a)``, a
    listing's expected reward depends on its *examination mass* ``nu(a) = sum_j theta_j pi(a at j)``,
    so clicks are reweighted item-wise rather than slot-wise::

        V_PBM = (1/n) sum_i sum_k r_ik * nu_e(a_ik | x_i) / nu_0(a_ik | x_i)

    Lower variance than IIPS (a listing shown in any slot informs every slot); biased if the
    click model is wrong. Data: ``slate_id, reward, pscore_item_position,
    evaluation_policy_pscore_item_position, examination``.
    """

    lambda_: float = np.inf
    estimator_name: str = "pbm"

    def _terms(  # type: ignore[override]
        self,
        slate_id,
        reward,
        pscore_item_position,
        evaluation_policy_pscore_item_position,
        examination,
        **_,
    ):
        theta = np.asarray(examination, float)
        nu_0 = np.asarray(pscore_item_position, float) @ theta
        nu_e = np.asarray(evaluation_policy_pscore_item_position, float) @ theta
        if np.any(nu_0 <= 0):
            raise ValueError("logging examination mass must be > 0 for every logged row")
        w = np.minimum(nu_e / nu_0, self.lambda_)
        return np.asarray(reward, float) * w, _per_slate_denominator(slate_id)


def estimate_examination(position: np.ndarray, reward: np.ndarray, len_list: int) -> np.ndarray:
    """Examination weights from logs where listings were placed at random (uniform exploration).

    ``theta_j = mean reward at slot j / mean reward at slot 0``; exact in expectation when the
    listing in a slot is independent of the slot (uniform-random slates).

    Returns
    -------
    np.ndarray
        Shape (len_list,), ``theta_0 = 1``. Raises ``ValueError`` if slot 0 has no reward.
    """
    position = np.asarray(position, dtype=int)
    reward = np.asarray(reward, float)
    sums = np.bincount(position, weights=reward, minlength=len_list)
    counts = np.bincount(position, minlength=len_list)
    means = sums / np.maximum(counts, 1)
    if means[0] <= 0:
        raise ValueError("no reward at slot 0: examination weights are not identifiable")
    return means / means[0]
