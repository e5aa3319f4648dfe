"""Difference-in-differences for geographic holdouts, with a parallel-trends check.

Input is a region-by-day panel of one metric (GMV in currency units, sessions, ...). Let
``T_t`` and ``C_t`` be the mean over treated and over control (holdout) regions on day ``t``. On
the log scale (default; effects are multiplicative when regions differ in size or season)::

    d_t      = log T_t - log C_t
    delta    = mean_{t in post} d_t - mean_{t in pre} d_t
    uplift   = exp(delta) - 1          relative incremental effect on the treated regions

``delta``'s standard error is ``sqrt(var(d_pre)/n_pre + var(d_post)/n_post)`` (days as the unit,
Welch; Bertrand, Duflo and Mullainathan 2004 warn that day-level serial correlation narrows it,
so a day-block bootstrap interval is reported too). On the level scale ``d_t = T_t - C_t`` and
the uplift divides ``delta`` by the treated regions' counterfactual post-period mean.

Parallel trends: in the pre-period ``d_t`` must have no trend (slope test) and a placebo start in
the middle of the pre-period must show no effect (its interval covers zero).

Checks that do not lean on days being independent units (permutation, placebo periods, HAC
and clustered errors, a power table) are in ``did_inference``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class ParallelTrends:
    """Pre-period checks; ``passed`` needs both a flat trend and a null placebo."""

    slope_per_day: float
    slope_p_value: float
    placebo_uplift: float
    placebo_lower: float
    placebo_upper: float
    passed: bool


@dataclass(frozen=True)
class DidResult:
    """The DiD estimate. ``uplift`` is relative (0.143 = +14.3%); money in the panel's units."""

    scale: str
    uplift: float
    lower: float
    upper: float
    boot_lower: float
    boot_upper: float
    p_value: float
    incremental_total: (
        float  # treated post-period total minus its counterfactual, summed over regions
    )
    n_pre_days: int
    n_post_days: int
    treated_regions: list[str]
    control_regions: list[str]
    parallel_trends: ParallelTrends

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


def region_day_matrix(panel: pd.DataFrame, value: str, day: str = "day") -> pd.DataFrame:
    """(days, regions) frame of ``value`` summed per region and day, days sorted.

    Missing region-days count as 0 (no sales that day); region names become strings.
    """
    wide = panel.pivot_table(
        index=day, columns="region", values=value, aggfunc="sum", fill_value=0.0
    )
    wide.columns = [str(c) for c in wide.columns]
    return wide.sort_index()


def arm_panel(
    panel: pd.DataFrame, arms: dict[str, str], start: object, value: str, day: str
) -> tuple[pd.DataFrame, list[str], list[str], np.ndarray]:
    """(wide, treated, control, post): the (days, regions) matrix of ``value`` with treated
    regions first (each arm sorted), the arms' regions present in the panel, and the post-period
    mask (days >= ``start``) bool (days,). ``ValueError`` when an arm has no region in the panel."""
    wide = region_day_matrix(panel, value, day)
    treated = sorted(r for r in wide.columns if arms.get(r) == "treatment")
    control = sorted(r for r in wide.columns if arms.get(r) == "control")
    if not treated or not control:
        raise ValueError(f"need a treatment and a control region in the panel (arms: {arms})")
    wide = wide[treated + control]
    return wide, treated, control, np.asarray(wide.index >= start)


def daily_arm_means(
    panel: pd.DataFrame, arms: dict[str, str], value: str, day: str = "day"
) -> pd.DataFrame:
    """(days, 2) frame of the mean ``value`` per region in ``control`` and ``treatment``, by day.

    ``panel`` has one row per (region, day); missing region-days count as 0 (no sales that day).
    Raises ``ValueError`` if an arm has no region in the panel.
    """
    wide = region_day_matrix(panel, value, day)
    out = {}
    for arm in ("control", "treatment"):
        regions = [r for r in wide.columns if arms.get(str(r)) == arm]
        if not regions:
            raise ValueError(f"no {arm} region in the panel (arms: {arms})")
        out[arm] = wide[regions].mean(axis=1)
    return pd.DataFrame(out).sort_index()


def daily_differences(daily: pd.DataFrame, scale: str) -> pd.Series:
    if scale == "log":
        if (daily <= 0).any().any():
            raise ValueError(
                "log-scale DiD needs a positive daily mean in every arm; use scale='level'"
            )
        return np.log(daily["treatment"]) - np.log(daily["control"])
    if scale == "level":
        return daily["treatment"] - daily["control"]
    raise ValueError(f"scale must be 'log' or 'level', not {scale!r}")


def _uplift(delta: float, daily_post: pd.DataFrame, scale: str) -> float:
    return relative_effect(delta, float(daily_post["treatment"].mean()), scale)


def relative_effect(delta: float, treated_post_mean: float, scale: str) -> float:
    """Relative effect of ``delta``: ``exp(delta) - 1`` (log), or ``delta`` over the treated
    regions' counterfactual post-period mean per region-day (level)."""
    if scale == "log":
        return float(np.expm1(delta))
    counterfactual = treated_post_mean - delta
    return float(delta / counterfactual) if counterfactual else float("nan")


