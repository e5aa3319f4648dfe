"""The seed's results table, reproduced in simulation: a geo holdout analysed by DiD.

The simulated marketplace (``simulate.policy_market``: inventory consumed as in the logged
market) runs a pre-period with every region on the control policy (the old heuristic), then a
test period in which holdout regions stay on it and treated regions get the new policy. The panel
holds, per region and day, the expected GMV of the recommendations on that path (truth's
P(click) * P(purchase | click) * still available * price) and the realised GMV. A second run with
the control policy everywhere (common random numbers) is the counterfactual, so the *true*
uplift of the treated regions over the test period is known.

Reported, treated vs holdout: (a) DiD incremental GMV with its interval next to the true uplift
(on expected GMV, and on realised GMV as an analyst would see it); (b) median first-week
impressions of cold-start listings (listed during the test period, counted among those the
candidate generator surfaced in their first week); (c) exposure disparity between new and
incumbent sellers: each cohort's share of impressions divided by its share of candidate slots
(its opportunity), and ``gap = 1 - ratio_new / ratio_incumbent``; (d) the share of slots shown
with propensity < 1 (exploration).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from checkout_recs.evaluation.experiments.did import DidResult, diff_in_diff

if TYPE_CHECKING:
    from checkout_recs.simulate.config import SimConfig

US_PER_DAY = 86_400_000_000
#: Arms of the results: treated regions, holdout regions, treated regions under the control policy.
ARMS = ("treatment", "control", "counterfactual")


@dataclass
class GeoSimResult:
    """Everything ``experiment simulate`` prints and reports.

    ``panel``: region, day, gmv (expected, currency), gmv_realised, requests.
    ``shown`` / ``offered``: the real run's impressions and candidates (``MarketRecord``) with
    ``arm`` (pre / treatment / control).
    """

    did: DidResult
    did_realised: DidResult
    true_uplift: float
    panel: pd.DataFrame
    arms: dict[str, str]
    start_day: int
    table: pd.DataFrame  # the results table: quantity, treated, holdout, note
    shown: pd.DataFrame
    offered: pd.DataFrame
    counterfactual_panel: pd.DataFrame  # the same panel with the control policy everywhere


def _panel(rec, regions: list[str], n_days: int) -> pd.DataFrame:  # noqa: ANN001 - a MarketRecord
    e = rec.expected()
    e = e.assign(gmv=e["exp_gmv"], gmv_realised=e["purchased"] * e["price"])
    g = e.groupby(["region", "day"]).agg(
        gmv=("gmv", "sum"), gmv_realised=("gmv_realised", "sum"), requests=("request", "nunique")
    )
    full = pd.MultiIndex.from_product([regions, range(n_days)], names=["region", "day"])
    return g.reindex(full, fill_value=0).reset_index()


def run_geo_experiment(
    world,  # noqa: ANN001 - checkout_recs.simulate.scenario.SimWorld
    make_treated: Callable[[], Callable],
    make_control: Callable[[], Callable],
    holdout: list[str],
    pre_days: int,
    test_days: int,
    requests_per_day: int | None = None,
    n_candidates: int | None = None,
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
    requests_per_day, n_candidates
        Checkouts per day (all regions) and candidates per request (defaults: the world's config).
    progress
        Called with (days done, total) over both runs (real, then counterfactual).

    Returns
    -------
    GeoSimResult. Raises ``ValueError`` if ``holdout`` is empty or covers every region.
    """
    from checkout_recs.simulate.policy_market import run_policy_market

    regions = list(world.cfg.regions)
    if not holdout or set(holdout) >= set(regions):
        raise ValueError(f"holdout must be a non-empty strict subset of {regions}")
    arms = {r: ("control" if r in holdout else "treatment") for r in regions}
    treated, control, everywhere = make_treated(), make_control(), make_control()
    total = pre_days + test_days

    def real(day: int, region: str):  # noqa: ANN202
        return treated if day >= pre_days and arms[region] == "treatment" else control

    def step(offset: int) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda d, n: progress(offset + d, 2 * total))

    rec = run_policy_market(world, real, total, requests_per_day, n_candidates, step(0))
    cf = run_policy_market(
        world, lambda day, region: everywhere, total, requests_per_day, n_candidates, step(total)
    )
    panel = _panel(rec, regions, total)
    did = diff_in_diff(panel, arms, start=pre_days, value="gmv")
    did_realised = diff_in_diff(panel, arms, start=pre_days, value="gmv_realised", scale="level")
    cf_panel = _panel(cf, regions, total)
    sel = (panel["day"] >= pre_days) & panel["region"].map(arms).eq("treatment")
    base = float(cf_panel.loc[sel, "gmv"].sum())
    true_uplift = float(panel.loc[sel, "gmv"].sum()) / base - 1 if base else float("nan")
    shown, offered = (_with_arm(world, f, arms, pre_days) for f in (rec.shown, rec.offered))
    # the treated regions' test period under the control policy: the counterfactual arm
    cf_arms = {r: ("counterfactual" if a == "treatment" else "unused") for r, a in arms.items()}
    cf_shown, cf_offered = (_with_arm(world, f, cf_arms, pre_days) for f in (cf.shown, cf.offered))
    shown_all = pd.concat([shown, cf_shown[cf_shown["arm"] == "counterfactual"]], ignore_index=True)
    offered_all = pd.concat(
        [offered, cf_offered[cf_offered["arm"] == "counterfactual"]], ignore_index=True
    )
    table = results_table(shown_all, offered_all, did, did_realised, true_uplift)
    return GeoSimResult(
        did, did_realised, true_uplift, panel, arms, pre_days, table, shown, offered, cf_panel
    )


