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

Beside these day-level intervals, ``geo_inference`` gathers checks that do not lean on days being
independent units:

* ``region_permutation_test`` — the DiD re-estimated under every assignment of the regions to
  treated and holdout (randomisation inference). With ``R`` regions and ``n_T`` treated there are
  ``C(R, n_T)`` assignments, so no p-value can be smaller than ``1 / C(R, n_T)`` (one-sided); with
  arms of equal size each assignment's mirror has the opposite estimate, so the two-sided bound is
  ``2 / C(R, n_T)``: with 4 regions, 6 assignments, 1/6 and 1/3.
* ``placebo_periods`` — the DiD on the pre-period alone with a pretended start on each of its
  days: the estimates should scatter around 0.
* ``hac_interval`` — OLS of ``d_t`` on a post-period indicator (its slope is ``delta``) with
  Newey-West (HAC) standard errors; ``cluster_interval`` — the two-way fixed-effects regression
  on the region-day panel with standard errors clustered by region (few clusters: t with
  ``G - 1`` degrees of freedom).
* ``region_power_table`` — minimum detectable effects for more regions, from the pre-period's
  region-day residual variance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.regression.linear_model import OLS


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


def _diffs(daily: pd.DataFrame, scale: str) -> pd.Series:
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
    return _relative(delta, float(daily_post["treatment"].mean()), scale)


def _relative(delta: float, treated_post_mean: float, scale: str) -> float:
    """Relative effect of ``delta``: ``exp(delta) - 1`` (log), or ``delta`` over the treated
    regions' counterfactual post-period mean per region-day (level)."""
    if scale == "log":
        return float(np.expm1(delta))
    counterfactual = treated_post_mean - delta
    return float(delta / counterfactual) if counterfactual else float("nan")


def _delta(d: pd.Series, post: np.ndarray) -> tuple[float, float]:
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
    delta, se = _delta(d_pre, placebo_post)
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
    d = _diffs(daily, scale)
    delta, se = _delta(d, post)
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


@dataclass(frozen=True)
class RegionPermutation:
    """Randomisation inference over region assignments (``region_permutation_test``).

    ``assignments``: one dict per assignment tried, ``treated`` (sorted region names), ``uplift``
    (relative, 0.1 = +10%) and ``observed`` (the assignment the experiment ran). p-values count
    the observed assignment itself, so they are never below ``min_p_one_sided`` /
    ``min_p_two_sided``, the smallest values the design can give.
    """

    n_assignments: int
    exhaustive: bool
    observed_uplift: float
    p_one_sided: float
    p_two_sided: float
    min_p_one_sided: float
    min_p_two_sided: float
    assignments: list[dict]


@dataclass(frozen=True)
class PlaceboPeriods:
    """The DiD on the pre-period alone, with a pretended start on each of its middle days.

    ``starts``: the placebo start days (the panel's day values); ``uplifts``, ``lowers``,
    ``uppers``: relative effects with their normal intervals (days as units). ``p_in_time``: share
    of placebo estimates at least as far from 0 as the real one (windows overlap and are shorter
    than the real post-period: a descriptive check, not an exact test).
    """

    starts: list
    uplifts: list[float]
    lowers: list[float]
    uppers: list[float]
    share_covering_zero: float
    mean_uplift: float
    max_abs_uplift: float
    p_in_time: float


@dataclass(frozen=True)
class RobustInterval:
    """A DiD interval from a regression with robust standard errors.

    ``se`` is the standard error of ``delta`` on the DiD's scale (log points, or the panel's
    units per region-day for ``level``); ``df`` the degrees of freedom of the t reference.
    """

    method: str
    uplift: float
    lower: float
    upper: float
    se: float
    p_value: float
    df: float


@dataclass(frozen=True)
class GeoInference:
    """Checks of a geo DiD that do not rest on days as independent units (``geo_inference``).

    ``power``: rows of ``region_power_table``; ``power_model``: the noise model behind them
    (``s2`` residual variance per region-day, ``rho`` lag-1 autocorrelation, ``model_se`` the
    model's standard error of ``delta`` for the design that ran, ``welch_se`` the DiD's own).
    ``cluster`` is None when the regression cannot run (``cluster_note`` says why).
    """

    scale: str
    permutation: RegionPermutation
    placebo: PlaceboPeriods
    hac: RobustInterval
    cluster: RobustInterval | None
    cluster_note: str
    power: list[dict]
    power_model: dict

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


