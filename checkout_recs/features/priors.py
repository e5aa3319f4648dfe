"""Empirical-Bayes Beta priors for smoothed rates (CTR, conversion).

A listing with few views gets a rate pulled towards the population's; one with many keeps its
own. The prior is fitted by the method of moments on the listings with enough exposure, at each
snapshot separately (so the prior at ``t`` uses only data up to ``t``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BetaPrior:
    """Beta(alpha, beta) prior of a rate in [0, 1]."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        """Prior mean ``alpha / (alpha + beta)``."""
        return self.alpha / (self.alpha + self.beta)


#: Used when too few entities have enough exposure to fit a prior.
DEFAULT_CTR_PRIOR = BetaPrior(alpha=1.0, beta=19.0)
DEFAULT_CVR_PRIOR = BetaPrior(alpha=1.0, beta=9.0)


def fit_beta_prior(
    successes: np.ndarray,
    trials: np.ndarray,
    default: BetaPrior,
    min_trials: float = 5.0,
    min_entities: int = 10,
    strength_bounds: tuple[float, float] = (2.0, 1000.0),
) -> BetaPrior:
    """Fit a Beta prior to per-entity rates by the method of moments.

    Parameters
    ----------
    successes, trials : np.ndarray
        Shape ``(n,)``, non-negative (may be fractional: decayed counts), ``successes <= trials``.
    default : BetaPrior
        Returned when fewer than ``min_entities`` entities have ``trials >= min_trials``.
    strength_bounds : tuple of float
        Bounds on ``alpha + beta`` (pseudo-trials).

    Returns
    -------
    BetaPrior
        Prior whose mean is the pooled rate and whose strength matches the between-entity
        variance net of the binomial noise.
    """
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    ok = n >= min_trials
    if ok.sum() < min_entities:
        return default
    rates = np.clip(s[ok] / n[ok], 0.0, 1.0)
    mean = float(np.clip(s[ok].sum() / n[ok].sum(), 1e-4, 1 - 1e-4))
    noise = float(np.mean(mean * (1 - mean) / n[ok]))
    var = max(float(rates.var()) - noise, 1e-8)
    strength = float(np.clip(mean * (1 - mean) / var - 1.0, *strength_bounds))
    return BetaPrior(alpha=mean * strength, beta=(1 - mean) * strength)


def smoothed_rate(successes: np.ndarray, trials: np.ndarray, prior: BetaPrior) -> np.ndarray:
    """Posterior mean ``(s + alpha) / (n + alpha + beta)``; shape of ``successes``, in (0, 1)."""
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    return (np.minimum(s, n) + prior.alpha) / (n + prior.alpha + prior.beta)
