"""Online experiments: assignment, per-arm metrics with confidence intervals, power / MDE.

Assignment is deterministic: by a hash of (experiment, user id) for user-level A/B tests, or by
region for geographic holdouts (``design_geo_holdout`` pairs regions of similar pre-period GMV
and holds one of each pair out). Metrics are ratios of per-unit sums, analysed at the level of
the randomisation unit (user or region), so sessions of one user are not treated as independent:

=====================  ===============  ==============
metric                 numerator        denominator
=====================  ===============  ==============
``revenue_per_session`` revenue (take)   sessions
``gmv_per_session``     GMV              sessions
``ctr``                 clicks           impressions
``conversion``          purchases        clicks (post-click conversion, P(purchase | click))
=====================  ===============  ==============

Intervals: the delta method (Deng et al. 2018, "Applying the delta method in metric analytics")
and a unit-level bootstrap. Difference-in-differences is in ``checkout_recs.evaluation.experiments.did``;
ramp guardrails in ``checkout_recs.evaluation.experiments.guardrails``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

METRICS: dict[str, tuple[str, str]] = {
    "revenue_per_session": ("revenue", "sessions"),
    "gmv_per_session": ("gmv", "sessions"),
    "ctr": ("clicks", "impressions"),
    "conversion": ("purchases", "clicks"),
}
UNIT_COLUMNS = ("sessions", "impressions", "clicks", "purchases", "gmv", "revenue")


# ------------------------------------------------------------------ assignment


def _experiment_salt(experiment: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha256(experiment.encode()).digest()[:8], "little"))


def hash_fraction(ids: np.ndarray, experiment: str) -> np.ndarray:
    """A stable uniform number in [0, 1) per id (splitmix64 of id XOR a hash of ``experiment``).

    Parameters
    ----------
    ids
        (n,) non-negative integer ids (users).
    experiment
        Experiment name; another name gives an independent split.

    Returns
    -------
    np.ndarray
        (n,) float64 in [0, 1), the same for the same (id, experiment) on every machine.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(ids, dtype=np.uint64) ^ _experiment_salt(experiment)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_by_user_hash(
    user_ids: np.ndarray, experiment: str, treatment_share: float = 0.5
) -> np.ndarray:
    """(n,) bool: True for users in treatment. Deterministic; ``treatment_share`` in (0, 1)."""
    if not 0 < treatment_share < 1:
        raise ValueError("treatment_share must be in (0, 1)")
    return hash_fraction(user_ids, experiment) < treatment_share


def design_geo_holdout(
    region_gmv: pd.Series, holdout_share: float = 0.5, seed: int = 7
) -> dict[str, str]:
    """Choose holdout (control) regions, matched on pre-period GMV.

    Regions are sorted by ``region_gmv`` and cut into consecutive groups of ``round(1/share)``;
    one region of each group (drawn with ``seed``) is held out on the old system, the rest are
    treated. With one region left over it is treated.

    Returns
    -------
    dict
        ``{region: "control" | "treatment"}``. Raises ``ValueError`` with fewer than 2 regions.
    """
    if len(region_gmv) < 2:
        raise ValueError("a geo holdout needs at least 2 regions")
    if not 0 < holdout_share < 1:
        raise ValueError("holdout_share must be in (0, 1)")
    rng = np.random.default_rng(seed)
    group = max(2, round(1 / holdout_share))
    ordered = list(region_gmv.sort_values(ascending=False).index)
    arms = {str(r): "treatment" for r in ordered}
    for start in range(0, len(ordered), group):
        block = ordered[start : start + group]
        if len(block) >= 2:
            arms[str(block[rng.integers(len(block))])] = "control"
    return arms


# ------------------------------------------------------------------ sessions and units


def sessions_from_impressions(labelled: pd.DataFrame) -> pd.DataFrame:
    """One row per request from labelled impressions (``contract.LABELLED_IMPRESSIONS``).

    Returns
    -------
    pd.DataFrame
        Columns ``request_id, user_id, region, policy, event_timestamp, sessions (=1),
        impressions, clicks, purchases, gmv, revenue``; money in currency units.
    """
    df = labelled.assign(
        gmv=labelled["purchased"] * labelled["price"],
        revenue=labelled["purchased"] * labelled["price"] * labelled["take_rate"],
    )
    g = df.groupby("request_id", sort=False)
    out = g.agg(
        user_id=("user_id", "first"),
        region=("region", "first"),
        policy=("policy", "first"),
        event_timestamp=("event_timestamp", "min"),
        impressions=("listing_id", "size"),
        clicks=("clicked", "sum"),
        purchases=("purchased", "sum"),
        gmv=("gmv", "sum"),
        revenue=("revenue", "sum"),
    ).reset_index()
    out.insert(5, "sessions", 1)
    return out


def unit_totals(sessions: pd.DataFrame, unit: str, arm: str = "arm") -> pd.DataFrame:
    """Sum the session columns per (arm, unit): the rows the delta method and bootstrap use."""
    return sessions.groupby([arm, unit], observed=True)[list(UNIT_COLUMNS)].sum().reset_index()


# ------------------------------------------------------------------ comparisons