def _arm_regions(wide: pd.DataFrame, arms: dict[str, str]) -> tuple[list[str], list[str]]:
    """(treated, control) regions of ``arms`` present in ``wide``'s columns, sorted."""
    treated = sorted(r for r in wide.columns if arms.get(r) == "treatment")
    control = sorted(r for r in wide.columns if arms.get(r) == "control")
    if not treated or not control:
        raise ValueError(f"need a treatment and a control region in the panel (arms: {arms})")
    return treated, control


def _delta_of(
    wide: pd.DataFrame, treated: Sequence[str], post: np.ndarray, scale: str
) -> tuple[float, float]:
    """(delta, treated post-period mean per region-day) for ``treated`` against the other columns."""
    t_mean = wide[list(treated)].mean(axis=1)
    c_mean = wide[[c for c in wide.columns if c not in set(treated)]].mean(axis=1)
    d = _diffs(pd.DataFrame({"treatment": t_mean, "control": c_mean}), scale)
    return float(d[post].mean() - d[~post].mean()), float(t_mean[post].mean())


def _treated_sets(
    regions: list[str], n_treated: int, observed: tuple[str, ...], max_assignments: int, seed: int
) -> tuple[list[tuple[str, ...]], bool]:
    """Every ``n_treated``-subset of ``regions`` (sorted tuples), or a random ``max_assignments``
    of them including ``observed`` when there are more; and whether the list is exhaustive."""
    if math.comb(len(regions), n_treated) <= max_assignments:
        return list(itertools.combinations(regions, n_treated)), True
    rng = np.random.default_rng(seed)
    drawn = {observed}
    while len(drawn) < max_assignments:
        drawn.add(tuple(sorted(rng.choice(regions, n_treated, replace=False).tolist())))
    return sorted(drawn), False


def region_permutation_test(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str = "gmv",
    day: str = "day",
    scale: str = "log",
    max_assignments: int = 10_000,
    seed: int = 7,
) -> RegionPermutation:
    """Permutation (placebo) test of the DiD over the assignment of regions to arms.

    Under the sharp null (treatment changes no region), any other choice of the same number of
    treated regions would have been as likely, so the DiD estimate of the assignment that ran is
    compared with the estimate of every other assignment: ``p_one_sided`` is the share of
    assignments whose ``delta`` is at least as large in the direction of the observed one,
    ``p_two_sided`` the share with ``|delta| >= |delta_observed|``.

    Parameters
    ----------
    panel
        One row per (region, day): ``region``, ``day`` and ``value`` (e.g. GMV, currency units).
    arms
        ``{region: "control" | "treatment"}``: the assignment that ran.
    start
        First treated day (same type as ``day``).
    scale
        ``"log"`` or ``"level"``, as in ``diff_in_diff``.
    max_assignments
        Enumerate all ``C(R, n_T)`` assignments up to this many; beyond, draw this many at random
        (the observed one included; p-values are then Monte Carlo estimates).

    Returns
    -------
    RegionPermutation
        With 4 regions (2 treated) there are only 6 assignments: the smallest one-sided p-value is
        1/6 = 0.17 and, because each assignment's mirror (arms swapped) has the opposite estimate,
        the smallest two-sided one is 2/6 = 0.33, whatever the effect.
    """
    wide = region_day_matrix(panel, value, day)
    treated, control = _arm_regions(wide, arms)
    wide = wide[sorted(treated + control)]
    post = np.asarray(wide.index >= start)
    observed = tuple(treated)
    sets, exhaustive = _treated_sets(
        list(wide.columns), len(treated), observed, max_assignments, seed
    )
    deltas = np.empty(len(sets))
    rows = []
    for i, chosen in enumerate(sets):
        deltas[i], t_post = _delta_of(wide, chosen, post, scale)
        rows.append(
            {
                "treated": list(chosen),
                "uplift": _relative(deltas[i], t_post, scale),
                "observed": chosen == observed,
            }
        )
    i_obs = sets.index(observed)
    d_obs = float(deltas[i_obs])
    tol = 1e-12 * max(1.0, abs(d_obs))
    direction = 1.0 if d_obs >= 0 else -1.0
    n = len(sets)
    mirrored = 2 * len(treated) == wide.shape[1]
    return RegionPermutation(
        n_assignments=n,
        exhaustive=exhaustive,
        observed_uplift=_relative(d_obs, _delta_of(wide, observed, post, scale)[1], scale),
        p_one_sided=float(np.mean(direction * deltas >= abs(d_obs) - tol)),
        p_two_sided=float(np.mean(np.abs(deltas) >= abs(d_obs) - tol)),
        min_p_one_sided=1.0 / n,
        min_p_two_sided=(2.0 if mirrored else 1.0) / n,
        assignments=rows,
    )