def _with_arm(world, df: pd.DataFrame, arms: dict[str, str], pre_days: int) -> pd.DataFrame:  # noqa: ANN001
    """``df`` plus arm (pre / treatment / control), listed_at and seller cohort at the request time."""
    idx = df["listing_id"].to_numpy() - 1
    seller = world.cat.seller[idx]
    age = (df["t_us"].to_numpy() - world.sellers.joined_at[seller]) / US_PER_DAY
    return df.assign(
        arm=np.where(df["day"] < pre_days, "pre", df["region"].map(arms)),
        listed_at=world.cat.listed_at[idx],
        cohort=np.where(
            age < 30, "new", np.where(world.sellers.incumbent[seller], "incumbent", "regular")
        ),
    )


def cold_start_impressions(
    shown: pd.DataFrame, offered: pd.DataFrame, first_day_us: int
) -> pd.DataFrame:
    """Per arm: median and mean first-week impressions of cold-start listings.

    Cold-start listings: listed at or after ``first_day_us`` and offered as a candidate within
    7 days of listing (zero impressions count). Returns columns ``arm, listings, median, mean,
    shown`` (share of them with at least one first-week impression: the median is >= 1 exactly
    when it exceeds 0.5).
    """
    out = []
    for arm in ARMS:
        o = offered[(offered["arm"] == arm) & (offered["listed_at"] >= first_day_us)]
        o = o[o["t_us"] - o["listed_at"] < 7 * US_PER_DAY]
        ids = pd.Index(o["listing_id"].unique())
        s = shown[(shown["arm"] == arm) & shown["listing_id"].isin(ids)]
        s = s[s["t_us"] - s["listed_at"] < 7 * US_PER_DAY]
        counts = s["listing_id"].value_counts().reindex(ids, fill_value=0)
        out.append({"arm": arm, "listings": len(ids), "median": float(counts.median()) if len(ids) else float("nan"),
                    "mean": float(counts.mean()) if len(ids) else float("nan"),
                    "shown": float((counts > 0).mean()) if len(ids) else float("nan")})  # fmt: skip
    return pd.DataFrame(out)


