"""Power of a geographic DiD: minimum detectable effects by number of regions, from the
pre-period's region-day noise (``region_power_table``), and the noise model behind it
(``power_model``), checked against the DiD's own standard error."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from checkout_recs.evaluation.experiments.did import (
    arm_panel,
    daily_arm_means,
    daily_differences,
    delta_and_se,
)


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
    wide, treated, control, post = arm_panel(panel, arms, start, value, day)
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


def power_model(
    panel: pd.DataFrame,
    arms: dict[str, str],
    start: object,
    value: str,
    day: str,
    scale: str,
    rows: pd.DataFrame,
) -> dict:
    """The noise model behind the power table, and its standard error against the DiD's own."""
    wide, treated, control, post = arm_panel(panel, arms, start, value, day)
    s2, rho = pre_period_noise(wide[~post], scale)
    d = daily_differences(daily_arm_means(panel, arms, value, day), scale)
    _, welch = delta_and_se(d, post)
    n_now = len(treated) + len(control)
    now = rows.loc[rows["regions"] == n_now, "se_delta"]
    return {"s2": s2, "rho": rho, "n_regions_now": n_now, "welch_se": welch,
            "model_se": float(now.iloc[0]) if len(now) else float("nan")}  # fmt: skip
