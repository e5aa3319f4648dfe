"""Coverage of the off-policy estimators on the marketplace simulator itself.

One small world (``SimCoverage.world``) is drawn once. Each seed runs its market with the logged
heuristic (``simulate.policy_market``, inventory consumed as in the logs; the seed changes the
checkouts, slates and clicks, not the world) and keeps the requests with a full set of K
candidates. The logged propensities are the heuristic's exact marginals
``P(candidate at slot | x) = (1 - epsilon) [top6(x)[slot] == candidate] + epsilon / K``.

The evaluation policy is known and different: epsilon-greedy (``eval_epsilon``) on the same
observable signals as the heuristic but with the incumbent boost turned into a boost for
everyone else (``score = 2 goes_with + 0.5 same_top + 1.5 [not incumbent]``, ties by listing).
Its exact marginals ``pe`` give, with the hidden truth's click probabilities of every candidate
at every slot, its value per request ``sum_{k, j} pe(k, j) P(click | k at j)``. The true value is
the mean over the requests of ``n_truth_seeds`` further, independent seeds (the population value
the estimators target). Per seed every estimator's 95% interval (``ope_coverage.intervals_from_logs``;
DM and DR refit their tabular reward model, binned by goes_with x same_top x incumbent, in every
bootstrap resample) is checked against it. Values are summed clicks per request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from checkout_recs.contract import SLATE_SIZE
from checkout_recs.evaluation.html_report import figure_tag, page, table_html
from checkout_recs.simulate.config import SimConfig
from checkout_recs.simulate.logging_policy import HeuristicPolicy
from checkout_recs.simulate.policy_market import run_policy_market
from checkout_recs.simulate.scenario import SimWorld
from checkout_recs.studies.ope_coverage import intervals_from_logs

N_BINS = 8


@dataclass
class SimCoverage:
    """Knobs of the study (defaults: about 1,500 requests per seed, a few seconds each)."""

    world: SimConfig = field(
        default_factory=lambda: SimConfig(
            seed=21,
            n_sellers=200,
            n_listings=6_000,
            n_users=1_500,
            days=4,
            checkouts_per_day=420,
            n_candidates=12,
        )
    )
    eval_epsilon: float = 0.2
    n_truth_seeds: int = 10
    n_boot: int = 100


def _signals(
    h: HeuristicPolicy, basket_leaf: np.ndarray, cands: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(M, K) heuristic score without its incumbent boost, and the incumbent flag (bool)."""
    inc = h.sellers.incumbent[h.cat.seller[cands]]
    return h.scores(basket_leaf, cands) - 1.5 * inc, inc


def eval_marginals(
    h: HeuristicPolicy, basket_leaf: np.ndarray, cands: np.ndarray, eps: float
) -> np.ndarray:
    """Exact marginals (M, K, 6) of the evaluation policy (see the module docstring)."""
    base, inc = _signals(h, basket_leaf, cands)
    score = base + 1.5 * ~inc
    m, k = cands.shape
    order = (
        np.lexsort((cands.ravel(), -score.ravel(), np.repeat(np.arange(m), k))).reshape(m, k) % k
    )
    top = np.take_along_axis(cands, order[:, :SLATE_SIZE], axis=1)
    return (1 - eps) * (cands[:, :, None] == top[:, None, :]) + eps / k