def exposure_gap(shown: pd.DataFrame, offered: pd.DataFrame) -> pd.DataFrame:
    """Per arm: exposure-to-opportunity ratio of new and incumbent sellers and their gap."""
    out = []
    for arm in ARMS:
        s = shown[shown["arm"] == arm]["cohort"].value_counts(normalize=True)
        o = offered[offered["arm"] == arm]["cohort"].value_counts(normalize=True)
        r_new = s.get("new", 0.0) / o.get("new", np.nan)
        r_inc = s.get("incumbent", 0.0) / o.get("incumbent", np.nan)
        out.append(
            {"arm": arm, "ratio_new": r_new, "ratio_incumbent": r_inc, "gap": 1 - r_new / r_inc}
        )
    return pd.DataFrame(out)


def results_table(
    shown: pd.DataFrame,
    offered: pd.DataFrame,
    did: DidResult,
    did_realised: DidResult,
    true_uplift: float,
) -> pd.DataFrame:
    """The seed's results table from arm-labelled frames (``ARMS``; ``pre`` rows are ignored).

    Columns: quantity, treated, holdout, counterfactual (the treated regions under the control
    policy: the truth the holdout stands in for), note.
    """
    test = shown[shown["arm"] != "pre"]
    off = offered[offered["arm"] != "pre"]
    first_test_us = (
        int(test["t_us"].min()) - (int(test["t_us"].min()) % US_PER_DAY) if len(test) else 0
    )
    cold = cold_start_impressions(test, off, first_test_us).set_index("arm")
    gap = exposure_gap(test, off).set_index("arm")
    explore = test.assign(x=test["propensity"] < 1).groupby("arm")["x"].mean()

    def change(col: pd.Series, base: str) -> str:
        return f"{col['treatment'] / col[base] - 1:+.0%}" if col[base] else "base is 0"

    def did_row(name: str, d: DidResult) -> tuple:
        return (
            name,
            f"{d.uplift:+.1%} [{d.lower:+.1%}, {d.upper:+.1%}]",
            "",
            f"{true_uplift:+.1%} (true)",
            f"truth in CI: {d.lower <= true_uplift <= d.upper}",
        )

    def arm_row(name: str, col: pd.Series, note: str = "") -> tuple:
        return (name, col["treatment"], col["control"], col["counterfactual"], note)

    reduced = 1 - gap["gap"] / gap["gap"]["control"]
    rows = [
        did_row("incremental GMV (DiD, expected GMV)", did),
        did_row("incremental GMV (DiD, realised GMV)", did_realised),
        arm_row("cold-start first-week impressions, median", cold["median"],
                f"vs holdout {change(cold['median'], 'control')}, vs counterfactual {change(cold['median'], 'counterfactual')}"),
        arm_row("cold-start first-week impressions, mean", cold["mean"],
                f"vs holdout {change(cold['mean'], 'control')}, vs counterfactual {change(cold['mean'], 'counterfactual')}"),
        arm_row("cold-start listings (offered in first week)", cold["listings"]),
        arm_row("cold-start listings shown at least once in first week (share)", cold["shown"],
                "the median is >= 1 exactly when this exceeds 0.5"),
        arm_row("new-seller exposure / opportunity", gap["ratio_new"]),
        arm_row("incumbent exposure / opportunity", gap["ratio_incumbent"]),
        arm_row("new vs incumbent exposure gap", gap["gap"],
                f"reduced by {reduced['treatment']:.0%} vs holdout, by {1 - gap['gap']['treatment'] / gap['gap']['counterfactual']:.0%} vs counterfactual"),
        arm_row("share of slots with propensity < 1 (randomised)", explore.reindex(list(ARMS)), "test period"),
        ("parallel trends (pre-period)", "passed" if did.parallel_trends.passed else "FAILED", "", "",
         f"pre-trend p={did.parallel_trends.slope_p_value:.2f}"),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["quantity", "treated", "holdout", "counterfactual", "note"])


#: The world recipe of ``experiment simulate`` (``geo_world_config``): see its docstring.
GEO_WORLD: dict[str, object] = {
    "n_sellers": 1_500,
    "n_listings": 50_000,
    "n_users": 4_000,
    "checkouts_per_day": 1_500,
    "initial_listing_share": 0.2,
    "regions": ("north", "south", "east", "west"),
}