def delta_and_se(d: pd.Series, post: np.ndarray) -> tuple[float, float]:
    pre_d, post_d = d[~post], d[post]
    se = np.sqrt(pre_d.var(ddof=1) / len(pre_d) + post_d.var(ddof=1) / len(post_d))
    return float(post_d.mean() - pre_d.mean()), float(se)


def _boot(
    d: pd.Series, daily: pd.DataFrame, post: np.ndarray, scale: str, n: int, seed: int, alpha: float
):
    """Day-block bootstrap (blocks of 7 days, or fewer in a short period) of the uplift."""
    rng = np.random.default_rng(seed)
    pre_idx, post_idx = np.flatnonzero(~post), np.flatnonzero(post)
    reps = np.empty(n)
    for b in range(n):
        rows = np.concatenate([_block_sample(rng, pre_idx), _block_sample(rng, post_idx)])
        is_post = np.isin(rows, post_idx)
        delta = d.iloc[rows[is_post]].mean() - d.iloc[rows[~is_post]].mean()
        reps[b] = _uplift(delta, daily.iloc[rows[is_post]], scale)
    return float(np.percentile(reps, 100 * alpha / 2)), float(
        np.percentile(reps, 100 * (1 - alpha / 2))
    )


def _block_sample(rng: np.random.Generator, idx: np.ndarray, block: int = 7) -> np.ndarray:
    block = max(1, min(block, len(idx) // 2))
    starts = rng.integers(0, len(idx) - block + 1, size=int(np.ceil(len(idx) / block)))
    return np.concatenate([idx[s : s + block] for s in starts])[: len(idx)]


def parallel_trends_check(
    d_pre: pd.Series, daily_pre: pd.DataFrame, scale: str, alpha: float = 0.05
) -> ParallelTrends:
    """Slope of the pre-period differences and a placebo DiD at the pre-period's midpoint.

    Needs at least 4 pre-period days; with fewer, returns ``passed=False`` and NaNs.
    """
    if len(d_pre) < 4:
        nan = float("nan")
        return ParallelTrends(nan, nan, nan, nan, nan, False)
    t = np.arange(len(d_pre), dtype=float)
    fit = stats.linregress(t, d_pre.to_numpy(float))
    placebo_post = t >= len(t) // 2
    delta, se = delta_and_se(d_pre, placebo_post)
    z = stats.norm.ppf(1 - alpha / 2)
    lo = _uplift(delta - z * se, daily_pre[placebo_post], scale)
    hi = _uplift(delta + z * se, daily_pre[placebo_post], scale)
    passed = bool(fit.pvalue > alpha and lo <= 0 <= hi)
    return ParallelTrends(
        float(fit.slope),
        float(fit.pvalue),
        _uplift(delta, daily_pre[placebo_post], scale),
        lo,
        hi,
        passed,
    )


def diff_in_diff(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str = "gmv",
    day: str = "day",
    scale: str = "log",
    alpha: float = 0.05,
    n_bootstrap_samples: int = 500,
    seed: int = 7,
) -> DidResult:
    """DiD estimate of the relative effect of treatment on ``value``.

    Parameters
    ----------
    panel
        One row per (region, day): columns ``region``, ``day`` (sortable; dates or ints) and
        ``value``.
    arms
        ``{region: "control" | "treatment"}`` (e.g. from ``design_geo_holdout``).
    start
        First treated day (same type as ``day``); earlier days are the pre-period.
    scale
        ``"log"`` (multiplicative effect) or ``"level"``.

    Returns
    -------
    DidResult
        Uplift with a normal interval (days as units) and a day-block bootstrap interval, the
        incremental total, and the parallel-trends check. Raises ``ValueError`` with fewer than
        2 pre or 2 post days.
    """
    daily = daily_arm_means(panel, arms, value, day)
    post = np.asarray(daily.index >= start)
    if post.sum() < 2 or (~post).sum() < 2:
        raise ValueError(
            f"need >= 2 pre and >= 2 post days; got {(~post).sum()} pre, {post.sum()} post"
        )
    d = daily_differences(daily, scale)
    delta, se = delta_and_se(d, post)
    z = stats.norm.ppf(1 - alpha / 2)
    uplift = _uplift(delta, daily[post], scale)
    b_lo, b_hi = _boot(d, daily, post, scale, n_bootstrap_samples, seed, alpha)
    treated = sorted(r for r, a in arms.items() if a == "treatment")
    n_treated = len([r for r in treated if r in set(panel["region"].astype(str))])
    total_post = daily["treatment"][post].sum() * n_treated
    return DidResult(
        scale=scale,
        uplift=uplift,
        lower=_uplift(delta - z * se, daily[post], scale),
        upper=_uplift(delta + z * se, daily[post], scale),
        boot_lower=b_lo,
        boot_upper=b_hi,
        p_value=float(2 * stats.norm.sf(abs(delta) / se)) if se > 0 else float("nan"),
        incremental_total=float(total_post * uplift / (1 + uplift)),
        n_pre_days=int((~post).sum()),
        n_post_days=int(post.sum()),
        treated_regions=treated,
        control_regions=sorted(r for r, a in arms.items() if a == "control"),
        parallel_trends=parallel_trends_check(d[~post], daily[~post], scale, alpha),
    )
