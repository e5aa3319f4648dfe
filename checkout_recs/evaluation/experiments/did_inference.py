"""Inference for geographic DiD that does not lean on days being independent units.

Beside ``did``'s day-level intervals, ``geo_inference`` gathers:

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
* ``region_power_table`` (``geo_power``) — minimum detectable effects for more regions, from the
  pre-period's region-day residual variance.
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

from checkout_recs.evaluation.experiments.did import (
    arm_panel,
    daily_arm_means,
    daily_differences,
    delta_and_se,
    relative_effect,
)
from checkout_recs.evaluation.experiments.geo_power import power_model, region_power_table


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


def _delta_of(
    wide: pd.DataFrame, treated: Sequence[str], post: np.ndarray, scale: str
) -> tuple[float, float]:
    """(delta, treated post-period mean per region-day) for ``treated`` against the other columns."""
    t_mean = wide[list(treated)].mean(axis=1)
    c_mean = wide[[c for c in wide.columns if c not in set(treated)]].mean(axis=1)
    d = daily_differences(pd.DataFrame({"treatment": t_mean, "control": c_mean}), scale)
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
    wide, treated, control, post = arm_panel(panel, arms, start, value, day)
    wide = wide[sorted(treated + control)]
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
                "uplift": relative_effect(deltas[i], t_post, scale),
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
        observed_uplift=relative_effect(d_obs, _delta_of(wide, observed, post, scale)[1], scale),
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
    d = daily_differences(daily, scale)
    d_pre, daily_pre = d[~post], daily[~post]
    n_pre = len(d_pre)
    if n_pre < 2 * min_days:
        raise ValueError(f"placebo periods need >= {2 * min_days} pre-period days, got {n_pre}")
    z = stats.norm.ppf(1 - alpha / 2)
    real_delta = float(d[post].mean() - d[~post].mean())
    starts, ups, los, his, deltas = [], [], [], [], []
    for s in range(min_days, n_pre - min_days + 1):
        fake = np.arange(n_pre) >= s
        delta, se = delta_and_se(d_pre, fake)
        t_post = float(daily_pre["treatment"][fake].mean())
        starts.append(_plain(daily_pre.index[s]))
        deltas.append(delta)
        ups.append(relative_effect(delta, t_post, scale))
        los.append(relative_effect(delta - z * se, t_post, scale))
        his.append(relative_effect(delta + z * se, t_post, scale))
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
    d = daily_differences(daily, scale).to_numpy(float)
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
    wide, treated, control, post = arm_panel(panel, arms, start, value, day)
    if scale == "log" and (wide.to_numpy() <= 0).any():
        raise ValueError("log-scale cluster regression needs every region-day value > 0")
    y = np.log(wide.to_numpy(float)) if scale == "log" else wide.to_numpy(float)
    n_days, n_regions = y.shape
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
        method=method, uplift=relative_effect(delta, treated_post_mean, scale),
        lower=relative_effect(float(lo), treated_post_mean, scale), upper=relative_effect(float(hi), treated_post_mean, scale),
        se=float(fit.bse[col]), p_value=float(fit.pvalues[col]), df=float(getattr(fit, "df_resid_inference", fit.df_resid)),
    )  # fmt: skip


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
        power_model=power_model(*args, power_rows),
    )


def _placebo_margin(panel: pd.DataFrame, start: object, day: str) -> int:
    """3 days on each side of a placebo start when the pre-period has >= 6 days, else 1 or 2."""
    n_pre = int(panel.loc[panel[day] < start, day].nunique())
    return max(1, min(3, n_pre // 2))


def _plain(x: object) -> object:
    """A numpy scalar as the Python scalar (JSON-ready); anything else unchanged."""
    return x.item() if isinstance(x, np.generic) else x