def placebo_periods(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str = "gmv",
    day: str = "day",
    scale: str = "log",
    min_days: int = 3,
    alpha: float = 0.05,
) -> PlaceboPeriods:
    """The DiD re-run on the pre-period alone, pretending treatment started on each of its days.

    For every placebo start ``s`` leaving at least ``min_days`` pre-period days on either side,
    ``delta_s = mean_{t >= s} d_t - mean_{t < s} d_t`` over pre-period days only, with its normal
    interval (days as units). Nothing was treated then, so the estimates should scatter around 0
    and their intervals cover it.

    Parameters
    ----------
    panel, arms, start, value, day, scale
        As in ``diff_in_diff``.
    min_days
        Fewest days on each side of a placebo start.

    Returns
    -------
    PlaceboPeriods. Raises ``ValueError`` when the pre-period has fewer than ``2 * min_days`` days.
    """
    daily = daily_arm_means(panel, arms, value, day)
    post = np.asarray(daily.index >= start)
    d = _diffs(daily, scale)
    d_pre, daily_pre = d[~post], daily[~post]
    n_pre = len(d_pre)
    if n_pre < 2 * min_days:
        raise ValueError(f"placebo periods need >= {2 * min_days} pre-period days, got {n_pre}")
    z = stats.norm.ppf(1 - alpha / 2)
    real_delta = float(d[post].mean() - d[~post].mean())
    starts, ups, los, his, deltas = [], [], [], [], []
    for s in range(min_days, n_pre - min_days + 1):
        fake = np.arange(n_pre) >= s
        delta, se = _delta(d_pre, fake)
        t_post = float(daily_pre["treatment"][fake].mean())
        starts.append(_plain(daily_pre.index[s]))
        deltas.append(delta)
        ups.append(_relative(delta, t_post, scale))
        los.append(_relative(delta - z * se, t_post, scale))
        his.append(_relative(delta + z * se, t_post, scale))
    cover = [lo <= 0 <= hi for lo, hi in zip(los, his, strict=True)]
    return PlaceboPeriods(
        starts=starts, uplifts=ups, lowers=los, uppers=his,
        share_covering_zero=float(np.mean(cover)), mean_uplift=float(np.mean(ups)),
        max_abs_uplift=float(np.max(np.abs(ups))),
        p_in_time=float(np.mean(np.abs(deltas) >= abs(real_delta))),
    )  # fmt: skip


def newey_west_lags(n: int) -> int:
    """Newey and West's (1994) rule of thumb for the HAC truncation lag: ``floor(4 (n/100)^(2/9))``."""
    return int(np.floor(4 * (n / 100) ** (2 / 9)))


def hac_interval(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str = "gmv",
    day: str = "day",
    scale: str = "log",
    alpha: float = 0.05,
    maxlags: int | None = None,
) -> RobustInterval:
    """The DiD as OLS on the daily series with HAC (Newey-West) standard errors.

    ``d_t = a + delta * post_t + e_t`` over all days (``d_t`` as in ``diff_in_diff``), so the OLS
    slope is exactly the DiD's ``delta``; its standard error allows heteroskedastic and serially
    correlated errors up to ``maxlags`` days (Bartlett kernel; default ``newey_west_lags(n)``, 3
    for 28 days), and the interval uses a t reference with ``n - 2`` degrees of freedom.

    Returns
    -------
    RobustInterval with ``uplift`` equal to ``diff_in_diff``'s.
    """
    daily = daily_arm_means(panel, arms, value, day)
    post = np.asarray(daily.index >= start)
    d = _diffs(daily, scale).to_numpy(float)
    lags = newey_west_lags(len(d)) if maxlags is None else maxlags
    x = np.column_stack([np.ones(len(d)), post.astype(float)])
    fit = OLS(d, x).fit(cov_type="HAC", cov_kwds={"maxlags": lags}, use_t=True)
    return _robust(fit, 1, float(daily["treatment"][post].mean()), scale, alpha,
                   f"HAC (Newey-West, {lags} lags) on the daily differences")  # fmt: skip


