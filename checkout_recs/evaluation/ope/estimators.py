"""Off-policy estimators: the value of a new policy from logs of an old one.

One small dataclass per estimator, all with the same two methods, in the manner of Open Bandit
Pipeline's ``obp/ope/estimators.py`` (Saito et al., 2020):

* ``estimate_policy_value(**data) -> float``
* ``estimate_interval(**data, alpha=0.05, n_bootstrap_samples=1000, random_state=None) -> Interval``

Every estimator is a ratio of per-round sums, ``V = sum_i num_i / sum_i den_i`` (``den_i = 1``
except for the self-normalised one), so the bootstrap resamples rounds and recomputes the ratio:
the self-normalised interval is a real ratio bootstrap, not a resample of fixed terms.

Notation and shapes (``n`` logged rounds, ``m`` actions, ``L`` positions)
------------------------------------------------------------------------
``reward``      (n,)   observed reward of the logged action (click, or revenue in currency units)
``action``      (n,)   int, logged action (listing index) in [0, m)
``position``    (n,)   int, position (slot) of the logged action in [0, L); None means all 0
``pscore``      (n,)   probability the logging policy chose ``action`` at ``position``, in (0, 1]
``action_dist`` (n, m, L) evaluation policy pi_e(a | x_i, position), each (i, :, l) sums to 1
``estimated_rewards_by_reg_model`` (n, m, L) reward model q_hat(x_i, a, l)

The slate estimators for the six-slot page live in ``checkout_recs.evaluation.ope.estimators_slate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interval",
    "InverseProbabilityWeighting",
    "SelfNormalizedIPS",
    "DirectMethod",
    "DoublyRobust",
    "bootstrap_ratio_interval",
    "tabular_reward_model",
]


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval of a policy value."""

    estimate: float  # the point estimate on the full sample
    mean: float  # mean of the bootstrap replicates
    lower: float
    upper: float
    alpha: float  # 1 - coverage level (0.05 gives a 95% interval)

    def covers(self, value: float) -> bool:
        """True when ``lower <= value <= upper``."""
        return self.lower <= value <= self.upper

    def as_dict(self) -> dict[str, float]:
        """Plain dict (for JSON and tables)."""
        return {
            "estimate": self.estimate,
            "mean": self.mean,
            "lower": self.lower,
            "upper": self.upper,
        }


def bootstrap_ratio_interval(
    num: np.ndarray,
    den: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 1000,
    random_state: int | None = None,
) -> Interval:
    """Percentile bootstrap of ``sum(num) / sum(den)`` resampling rows (or whole groups).

    Parameters
    ----------
    num, den
        Arrays of shape (n,). ``den=None`` means all ones (a plain mean).
    groups
        Optional (n,) cluster labels (e.g. slate or request ids): clusters are resampled whole,
        which keeps the six slots of one request together.
    alpha
        1 - coverage (0.05 gives a 95% interval), in (0, 1).
    n_bootstrap_samples
        Number of replicates, >= 10.
    random_state
        Seed of the resampling.

    Returns
    -------
    Interval
        Point estimate, replicate mean and percentile bounds. Raises ``ValueError`` on empty or
        mismatched inputs or a zero denominator.
    """
    num = np.asarray(num, dtype=float)
    den = np.ones_like(num) if den is None else np.asarray(den, dtype=float)
    if num.ndim != 1 or num.shape != den.shape or num.size == 0:
        raise ValueError(
            f"num and den must be non-empty 1-d arrays of one shape: {num.shape}, {den.shape}"
        )
    if not 0 < alpha < 1 or n_bootstrap_samples < 10:
        raise ValueError("alpha must be in (0, 1) and n_bootstrap_samples >= 10")
    if groups is not None:
        _, inv = np.unique(np.asarray(groups), return_inverse=True)
        num, den = np.bincount(inv, weights=num), np.bincount(inv, weights=den)
    if den.sum() == 0:
        raise ValueError("the denominator sums to zero (no logged round has weight)")
    rng = np.random.default_rng(random_state)
    n = num.size
    reps = np.empty(n_bootstrap_samples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_bootstrap_samples, chunk):
        stop = min(start + chunk, n_bootstrap_samples)
        idx = rng.integers(0, n, size=(stop - start, n))
        d = den[idx].sum(axis=1)
        reps[start:stop] = num[idx].sum(axis=1) / np.where(d == 0, np.nan, d)
    reps = reps[~np.isnan(reps)]
    return Interval(
        estimate=float(num.sum() / den.sum()),
        mean=float(reps.mean()),
        lower=float(np.percentile(reps, 100 * alpha / 2)),
        upper=float(np.percentile(reps, 100 * (1 - alpha / 2))),
        alpha=alpha,
    )


