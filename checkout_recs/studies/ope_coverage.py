"""Coverage study of the off-policy estimators on a small position-based marketplace.

The world mirrors the structure of the simulator's hidden truth (``checkout_recs.simulate.truth``)
and logging policy (``checkout_recs.simulate.logging_policy``) at a size that runs 50 seeds in
seconds: each request has ``K`` candidate listings with a latent relevance ``rho``; a listing in
slot ``j`` is clicked with probability ``theta_j * rho`` (position-based examination); the logging
policy shows its heuristic top six with probability ``1 - epsilon`` and a uniformly random
ordered six otherwise, so every marginal propensity is exact::

    P(candidate c at slot j | x) = (1 - epsilon) * [top6(x)[j] == c] + epsilon / K

The evaluation policy is another epsilon-greedy ranking (a better score, less exploration), whose
true value ``sum_j theta_j sum_c P_e(c at j | x) rho_c`` is computed exactly and averaged over a
large independent sample of requests. ``coverage_study`` returns, per estimator, the share of seeds
whose 95% interval covers that truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from checkout_recs.contract import SLATE_SIZE
from checkout_recs.evaluation.ope.estimators import (
    DirectMethod,
    DoublyRobust,
    Interval,
    InverseProbabilityWeighting,
    SelfNormalizedIPS,
    _Estimator,
    bootstrap_ratio_interval,
)
from checkout_recs.evaluation.ope.estimators_slate import IndependentIPS, PositionBasedIPS

EXAMINATION = np.array([1.0, 0.78, 0.63, 0.53, 0.46, 0.41])


@dataclass
class CoverageWorld:
    """Knobs of the small world (defaults keep one seed around a second on a loaded core)."""

    n_requests: int = 3_000
    n_candidates: int = 12
    n_bins: int = 8  # feature bins of the tabular reward model used by DM and DR
    log_epsilon: float = 0.5
    eval_epsilon: float = 0.2
    examination: np.ndarray = field(default_factory=lambda: EXAMINATION.copy())


def _marginals(score: np.ndarray, epsilon: float) -> np.ndarray:
    """(n, K) scores -> (n, K, L) exact epsilon-greedy marginals P(candidate at slot)."""
    n, k = score.shape
    top = np.argsort(-score, axis=1, kind="stable")[:, :SLATE_SIZE]
    m = np.full((n, k, SLATE_SIZE), epsilon / k)
    m[np.arange(n)[:, None], top, np.arange(SLATE_SIZE)[None, :]] += 1 - epsilon
    return m


def _contexts(rng: np.random.Generator, w: CoverageWorld, n: int) -> dict[str, np.ndarray]:
    z = rng.uniform(0, 1, (n, w.n_candidates))  # observable listing quality
    incumbent = rng.random((n, w.n_candidates)) < 0.5
    rho = 0.05 + 0.35 * z  # true click probability at slot 0
    log_score = 0.6 * z + 0.8 * incumbent + 0.3 * rng.random((n, w.n_candidates))
    eval_score = z + 0.1 * rng.random((n, w.n_candidates))
    return {"z": z, "rho": rho, "log_score": log_score, "eval_score": eval_score}


def true_value(w: CoverageWorld, seed: int = 10_000, n: int = 200_000) -> float:
    """Expected summed clicks per request of the evaluation policy (exact per request, averaged)."""
    ctx = _contexts(np.random.default_rng(seed), w, n)
    pe = _marginals(ctx["eval_score"], w.eval_epsilon)
    return float(np.einsum("nkl,nk,l->n", pe, ctx["rho"], w.examination).mean())


def simulate_logs(w: CoverageWorld, seed: int) -> dict[str, np.ndarray]:
    """One seed's logs in long format (one row per shown slot) plus both policies' marginals."""
    rng = np.random.default_rng(seed)
    n, k, L = w.n_requests, w.n_candidates, SLATE_SIZE
    ctx = _contexts(rng, w, n)
    p0, pe = (
        _marginals(ctx["log_score"], w.log_epsilon),
        _marginals(ctx["eval_score"], w.eval_epsilon),
    )
    explore = rng.random(n) < w.log_epsilon
    shown = np.argsort(-ctx["log_score"], axis=1, kind="stable")[:, :L]
    shown[explore] = np.argsort(rng.random((explore.sum(), k)), axis=1)[:, :L]
    req = np.repeat(np.arange(n), L)
    slot = np.tile(np.arange(L), n)
    item = shown.ravel()
    click = (rng.random(n * L) < w.examination[slot] * ctx["rho"][req, item]).astype(float)
    return {
        "slate_id": req,
        "position": slot,
        "action": item,
        "reward": click,
        "pscore": p0[req, item, slot],
        "evaluation_policy_pscore": pe[req, item, slot],
        "pscore_item_position": p0[req, item, :],
        "evaluation_policy_pscore_item_position": pe[req, item, :],
        # (N, K, 1): each shown slot is a round whose actions are the request's K candidates
        "action_dist": pe[req, :, slot][:, :, None],
        "bin": np.minimum((ctx["z"] * w.n_bins).astype(int), w.n_bins - 1)[req],  # (N, K)
    }


def fit_binned_model(logs: dict[str, np.ndarray], rows: np.ndarray, w: CoverageWorld) -> np.ndarray:
    """Tabular reward model q_hat(bin of candidate, slot) fitted on ``rows``.

    Returns (len(rows), K, 1): q_hat of each candidate of the row's request at the row's slot.
    """
    item, slot = logs["action"][rows], logs["position"][rows]
    bins = logs["bin"][rows]
    b = bins[np.arange(len(rows)), item]
    cell = b * SLATE_SIZE + slot
    size = w.n_bins * SLATE_SIZE
    sums = np.bincount(cell, weights=logs["reward"][rows], minlength=size).reshape(
        w.n_bins, SLATE_SIZE
    )
    counts = np.bincount(cell, minlength=size).reshape(w.n_bins, SLATE_SIZE)
    table = (sums + 1.0 * sums.sum(0) / counts.sum(0).clip(1)) / (counts + 1.0)
    return table[bins, slot[:, None]][:, :, None]


def refit_interval(
    value: Callable[[np.ndarray], float],
    groups: np.ndarray,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 200,
    random_state: int | None = None,
) -> Interval:
    """Bootstrap that re-runs ``value(rows)`` (model fit included) on each resample of whole groups.

    ``value`` maps an index array of rows to an estimate; groups (N,) are resampled with
    replacement. Use it for DM and DR, whose plain bootstrap ignores the reward model's variance.
    """
    _, inv = np.unique(groups, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.default_rng(random_state)
    reps = np.empty(n_bootstrap_samples)
    for b in range(n_bootstrap_samples):
        g = rng.integers(0, len(counts), len(counts))
        c = counts[g]
        offsets = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
        reps[b] = value(order[np.repeat(starts[g], c) + offsets])
    all_rows = np.arange(len(groups))
    return Interval(
        estimate=value(all_rows),
        mean=float(reps.mean()),
        lower=float(np.percentile(reps, 100 * alpha / 2)),
        upper=float(np.percentile(reps, 100 * (1 - alpha / 2))),
        alpha=alpha,
    )


def seed_intervals(w: CoverageWorld, seed: int, n_boot: int = 100) -> dict[str, Interval]:
    """Intervals of every estimator for one seed, in summed clicks per request."""
    return intervals_from_logs(simulate_logs(w, seed), w.n_bins, w.examination, seed, n_boot)


def intervals_from_logs(
    logs: dict[str, np.ndarray], n_bins: int, examination: np.ndarray, seed: int, n_boot: int = 100
) -> dict[str, Interval]:
    """95% intervals of IPS, SNIPS, DM, DR (refit), IIPS and PBM from long-format slate logs.

    ``logs`` has the keys of ``simulate_logs`` (one row per shown slot; ``bin`` (N, K) the
    candidates' feature bins in ``range(n_bins)`` for the tabular reward model). Values are in
    summed reward per request; ``seed`` seeds the bootstraps.
    """
    L = SLATE_SIZE
    w = CoverageWorld(n_bins=n_bins, examination=np.asarray(examination, float))

    per_round = ("reward", "action", "pscore", "action_dist")

    def rows_data(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: logs[k][rows] for k in per_round}

    out: dict[str, Interval] = {}
    weighting: tuple[tuple[str, _Estimator], ...] = (
        ("ips", InverseProbabilityWeighting()),
        ("snips", SelfNormalizedIPS()),
    )
    for name, est in weighting:
        num, den = est.round_terms(**rows_data(np.arange(len(logs["reward"]))))
        iv = bootstrap_ratio_interval(
            num, den, logs["slate_id"], n_bootstrap_samples=n_boot, random_state=seed
        )
        out[name] = _scale(iv, L)
    model_based: tuple[tuple[str, _Estimator], ...] = (
        ("dm", DirectMethod()),
        ("dr", DoublyRobust()),
    )
    for name, mest in model_based:

        def value(rows: np.ndarray, mest: _Estimator = mest) -> float:
            q = fit_binned_model(logs, rows, w)
            return L * mest.estimate_policy_value(
                **rows_data(rows), estimated_rewards_by_reg_model=q
            )

        out[name] = refit_interval(
            value, logs["slate_id"], n_bootstrap_samples=n_boot, random_state=seed
        )
    slate: dict[str, Any] = {k: v for k, v in logs.items() if k not in ("action_dist", "bin")}
    out["iips"] = IndependentIPS().estimate_interval(
        n_bootstrap_samples=n_boot, random_state=seed, **slate
    )
    out["pbm"] = PositionBasedIPS().estimate_interval(
        n_bootstrap_samples=n_boot, random_state=seed, examination=w.examination, **slate
    )
    return out


def _scale(iv: Interval, c: float) -> Interval:
    return Interval(iv.estimate * c, iv.mean * c, iv.lower * c, iv.upper * c, iv.alpha)


def coverage_study(
    n_seeds: int = 50, world: CoverageWorld | None = None, n_boot: int = 100
) -> dict:
    """Share of ``n_seeds`` seeds whose 95% interval covers the true value, per estimator.

    Returns
    -------
    dict
        ``{"truth": float, "n_seeds": int, "coverage": {name: share}, "mean_estimate": {...},
        "mean_width": {...}}``; values in summed clicks per request.
    """
    w = world or CoverageWorld()
    truth = true_value(w)
    hits: dict[str, list[bool]] = {}
    est: dict[str, list[float]] = {}
    width: dict[str, list[float]] = {}
    for seed in range(n_seeds):
        for name, iv in seed_intervals(w, seed, n_boot).items():
            hits.setdefault(name, []).append(iv.covers(truth))
            est.setdefault(name, []).append(iv.estimate)
            width.setdefault(name, []).append(iv.upper - iv.lower)
    return {
        "truth": truth,
        "n_seeds": n_seeds,
        "coverage": {k: float(np.mean(v)) for k, v in hits.items()},
        "mean_estimate": {k: float(np.mean(v)) for k, v in est.items()},
        "mean_width": {k: float(np.mean(v)) for k, v in width.items()},
    }