def cluster_interval(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str = "gmv",
    day: str = "day",
    scale: str = "log",
    alpha: float = 0.05,
) -> RobustInterval:
    """Two-way fixed-effects DiD on the region-day panel, standard errors clustered by region.

    ``y_rt = a_r + g_t + delta * treated_r * post_t + e_rt`` with ``y`` the log of ``value``
    (``scale="log"``: a mean of region logs, so ``delta`` differs slightly from ``diff_in_diff``'s
    log of arm means) or ``value`` itself (``"level"``: on a balanced panel exactly
    ``diff_in_diff``'s ``delta``). Errors may be correlated arbitrarily within a region over
    time; with ``G`` regions the t reference has ``G - 1`` degrees of freedom, and with as few as 4
    clusters the standard error itself is imprecise (Cameron, Gelbach and Miller 2008).

    Returns
    -------
    RobustInterval. Raises ``ValueError`` on the log scale when a region-day value is <= 0.
    """
    wide = region_day_matrix(panel, value, day)
    treated, control = _arm_regions(wide, arms)
    wide = wide[treated + control]
    if scale == "log" and (wide.to_numpy() <= 0).any():
        raise ValueError("log-scale cluster regression needs every region-day value > 0")
    y = np.log(wide.to_numpy(float)) if scale == "log" else wide.to_numpy(float)
    n_days, n_regions = y.shape
    post = np.asarray(wide.index >= start)
    region = np.tile(np.arange(n_regions), n_days)
    day_idx = np.repeat(np.arange(n_days), n_regions)
    did = (np.isin(region, np.arange(len(treated))) & post[day_idx]).astype(float)
    x = np.column_stack(
        [did, np.ones(y.size), np.eye(n_regions)[region][:, 1:], np.eye(n_days)[day_idx][:, 1:]]
    )
    fit = OLS(y.reshape(-1), x).fit(cov_type="cluster", cov_kwds={"groups": region}, use_t=True)
    t_post = float(wide[treated].to_numpy()[post].mean())
    return _robust(
        fit, 0, t_post, scale, alpha, f"two-way FE, clustered by region ({n_regions} clusters)"
    )


def _robust(
    fit, col: int, treated_post_mean: float, scale: str, alpha: float, method: str
) -> RobustInterval:  # noqa: ANN001
    """A ``RobustInterval`` from coefficient ``col`` of a fitted statsmodels OLS result."""
    lo, hi = np.asarray(fit.conf_int(alpha))[col]
    delta = float(fit.params[col])
    return RobustInterval(
        method=method, uplift=_relative(delta, treated_post_mean, scale),
        lower=_relative(float(lo), treated_post_mean, scale), upper=_relative(float(hi), treated_post_mean, scale),
        se=float(fit.bse[col]), p_value=float(fit.pvalues[col]), df=float(getattr(fit, "df_resid_inference", fit.df_resid)),
    )  # fmt: skip


def pre_period_noise(wide_pre: pd.DataFrame, scale: str = "log") -> tuple[float, float]:
    """Residual variance and lag-1 autocorrelation of a (days, regions) pre-period matrix.

    Fits ``y_rt = a_r + g_t + e_rt`` (two-way means; ``y`` = log value or value) and returns
    ``(s2, rho)``: ``s2 = sum e^2 / ((R - 1)(T - 1))`` (per region-day, squared log points or
    squared units) and ``rho`` the pooled lag-1 autocorrelation of ``e`` within regions, clipped
    to [0, 0.9] (negative values are mostly the fit's own bias with few days).
    """
    y = np.log(wide_pre.to_numpy(float)) if scale == "log" else wide_pre.to_numpy(float)
    e = y - y.mean(axis=0, keepdims=True) - y.mean(axis=1, keepdims=True) + y.mean()
    n_days, n_regions = e.shape
    s2 = float((e**2).sum() / ((n_regions - 1) * (n_days - 1)))
    rho = float((e[1:] * e[:-1]).sum() / (e**2).sum()) if (e**2).sum() > 0 else 0.0
    return s2, float(np.clip(rho, 0.0, 0.9))