def _positions(position: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=int) if position is None else np.asarray(position, dtype=int)


def _check(
    reward: np.ndarray, action: np.ndarray, action_dist: np.ndarray, pscore: np.ndarray | None
) -> None:
    n = len(reward)
    if action_dist.ndim != 3 or action_dist.shape[0] != n or len(action) != n:
        raise ValueError(f"action_dist must be (n, m, L) with n={n}; got {action_dist.shape}")
    if pscore is not None and (len(pscore) != n or np.any(pscore <= 0) or np.any(pscore > 1)):
        raise ValueError("pscore must have shape (n,) with values in (0, 1]")


def _importance_weights(
    action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray, pos: np.ndarray
) -> np.ndarray:
    return action_dist[np.arange(len(action)), action, pos] / pscore


class _Estimator:
    """Shared plumbing: subclasses implement ``_terms(**data) -> (num, den)``."""

    estimator_name = "base"

    def _terms(self, **data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def round_terms(self, **data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-round (numerator, denominator), each (n,): the value is ``sum(num) / sum(den)``."""
        return self._terms(**data)

    def estimate_policy_value(self, **data: np.ndarray) -> float:
        """Point estimate of the evaluation policy's value (reward units per round)."""
        num, den = self._terms(**data)
        return float(num.sum() / den.sum())

    def estimate_interval(
        self,
        alpha: float = 0.05,
        n_bootstrap_samples: int = 1000,
        random_state: int | None = None,
        groups: np.ndarray | None = None,
        **data: np.ndarray,
    ) -> Interval:
        """Bootstrap interval of the value; ``groups`` resamples clusters (see ``bootstrap_ratio_interval``)."""
        num, den = self._terms(**data)
        return bootstrap_ratio_interval(num, den, groups, alpha, n_bootstrap_samples, random_state)


@dataclass
class InverseProbabilityWeighting(_Estimator):
    """Inverse probability weighting (Horvitz and Thompson 1952; Precup et al. 2000).

    ``V_IPS = (1/n) sum_i w_i r_i`` with ``w_i = min(pi_e(a_i | x_i, l_i) / pscore_i, lambda_)``.
    Unbiased when ``lambda_ = inf`` and the logging policy covers the evaluation policy.

    Data: ``reward, action, pscore, action_dist, position=None`` (shapes in the module docstring);
    other keys are ignored, so one data dict can be passed to every estimator.
    """

    lambda_: float = np.inf
    estimator_name: str = "ipw"

    def _terms(self, reward, action, pscore, action_dist, position=None, **_):  # type: ignore[override]
        _check(reward, action, action_dist, pscore)
        pos = _positions(position, len(reward))
        w = np.minimum(_importance_weights(action, pscore, action_dist, pos), self.lambda_)
        return np.asarray(reward, float) * w, np.ones(len(reward))


@dataclass
class SelfNormalizedIPS(_Estimator):
    """Self-normalised IPS (Swaminathan and Joachims 2015).

    ``V_SNIPS = sum_i w_i r_i / sum_i w_i``: slightly biased, much lower variance than IPS; the
    value stays inside the reward range. Data as for ``InverseProbabilityWeighting``.
    """

    estimator_name: str = "snipw"

    def _terms(self, reward, action, pscore, action_dist, position=None, **_):  # type: ignore[override]
        _check(reward, action, action_dist, pscore)
        w = _importance_weights(action, pscore, action_dist, _positions(position, len(reward)))
        return np.asarray(reward, float) * w, w


@dataclass
class DirectMethod(_Estimator):
    """Direct method (Beygelzimer and Langford 2009): trust a reward model.

    ``V_DM = (1/n) sum_i sum_a pi_e(a | x_i, l_i) q_hat(x_i, a, l_i)``. Low variance; biased as
    much as ``q_hat`` is. Data: ``action_dist, estimated_rewards_by_reg_model, position=None``.
    """

    estimator_name: str = "dm"

    def _terms(self, action_dist, estimated_rewards_by_reg_model, position=None, **_):  # type: ignore[override]
        n = action_dist.shape[0]
        if estimated_rewards_by_reg_model.shape != action_dist.shape:
            raise ValueError("estimated_rewards_by_reg_model must have the shape of action_dist")
        if action_dist.shape[2] == 1:  # one position: a view, no gather
            pi, q = action_dist[:, :, 0], estimated_rewards_by_reg_model[:, :, 0]
        else:
            pos, rows = _positions(position, n), np.arange(n)
            pi, q = action_dist[rows, :, pos], estimated_rewards_by_reg_model[rows, :, pos]
        return np.einsum("ij,ij->i", pi, q) / pi.sum(axis=1), np.ones(n)


@dataclass
class DoublyRobust(_Estimator):
    """Doubly robust (Dudik et al. 2014): DM plus an IPS correction of the model's residual.

    ``V_DR = (1/n) sum_i [ sum_a pi_e(a|x_i,l_i) q_hat(x_i,a,l_i) + w_i (r_i - q_hat(x_i,a_i,l_i)) ]``
    with ``w_i`` clipped at ``lambda_``. Unbiased if either the propensities or the model are right.
    Data: ``reward, action, pscore, action_dist, estimated_rewards_by_reg_model, position=None``.
    """

    lambda_: float = np.inf
    estimator_name: str = "dr"

    def _terms(  # type: ignore[override]
        self,
        reward,
        action,
        pscore,
        action_dist,
        estimated_rewards_by_reg_model,
        position=None,
        **_,
    ):
        _check(reward, action, action_dist, pscore)
        n = len(reward)
        pos = _positions(position, n)
        dm, _ = DirectMethod()._terms(action_dist, estimated_rewards_by_reg_model, pos)
        w = np.minimum(_importance_weights(action, pscore, action_dist, pos), self.lambda_)
        q_factual = estimated_rewards_by_reg_model[np.arange(n), action, pos]
        return dm + w * (np.asarray(reward, float) - q_factual), np.ones(n)


def tabular_reward_model(
    reward: np.ndarray,
    action: np.ndarray,
    position: np.ndarray | None,
    n_actions: int,
    len_list: int,
    n_rounds: int | None = None,
    prior_strength: float = 10.0,
) -> np.ndarray:
    """A context-free reward model: the smoothed mean reward of each (action, position).

    ``q_hat(a, l) = (sum of rewards of a at l + k * mean_l) / (count of a at l + k)`` with
    ``k = prior_strength`` and ``mean_l`` the position's mean reward (empirical-Bayes shrinkage).

    Returns
    -------
    np.ndarray
        Shape (n_rounds, n_actions, len_list), the same table for every round (``n_rounds``
        defaults to ``len(reward)``), ready for ``DirectMethod`` and ``DoublyRobust``.
    """
    reward = np.asarray(reward, float)
    pos = _positions(position, len(reward))
    sums = np.zeros((n_actions, len_list))
    counts = np.zeros((n_actions, len_list))
    np.add.at(sums, (action, pos), reward)
    np.add.at(counts, (action, pos), 1.0)
    pos_mean = sums.sum(axis=0) / np.maximum(counts.sum(axis=0), 1.0)
    q = (sums + prior_strength * pos_mean) / (counts + prior_strength)
    return np.broadcast_to(q, (n_rounds or len(reward), n_actions, len_list)).copy()