def seed_logs(
    world: SimWorld, cov: SimCoverage, stream_seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One seed's logs in ``ope_coverage`` long format, and the per-request true value (n,).

    Raises ``AssertionError`` if a logged propensity differs from the heuristic's exact marginal.
    """
    cfg = world.cfg
    rec = run_policy_market(world, lambda day, region: None, cfg.days, stream_seed=stream_seed)
    off, shown = rec.offered, rec.shown
    k = cfg.n_candidates
    full = off.groupby("request")["listing_id"].transform("size").eq(k)
    off = off[full]
    first = off.drop_duplicates("request")
    n = len(first)
    cands = off["listing_id"].to_numpy().reshape(n, k) - 1
    bl = first[["basket_leaf_0", "basket_leaf_1"]].to_numpy(np.int64)
    h = HeuristicPolicy(world.tax, world.sellers, world.cat, cfg.epsilon)
    p0 = h.marginals(bl, cands)
    pe = eval_marginals(h, bl, cands, cov.eval_epsilon)
    pos = {r: i for i, r in enumerate(first["request"].tolist())}
    s = shown[shown["request"].isin(pos)]
    req = s["request"].map(pos).to_numpy()
    slot = s["slot"].to_numpy().astype(np.int64)
    action = np.argmax(cands[req] == (s["listing_id"].to_numpy() - 1)[:, None], axis=1)
    assert np.allclose(p0[req, action, slot], s["propensity"].to_numpy()), (
        "logged propensities are not exact"
    )
    base, inc = _signals(h, bl, cands)
    goes = base >= 2.0  # the heuristic's score is 2 goes_with + 0.5 same_top (+ 1.5 incumbent)
    bins = 4 * goes + 2 * (base - 2.0 * goes >= 0.5) + inc
    logs = {
        "slate_id": req, "position": slot, "action": action, "reward": s["clicked"].to_numpy(float),
        "pscore": p0[req, action, slot], "evaluation_policy_pscore": pe[req, action, slot],
        "pscore_item_position": p0[req, action, :], "evaluation_policy_pscore_item_position": pe[req, action, :],
        "action_dist": pe[req, :, slot][:, :, None], "bin": bins[req],
    }  # fmt: skip
    return logs, true_values(world, first, cands, bl, pe)


def true_values(
    world: SimWorld, first, cands: np.ndarray, bl: np.ndarray, pe: np.ndarray
) -> np.ndarray:  # noqa: ANN001
    """Per request (n,): sum over candidates and slots of pe * the truth's P(click)."""
    n, k = cands.shape
    user = np.repeat(first["user"].to_numpy() - 1, k * SLATE_SIZE)
    t = np.repeat(first["t_us"].to_numpy(), k * SLATE_SIZE)
    dev = np.repeat(first["device"].to_numpy(), k * SLATE_SIZE)
    items = np.repeat(cands.ravel(), SLATE_SIZE)
    slots = np.tile(np.arange(SLATE_SIZE), n * k)
    pc = world.truth.click_prob(user, np.repeat(bl, k * SLATE_SIZE, axis=0), items, slots, t, dev)
    return (pc.reshape(n, k, SLATE_SIZE) * pe).sum(axis=(1, 2))


def sim_coverage_study(
    n_seeds: int = 50,
    cov: SimCoverage | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Share of ``n_seeds`` seeds whose 95% interval covers the evaluation policy's true value.

    Returns
    -------
    dict
        ``truth`` (population value, summed clicks per request), ``n_seeds``, ``coverage``,
        ``mean_estimate``, ``mean_width`` per estimator, ``coverage_conditional`` (against each
        seed's own requests' exact value), ``requests_per_seed`` and ``logged_value`` (the logs'
        mean clicks per request).
    """
    cov = cov or SimCoverage()
    world = SimWorld.build(cov.world)
    truth = float(
        np.mean(
            np.concatenate([seed_logs(world, cov, 10_000 + s)[1] for s in range(cov.n_truth_seeds)])
        )
    )
    hits: dict[str, list[bool]] = {}
    hits_cond: dict[str, list[bool]] = {}
    est: dict[str, list[float]] = {}
    width: dict[str, list[float]] = {}
    sizes, logged = [], []
    for seed in range(n_seeds):
        logs, cond = seed_logs(world, cov, seed)
        sizes.append(len(cond))
        logged.append(float(logs["reward"].sum() / len(cond)))
        for name, iv in intervals_from_logs(
            logs, N_BINS, np.asarray(world.truth.params.examination), seed, cov.n_boot
        ).items():
            hits.setdefault(name, []).append(iv.covers(truth))
            hits_cond.setdefault(name, []).append(iv.covers(float(cond.mean())))
            est.setdefault(name, []).append(iv.estimate)
            width.setdefault(name, []).append(iv.upper - iv.lower)
        if progress is not None:
            progress(seed + 1, n_seeds)
    return {
        "truth": truth, "n_seeds": n_seeds, "nominal": 0.95,
        "coverage": {k: float(np.mean(v)) for k, v in hits.items()},
        "coverage_conditional": {k: float(np.mean(v)) for k, v in hits_cond.items()},
        "mean_estimate": {k: float(np.mean(v)) for k, v in est.items()},
        "mean_width": {k: float(np.mean(v)) for k, v in width.items()},
        "requests_per_seed": float(np.mean(sizes)), "logged_value": float(np.mean(logged)),
        "world": cov.world.model_dump(mode="json"), "eval_epsilon": cov.eval_epsilon,
        "n_truth_seeds": cov.n_truth_seeds, "n_boot": cov.n_boot,
    }  # fmt: skip


def coverage_report(r: dict, out: Path) -> Path:
    """Write an HTML page for a coverage result ``r`` (``sim_coverage_study`` or ``coverage_study``):
    coverage per estimator against the 90% target, and mean estimate +- half the mean width."""
    import matplotlib  # lazy: matplotlib costs ~0.5 s and only the HTML reports need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~0.5 s and only the HTML reports need it

    names = list(r["coverage"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    a.bar(names, [r["coverage"][n] for n in names], color="#4a78b5")
    a.axhline(0.9, color="#b00020", ls="--", label="target 90%")
    a.axhline(r.get("nominal", 0.95), color="#555", ls=":", label="nominal 95%")
    a.set_ylim(0, 1.05)
    a.set_title(f"interval coverage over {r['n_seeds']} seeds")
    a.legend(loc="lower right")
    est = [r["mean_estimate"][n] for n in names]
    b.errorbar(names, est, yerr=[r["mean_width"][n] / 2 for n in names], fmt="o", capsize=4)
    b.axhline(r["truth"], color="#1b7f3b", label=f"true value {r['truth']:.3f}")
    b.set_title("mean estimate +- half the mean 95% width (clicks / request)")
    b.legend(loc="lower right")
    table = pd.DataFrame(
        {
            "estimator": names,
            "coverage": [r["coverage"][n] for n in names],
            "mean estimate": est,
            "mean width": [r["mean_width"][n] for n in names],
        }
    )
    worst = min(r["coverage"].values())
    verdict = f"lowest coverage {worst:.0%} (target >= 90%)"
    html = page("Off-policy estimators: interval coverage", [("Coverage", figure_tag(fig, "coverage")),
                ("Figures", table_html(table))], verdict=verdict, ok=worst >= 0.9)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out