def region_power_table(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str = "gmv",
    day: str = "day",
    scale: str = "log",
    n_regions: Sequence[int] = (4, 8, 16, 32),
    alpha: float = 0.05,
    power: float = 0.8,
) -> pd.DataFrame:
    """Minimum detectable effect of the DiD by number of regions, from the pre-period's noise.

    With ``s2`` and ``rho`` from ``pre_period_noise`` (pre-period only), a design with ``n_T``
    treated and ``n_C`` holdout regions (half each) and the experiment's ``n_pre`` and ``n_post``
    days has ``se(delta) = sqrt(s2 (1/n_T + 1/n_C) (1/n_pre + 1/n_post) (1 + rho) / (1 - rho))`` and
    detects, two-sided at ``alpha`` with probability ``power``, ``mde = (z_{1-alpha/2} + z_power)
    se(delta)``, reported relative (``exp(mde) - 1`` on the log scale; over the pre-period mean per
    region-day on the level scale). Two readings of "more regions":

    * ``mde_same_size``: new regions as large as today's (more traffic): ``s2`` unchanged;
    * ``mde_same_traffic``: today's traffic cut into ``n`` regions: with sampling noise ``s2``
      grows like ``n / R``, so the MDE does not shrink (only the permutation bound does).

    Returns
    -------
    pd.DataFrame, one row per entry of ``n_regions``: ``regions``, ``treated``, ``holdout``,
    ``se_delta``, ``mde_same_size``, ``mde_same_traffic`` (relative, 0.1 = 10%),
    ``assignments`` (``C(n, n_T)``), ``min_p_one_sided``, ``min_p_two_sided`` (permutation bounds).
    """
    wide = region_day_matrix(panel, value, day)
    treated, control = _arm_regions(wide, arms)
    wide = wide[treated + control]
    post = np.asarray(wide.index >= start)
    s2, rho = pre_period_noise(wide[~post], scale)
    n_pre, n_post, n_now = int((~post).sum()), int(post.sum()), wide.shape[1]
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    base = float(wide[~post].to_numpy().mean())
    rows = []
    for n in n_regions:
        n_t, n_c = n // 2, n - n // 2
        se = math.sqrt(s2 * (1 / n_t + 1 / n_c) * (1 / n_pre + 1 / n_post) * (1 + rho) / (1 - rho))
        assignments = math.comb(n, n_t)
        rows.append({"regions": n, "treated": n_t, "holdout": n_c, "se_delta": se,
                     "mde_same_size": _mde(z * se, base, scale),
                     "mde_same_traffic": _mde(z * se * math.sqrt(n / n_now), base, scale),
                     "assignments": assignments, "min_p_one_sided": 1 / assignments,
                     "min_p_two_sided": (2 if n_t == n_c else 1) / assignments})  # fmt: skip
    return pd.DataFrame(rows)


def _mde(effect: float, base: float, scale: str) -> float:
    """Relative MDE of an effect on the DiD's scale (log points, or units per region-day)."""
    return float(np.expm1(effect)) if scale == "log" else (effect / base if base else float("nan"))


def geo_inference(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str = "gmv",
    day: str = "day",
    scale: str = "log",
    alpha: float = 0.05,
    n_regions: Sequence[int] = (4, 8, 16, 32),
    power: float = 0.8,
) -> GeoInference:
    """Permutation test, placebo periods, HAC and cluster-robust intervals and the power table.

    Parameters are those of ``diff_in_diff``; ``n_regions`` and ``power`` go to
    ``region_power_table``. Placebo periods need >= 6 pre-period days (else a 2-day margin).

    Returns
    -------
    GeoInference.
    """
    args = (panel, arms, start, value, day, scale)
    try:
        cluster, note = cluster_interval(*args, alpha=alpha), ""
    except ValueError as exc:
        cluster, note = None, str(exc)
    power_rows = region_power_table(*args, n_regions=n_regions, alpha=alpha, power=power)
    return GeoInference(
        scale=scale,
        permutation=region_permutation_test(*args),
        placebo=placebo_periods(*args, min_days=_placebo_margin(panel, start, day), alpha=alpha),
        hac=hac_interval(*args, alpha=alpha),
        cluster=cluster,
        cluster_note=note,
        power=power_rows.to_dict(orient="records"),
        power_model=_power_model(*args, power_rows),
    )


def _placebo_margin(panel: pd.DataFrame, start: object, day: str) -> int:
    """3 days on each side of a placebo start when the pre-period has >= 6 days, else 1 or 2."""
    n_pre = int(panel.loc[panel[day] < start, day].nunique())
    return max(1, min(3, n_pre // 2))


def _power_model(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str,
    day: str,
    scale: str,
    rows: pd.DataFrame,
) -> dict:
    """The noise model behind the power table, and its standard error against the DiD's own."""
    wide = region_day_matrix(panel, value, day)
    treated, control = _arm_regions(wide, arms)
    wide = wide[treated + control]
    post = np.asarray(wide.index >= start)
    s2, rho = pre_period_noise(wide[~post], scale)
    d = _diffs(daily_arm_means(panel, arms, value, day), scale)
    _, welch = _delta(d, post)
    n_now = len(treated) + len(control)
    now = rows.loc[rows["regions"] == n_now, "se_delta"]
    return {"s2": s2, "rho": rho, "n_regions_now": n_now, "welch_se": welch,
            "model_se": float(now.iloc[0]) if len(now) else float("nan")}  # fmt: skip


def _plain(x: object) -> object:
    """A numpy scalar as the Python scalar (JSON-ready); anything else unchanged."""
    return x.item() if isinstance(x, np.generic) else x