def geo_world_config(
    seed: int,
    days: int,
    checkouts_per_day: int | None = None,
    overrides: dict[str, object] | None = None,
) -> SimConfig:
    """The simulated world of ``experiment simulate``: four regions, a busy marketplace whose
    stock turns over in about a week, with inventory near steady state.

    Why these sizes. On the post-checkout page every checkout shows six listings and sells its
    basket (about one listing per checkout here), so in steady state (arrivals ~ sales) a one-off
    listing earns a handful of recommendation impressions over its whole life whatever the
    scale; what sets its *first-week* impressions is traffic per live listing. The earlier recipe
    (40,000 listings, 70% listed before the start, 300 checkouts/day) had ~24,000 live listings for
    300 checkouts a day: a new listing was offered ~2 times in its first week and the heuristic's
    median was 0 impressions, so a median could not move. Here 1,500 checkouts/day (5x) meet
    ~8,000-11,000 live listings (20% of 50,000 listed before the start, then ~1,430 new per day,
    about as many as sell, so stock turns over in about a week): a new listing is offered a median
    9 times in its first week and the heuristic shows it a median 2 times (mean 2.9, 77% shown at
    least once; heuristic everywhere, seed 5, 28 days). Most candidates are young (~57% under 7
    days), as in a fast-selling C2C market. Cost: ~10,500 treated serving requests per 14-day
    test period (5 minutes for `experiment simulate` at load ~2 on the 2-core box, 17-20 at load ~5).

    ``checkouts_per_day`` overrides the recipe's 1,500 (the catalogue is not rescaled with it);
    ``overrides`` replaces any other ``SimConfig`` field of the recipe (small worlds for tests).
    """
    from checkout_recs.simulate.config import SimConfig

    recipe = {
        **GEO_WORLD,
        **({} if checkouts_per_day is None else {"checkouts_per_day": checkouts_per_day}),
        **(overrides or {}),
    }
    return SimConfig.model_validate({"seed": seed, "days": days, **recipe})


def with_cap_row(
    table: pd.DataFrame, ledger: dict[str, dict[str, float]], cap: float | None = None
) -> pd.DataFrame:
    """``table`` plus the exploration-cap row: the worst day's expected revenue given up to
    exploration as a share of expected revenue served (``ledger``: ``ServingStats.ledger``),
    against ``cap`` (default ``ExplorationConfig.daily_share``)."""
    from checkout_recs.policy.config import PolicyConfig

    cap = PolicyConfig().exploration.daily_share if cap is None else cap
    shares = [d["spent"] / d["served"] for d in ledger.values() if d["served"] > 0]
    worst = max(shares, default=0.0)
    row = {
        "quantity": "exploration spend, worst day (share of expected revenue)",
        "treated": round(worst, 4),
        "holdout": "",
        "counterfactual": "",
        "note": f"cap {cap:.0%}: {'holds' if worst <= cap else 'BROKEN'}",
    }
    return (
        pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        if len(table)
        else pd.DataFrame([row])
    )


def with_floor_row(table: pd.DataFrame, floors: dict[str, dict[str, float]]) -> pd.DataFrame:
    """``table`` plus a row for the exposure floors (``ServingStats.floors``): reserved slots per
    answer and the expected revenue they gave up as a share of the answers' expected revenue (the
    model's own estimate, test period; the true cost is the change of the true uplift against a
    run with the floors off)."""
    reserved = sum(f["reserved"] for f in floors.values())
    given_up = sum(f["given_up"] for f in floors.values())
    served = sum(f["served"] for f in floors.values())
    share = given_up / (served + given_up) if served + given_up > 0 else 0.0
    row = {
        "quantity": "exposure floors: expected revenue given up (model's estimate, share)",
        "treated": round(share, 4),
        "holdout": "",
        "counterfactual": "",
        "note": f"{int(reserved)} reserved slots over {len(floors)} days",
    }
    return pd.concat([table, pd.DataFrame([row])], ignore_index=True)
