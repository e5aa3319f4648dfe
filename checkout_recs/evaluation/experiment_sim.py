"""The seed's results table, reproduced in simulation: a geo holdout analysed by DiD.

The simulated marketplace runs a pre-period with every region on the old heuristic, then a test
period in which holdout regions stay on the heuristic and treated regions get the new policy.
Per region and day the simulator's ``evaluate_policy`` gives expected GMV from its hidden truth
(common random numbers: every policy sees the same requests), so the *true* uplift of the treated
regions is known exactly: the same treated requests are also evaluated under the heuristic.

Reported, treated vs holdout: (a) DiD incremental GMV with its interval next to the true uplift;
(b) median first-week impressions of cold-start listings (listed during the test period, counted
among those the candidate generator surfaced in their first week); (c) exposure disparity between
new and incumbent sellers: each cohort's share of impressions divided by its share of candidate
slots (its opportunity), and ``gap = 1 - ratio_new / ratio_incumbent``; (d) the share of slots
shown with propensity < 1 (exploration spend).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from checkout_recs.evaluation.did import DidResult, diff_in_diff

US_PER_DAY = 86_400_000_000


@dataclass
class Recorder:
    """Wraps a simulator policy and records what it was offered and what it showed."""

    policy: Callable
    arm: str
    shown: list[tuple[str, int, int, float]] = field(default_factory=list)  # arm, listing, t_us, propensity
    offered: list[tuple[str, int, int]] = field(default_factory=list)  # arm, listing, t_us

    def __call__(self, ctx, cands):  # noqa: ANN001, ANN204 - the simulator's Policy protocol
        ids, prop = self.policy(ctx, cands)
        for lid in cands.listing_id.tolist():
            self.offered.append((self.arm, lid, ctx.t_us))
        for lid, p in zip(np.asarray(ids).tolist(), np.asarray(prop, float).tolist(), strict=True):
            self.shown.append((self.arm, lid, ctx.t_us, p))
        return ids, prop


@dataclass
class GeoSimResult:
    """Everything ``experiment simulate`` prints and reports."""

    did: DidResult
    true_uplift: float
    panel: pd.DataFrame
    arms: dict[str, str]
    start_day: int
    table: pd.DataFrame  # the results table: quantity, treated, holdout, note


def run_geo_experiment(
    world,  # noqa: ANN001 - checkout_recs.simulate.scenario.SimWorld
    make_treated: Callable[[], Callable],
    make_control: Callable[[], Callable],
    holdout: list[str],
    pre_days: int,
    test_days: int,
    requests_per_day: int | None = None,
    n_candidates: int = 60,
    progress: Callable[[int, int], None] | None = None,
) -> GeoSimResult:
    """Run the holdout experiment on ``world`` and analyse it.

    Parameters
    ----------
    make_treated, make_control
        Factories of simulator policies (``policy(ctx, cands) -> (ids, propensities)``).
    holdout
        Regions kept on the control policy during the test period.
    pre_days, test_days
        Lengths of the two periods, days (>= 2 each).
    progress
        Called with (day, total days) after each simulated day.

    Returns
    -------
    GeoSimResult. Raises ``ValueError`` if ``holdout`` is empty or covers every region.
    """
    from checkout_recs.simulate.evaluate import evaluate_policy

    regions = list(world.cfg.regions)
    if not holdout or set(holdout) >= set(regions):
        raise ValueError(f"holdout must be a non-empty strict subset of {regions}")
    arms = {r: ("control" if r in holdout else "treatment") for r in regions}
    treated_rec = Recorder(make_treated(), "treatment")
    control_rec = Recorder(make_control(), "control")
    counterfactual, pre_policy = make_control(), make_control()
    rows, truth = [], {"treated": 0.0, "counterfactual": 0.0}
    total = pre_days + test_days
    for day in range(total):
        for region in regions:
            in_test = day >= pre_days and arms[region] == "treatment"
            pol = treated_rec if in_test else (control_rec if day >= pre_days else pre_policy)
            v = evaluate_policy(pol, [day], [region], world, requests_per_day, n_candidates)
            rows.append({"region": region, "day": day, "gmv": v.gmv, "requests": v.n_requests})
            if in_test:
                truth["treated"] += v.gmv
                truth["counterfactual"] += evaluate_policy(
                    counterfactual, [day], [region], world, requests_per_day, n_candidates
                ).gmv
        if progress:
            progress(day + 1, total)
    panel = pd.DataFrame(rows)
    did = diff_in_diff(panel, arms, start=pre_days, value="gmv")
    true_uplift = truth["treated"] / truth["counterfactual"] - 1 if truth["counterfactual"] else float("nan")
    table = results_table(world, did, true_uplift, treated_rec, control_rec)
    return GeoSimResult(did, true_uplift, panel, arms, pre_days, table)


def _frames(world, recs: list[Recorder]) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: ANN001
    shown = pd.DataFrame(
        [r for rec in recs for r in rec.shown], columns=["arm", "listing_id", "t_us", "propensity"]
    )
    offered = pd.DataFrame([r for rec in recs for r in rec.offered], columns=["arm", "listing_id", "t_us"])
    for df in (shown, offered):
        idx = df["listing_id"].to_numpy() - 1
        df["listed_at"] = world.cat.listed_at[idx]
        seller = world.cat.seller[idx]
        age = (df["t_us"].to_numpy() - world.sellers.joined_at[seller]) / US_PER_DAY
        df["cohort"] = np.where(
            age < 30, "new", np.where(world.sellers.incumbent[seller], "incumbent", "regular")
        )
    return shown, offered


def cold_start_impressions(shown: pd.DataFrame, offered: pd.DataFrame, first_day_us: int) -> pd.DataFrame:
    """Per arm: median and mean first-week impressions of cold-start listings.

    Cold-start listings: listed at or after ``first_day_us`` and offered as a candidate within
    7 days of listing (zero impressions count). Returns columns ``arm, listings, median, mean``.
    """
    out = []
    for arm in ("treatment", "control"):
        o = offered[(offered["arm"] == arm) & (offered["listed_at"] >= first_day_us)]
        o = o[o["t_us"] - o["listed_at"] < 7 * US_PER_DAY]
        ids = pd.Index(o["listing_id"].unique())
        s = shown[(shown["arm"] == arm) & shown["listing_id"].isin(ids)]
        s = s[s["t_us"] - s["listed_at"] < 7 * US_PER_DAY]
        counts = s["listing_id"].value_counts().reindex(ids, fill_value=0)
        out.append({"arm": arm, "listings": len(ids), "median": float(counts.median()) if len(ids) else float("nan"),
                    "mean": float(counts.mean()) if len(ids) else float("nan")})  # fmt: skip
    return pd.DataFrame(out)


def exposure_gap(shown: pd.DataFrame, offered: pd.DataFrame) -> pd.DataFrame:
    """Per arm: exposure-to-opportunity ratio of new and incumbent sellers and their gap."""
    out = []
    for arm in ("treatment", "control"):
        s = shown[shown["arm"] == arm]["cohort"].value_counts(normalize=True)
        o = offered[offered["arm"] == arm]["cohort"].value_counts(normalize=True)
        r_new = s.get("new", 0.0) / o.get("new", np.nan)
        r_inc = s.get("incumbent", 0.0) / o.get("incumbent", np.nan)
        out.append({"arm": arm, "ratio_new": r_new, "ratio_incumbent": r_inc, "gap": 1 - r_new / r_inc})
    return pd.DataFrame(out)


def results_table(
    world, did: DidResult, true_uplift: float, treated: Recorder, control: Recorder
) -> pd.DataFrame:  # noqa: ANN001
    """The seed's results table: quantity, treated, holdout, note."""
    shown, offered = _frames(world, [treated, control])
    first_test_us = int(shown["t_us"].min()) - (int(shown["t_us"].min()) % US_PER_DAY) if len(shown) else 0
    cold = cold_start_impressions(shown, offered, first_test_us).set_index("arm")
    gap = exposure_gap(shown, offered).set_index("arm")
    explore = shown.assign(x=shown["propensity"] < 1).groupby("arm")["x"].mean()
    gap_red = (
        1 - gap.loc["treatment", "gap"] / gap.loc["control", "gap"] if gap.loc["control", "gap"] else np.nan
    )
    med_t, med_c = cold.loc["treatment", "median"], cold.loc["control", "median"]
    cold_note = f"change {med_t / med_c - 1:+.0%}" if med_c else "holdout median is 0: ratio undefined"
    mean_t, mean_c = cold.loc["treatment", "mean"], cold.loc["control", "mean"]
    mean_note = f"change {mean_t / mean_c - 1:+.0%}" if mean_c else ""
    rows = [
        ("incremental GMV (DiD)", f"{did.uplift:+.1%} [{did.lower:+.1%}, {did.upper:+.1%}]", "", f"true uplift {true_uplift:+.1%}; truth in CI: {did.lower <= true_uplift <= did.upper}"),
        ("cold-start first-week impressions, median", med_t, med_c, cold_note),
        ("cold-start first-week impressions, mean", mean_t, mean_c, f"{mean_note} ({int(cold.loc['treatment', 'listings'])} / {int(cold.loc['control', 'listings'])} listings)"),
        ("new-seller exposure / opportunity", gap.loc["treatment", "ratio_new"], gap.loc["control", "ratio_new"], ""),
        ("incumbent exposure / opportunity", gap.loc["treatment", "ratio_incumbent"], gap.loc["control", "ratio_incumbent"], ""),
        ("new vs incumbent exposure gap", gap.loc["treatment", "gap"], gap.loc["control", "gap"], f"gap reduced by {gap_red:.0%}"),
        ("share of slots with propensity < 1 (randomised)", explore.get("treatment", np.nan), explore.get("control", np.nan), "test period"),
        ("parallel trends", "passed" if did.parallel_trends.passed else "FAILED", "", f"pre-trend p={did.parallel_trends.slope_p_value:.2f}"),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["quantity", "treated", "holdout", "note"])