@dataclass(frozen=True)
class MetricResult:
    """Treatment vs control on one metric; ``lift`` is relative (0.05 = +5%)."""

    metric: str
    method: str
    control: float
    treatment: float
    diff: float
    lift: float
    lift_lower: float
    lift_upper: float
    p_value: float
    n_control: int
    n_treatment: int

    def as_dict(self) -> dict[str, float | str | int]:
        """Plain dict for JSON and tables."""
        return asdict(self)


def _ratio_and_var(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Ratio of means and its delta-method variance for (n,) per-unit sums."""
    n = len(num)
    mx, my = den.mean(), num.mean()
    if n < 2 or mx == 0:
        return (my / mx if mx else float("nan")), float("nan")
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] / mx**2 - 2 * my * cov[0, 1] / mx**3 + my**2 * cov[1, 1] / mx**4) / n
    return my / mx, float(var)


def compare_delta(
    units: pd.DataFrame, metric: str, alpha: float = 0.05, arm: str = "arm"
) -> MetricResult:
    """Delta-method comparison of ``metric`` between arms ``control`` and ``treatment``.

    ``units``: one row per randomisation unit with ``arm`` and the columns of ``METRICS[metric]``.
    The relative lift's variance is ``(T/C)^2 (Var T / T^2 + Var C / C^2)``. Returns NaN bounds
    when an arm has fewer than 2 units.
    """
    num_col, den_col = METRICS[metric]
    parts = {a: units[units[arm] == a] for a in ("control", "treatment")}
    (c, vc), (t, vt) = (
        _ratio_and_var(p[num_col].to_numpy(float), p[den_col].to_numpy(float))
        for p in parts.values()
    )
    lift = t / c - 1 if c else float("nan")
    se = abs(t / c) * np.sqrt(vt / t**2 + vc / c**2) if c and t else float("nan")
    z = stats.norm.ppf(1 - alpha / 2)
    se_diff = np.sqrt(vc + vt)
    p = float(2 * stats.norm.sf(abs(t - c) / se_diff)) if se_diff > 0 else float("nan")
    return MetricResult(
        metric, "delta", c, t, t - c, lift, lift - z * se, lift + z * se, p,
        len(parts["control"]), len(parts["treatment"]),
    )  # fmt: skip


def compare_bootstrap(
    units: pd.DataFrame,
    metric: str,
    alpha: float = 0.05,
    n_bootstrap_samples: int = 1000,
    random_state: int | None = None,
    arm: str = "arm",
) -> MetricResult:
    """Unit-level percentile bootstrap of the relative lift; the p-value is the two-sided share
    of replicates on the other side of zero."""
    num_col, den_col = METRICS[metric]
    rng = np.random.default_rng(random_state)
    reps, point = {}, {}
    for a in ("control", "treatment"):
        p = units[units[arm] == a]
        num, den = p[num_col].to_numpy(float), p[den_col].to_numpy(float)
        point[a] = num.sum() / den.sum()
        idx = rng.integers(0, len(num), size=(n_bootstrap_samples, len(num)))
        reps[a] = num[idx].sum(1) / np.maximum(den[idx].sum(1), 1e-12)
    lifts = reps["treatment"] / reps["control"] - 1
    c, t = point["control"], point["treatment"]
    p_two = 2 * min((lifts <= 0).mean(), (lifts >= 0).mean())
    return MetricResult(
        metric, "bootstrap", c, t, t - c, t / c - 1,
        float(np.percentile(lifts, 100 * alpha / 2)), float(np.percentile(lifts, 100 * (1 - alpha / 2))),
        float(min(1.0, p_two)), int((units[arm] == "control").sum()), int((units[arm] == "treatment").sum()),
    )  # fmt: skip


def analyze_ab(
    sessions: pd.DataFrame, unit: str = "user_id", alpha: float = 0.05, seed: int = 7
) -> pd.DataFrame:
    """Every metric of ``METRICS`` by the delta method and the bootstrap.

    ``sessions`` needs an ``arm`` column (``control`` / ``treatment``) and the session columns of
    ``sessions_from_impressions``. Returns one row per (metric, method).
    """
    units = unit_totals(sessions, unit)
    rows = []
    for m in METRICS:
        rows.append(compare_delta(units, m, alpha).as_dict())
        rows.append(compare_bootstrap(units, m, alpha, random_state=seed).as_dict())
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ power


def minimum_detectable_effect(
    baseline_mean: float,
    baseline_sd: float,
    n_per_arm: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest relative lift a two-arm test detects: ``(z_{1-a/2} + z_power) sd sqrt(2/n) / mean``.

    ``baseline_sd`` is the per-unit standard deviation of the metric (same units as the mean).
    Returns a relative effect (0.05 = 5%); ``inf`` when ``n_per_arm`` < 2 or the mean is 0.
    """
    if n_per_arm < 2 or baseline_mean == 0:
        return float("inf")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * baseline_sd * np.sqrt(2.0 / n_per_arm) / abs(baseline_mean))


def required_units_per_arm(
    baseline_mean: float,
    baseline_sd: float,
    relative_mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Units per arm needed to detect ``relative_mde`` (inverse of ``minimum_detectable_effect``)."""
    if relative_mde <= 0:
        raise ValueError("relative_mde must be > 0")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return int(np.ceil(2 * (z * baseline_sd / (relative_mde * abs(baseline_mean))) ** 2))
