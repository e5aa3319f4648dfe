"""What any policy *would have* earned in the simulated marketplace, computed from the hidden truth.

The policy interface (``policy(ctx, cands) -> (listing_ids, propensities)``) is described in
``policy_api``; ``RequestContext``, ``CandidateSet`` and ``Policy`` are re-exported here.

``evaluate_policy`` runs the marketplace (``policy_market``) with the policy answering the
requests of the chosen days and regions, the logged heuristic everywhere else (earlier days, other
regions), and sums the truth's expectations over the policy's impressions::

    clicks    = sum P(click)                                   (position bias included)
    purchases = sum P(click) * P(purchase | click) * available
    gmv       = sum P(click) * P(purchase | click) * available * price
    revenue   = gmv weighted by take rate

``available``: the listing is still free (not sold out, locked or delisted) when the purchase
would happen on this path. Inventory is consumed as in the logged market: baskets, other buyers'
purchases and the policy's own sales make listings unavailable from then on, and candidates are
drawn among free listings (K = ``cfg.n_candidates`` by default, half from complements of the
basket, as the logs were). Every policy sees the same checkouts (common random numbers per day),
so comparisons are paired until inventory makes the paths differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel

from checkout_recs import contract
from checkout_recs.simulate.config import SimConfig
from checkout_recs.simulate.logging_policy import HeuristicPolicy
from checkout_recs.simulate.policy_api import CandidateSet, Policy, RequestContext, candidate_set
from checkout_recs.simulate.policy_market import MarketRecord, run_policy_market
from checkout_recs.simulate.scenario import SimWorld
from checkout_recs.simulate.world import US_PER_DAY

__all__ = [
    "AGE_BUCKETS",
    "CandidateSet",
    "Policy",
    "PolicyValue",
    "RequestContext",
    "candidate_set",
    "evaluate_policy",
    "heuristic_policy",
    "logged_expectations",
    "oracle_policy",
    "policy_value",
    "random_policy",
]

AGE_BUCKETS = ((0.0, 1.0, "<1d"), (1.0, 7.0, "1-7d"), (7.0, 30.0, "7-30d"), (30.0, np.inf, ">30d"))


class PolicyValue(BaseModel):
    """Expected outcomes of a policy over the evaluated requests (sums; per-request means in ``per_request``).

    ``realised`` holds the sums actually drawn on the simulated path (clicks, purchases, gmv).
    """

    n_requests: int
    clicks: float
    purchases: float
    gmv: float
    revenue: float
    per_request: dict[str, float]
    realised: dict[str, float]
    impressions_by_seller_cohort: dict[str, int]  # incumbent / regular / new
    impressions_by_listing_age: dict[str, int]  # <1d / 1-7d / 7-30d / >30d
    purchases_by_seller_cohort: dict[str, float]


def _cohort(world: SimWorld, items: np.ndarray) -> np.ndarray:
    s = world.sellers
    seller = world.cat.seller[items]
    return np.where(s.incumbent[seller], "incumbent", np.where(s.new[seller], "new", "regular"))


def policy_value(world: SimWorld, shown: pd.DataFrame) -> PolicyValue:
    """Aggregate impressions of a ``MarketRecord.shown`` frame (already filtered) into a ``PolicyValue``."""
    e = MarketRecord(shown, pd.DataFrame()).expected() if len(shown) else None
    n_req = int(shown["request"].nunique()) if len(shown) else 0
    acc = {"clicks": 0.0, "purchases": 0.0, "gmv": 0.0, "revenue": 0.0}
    real = {"clicks": 0.0, "purchases": 0.0, "gmv": 0.0}
    by_cohort: dict[str, int] = {"incumbent": 0, "regular": 0, "new": 0}
    buys_cohort: dict[str, float] = dict.fromkeys(by_cohort, 0.0)
    by_age: dict[str, int] = {name: 0 for *_, name in AGE_BUCKETS}
    if e is not None:
        acc = {
            "clicks": float(e["p_click"].sum()),
            "purchases": float(e["exp_purchase"].sum()),
            "gmv": float(e["exp_gmv"].sum()),
            "revenue": float(e["exp_revenue"].sum()),
        }
        real = {
            "clicks": float(e["clicked"].sum()),
            "purchases": float(e["purchased"].sum()),
            "gmv": float((e["purchased"] * e["price"]).sum()),
        }
        items = e["listing_id"].to_numpy() - 1
        cohort = _cohort(world, items)
        for name in by_cohort:
            by_cohort[name] = int((cohort == name).sum())
            buys_cohort[name] = float(e["exp_purchase"].to_numpy()[cohort == name].sum())
        age = (e["t_us"].to_numpy() - world.cat.listed_at[items]) / US_PER_DAY
        for lo, hi, name in AGE_BUCKETS:
            by_age[name] = int(((age >= lo) & (age < hi)).sum())
    n = max(n_req, 1)
    return PolicyValue(
        n_requests=n_req,
        **acc,
        per_request={k: v / n for k, v in acc.items()},
        realised=real,
        impressions_by_seller_cohort=by_cohort,
        impressions_by_listing_age=by_age,
        purchases_by_seller_cohort=buys_cohort,
    )


def evaluate_policy(
    policy: Policy,
    days: Sequence[int] | int,
    regions: Sequence[str] | None = None,
    world: SimWorld | None = None,
    requests_per_day: int | None = None,
    n_candidates: int | None = None,
) -> PolicyValue:
    """Expected clicks, purchases, GMV and exposure of ``policy`` on simulated requests.

    Parameters
    ----------
    policy : see ``policy_api``.
    days : day indices (0 = ``cfg.start``), or a count meaning ``range(days)``. Days before the
        first one are simulated with the logged heuristic (the inventory the policy inherits).
    regions : only requests from these regions (geo holdouts); all when None. Other regions are
        served by the logged heuristic.
    world : the simulated world (``SimWorld.build(cfg)`` or ``SimWorld.from_raw(raw_dir)``);
        the demo world when None.
    requests_per_day : checkouts drawn per day, all regions (default ``cfg.checkouts_per_day``).
    n_candidates : K, candidates offered per request (default ``cfg.n_candidates``, as logged).

    Returns
    -------
    PolicyValue. Raises ``ValueError`` when the policy returns an invalid slate.
    """

    world = world or SimWorld.build(SimConfig())
    day_set = set(range(days)) if isinstance(days, int) else {int(d) for d in days}
    keep = set(regions) if regions is not None else set(world.cfg.regions)
    if not day_set:
        return policy_value(world, pd.DataFrame())

    def policy_for(day: int, region: str) -> Policy | None:
        return policy if day in day_set and region in keep else None

    rec = run_policy_market(world, policy_for, max(day_set) + 1, requests_per_day, n_candidates)
    s = rec.shown
    return policy_value(world, s[s["day"].isin(day_set) & s["region"].isin(keep) & ~s["logged"]])


# ---- reference policies -------------------------------------------------------------------------


def heuristic_policy(world: SimWorld, seed: int = 0) -> Policy:
    """The logged heuristic (static boosts, incumbents first, epsilon-random) as a ``Policy``."""
    h = HeuristicPolicy(world.tax, world.sellers, world.cat, world.cfg.epsilon)
    rng = np.random.default_rng(seed)

    def policy(ctx: RequestContext, cands: CandidateSet) -> tuple[np.ndarray, np.ndarray]:
        leaf = world.cat.leaf[ctx.basket_listing_ids - 1].astype(np.int64)
        items, prop = h.slate(rng, leaf, cands.listing_id - 1)
        return items + 1, prop

    return policy


def random_policy(seed: int = 0) -> Policy:
    """Six uniformly random candidates (propensity 1/K per slot)."""
    rng = np.random.default_rng(seed)

    def policy(ctx: RequestContext, cands: CandidateSet) -> tuple[np.ndarray, np.ndarray]:
        k = len(cands.listing_id)
        return rng.permutation(cands.listing_id)[: contract.SLATE_SIZE], np.full(
            contract.SLATE_SIZE, 1.0 / k
        )

    return policy


def oracle_policy(world: SimWorld) -> Policy:
    """Upper reference: the six candidates of highest *true* expected revenue (reads the hidden truth)."""

    def policy(ctx: RequestContext, cands: CandidateSet) -> tuple[np.ndarray, np.ndarray]:
        items = cands.listing_id - 1
        k = len(items)
        bl = np.tile(world.cat.leaf[ctx.basket_listing_ids - 1].astype(np.int64), (k, 1))
        u = np.full(k, ctx.user_id - 1)
        dev = np.full(k, contract.DEVICES.index(ctx.device))
        pc = world.truth.click_prob(u, bl, items, np.zeros(k, np.int64), np.full(k, ctx.t_us), dev)
        value = pc * world.truth.purchase_prob(u, bl, items) * cands.price * cands.take_rate
        best = np.argsort(-value, kind="stable")[: contract.SLATE_SIZE]
        return cands.listing_id[best], np.ones(contract.SLATE_SIZE)

    return policy


def logged_expectations(world: SimWorld, raw_dir: Path) -> pd.DataFrame:
    """The truth's P(click) and P(purchase | click) for every logged impression of a run.

    Parameters
    ----------
    world : the run's world (``SimWorld.from_raw(raw_dir)``).
    raw_dir : the run's raw folder (``impressions`` and ``orders`` are read).

    Returns
    -------
    DataFrame (one row per impression): request_id, slot, listing_id, p_click, p_purchase.
    """

    imp = pq.read_table(Path(raw_dir) / "impressions").to_pandas()
    orders = pq.read_table(Path(raw_dir) / "orders", columns=["order_id", "listing_id"]).to_pandas()
    orders["leaf"] = world.cat.leaf[orders["listing_id"].to_numpy() - 1].astype(np.int64)
    orders["pos"] = orders.groupby("order_id").cumcount()
    wide = orders.pivot(index="order_id", columns="pos", values="leaf").fillna(-1).astype(np.int64)
    bl = wide.reindex(imp["order_id"]).fillna(-1).to_numpy(np.int64)
    u = imp["user_id"].to_numpy() - 1
    items = imp["listing_id"].to_numpy() - 1
    t = imp["event_timestamp"].dt.as_unit("us").astype("int64").to_numpy()
    dev = imp["device"].map({d: i for i, d in enumerate(contract.DEVICES)}).to_numpy()
    p_click = world.truth.click_prob(u, bl, items, imp["slot"].to_numpy().astype(np.int64), t, dev)
    return pd.DataFrame(
        {
            "request_id": imp["request_id"],
            "slot": imp["slot"],
            "listing_id": imp["listing_id"],
            "p_click": p_click,
            "p_purchase": world.truth.purchase_prob(u, bl, items),
        }
    )


def logged_outcomes(raw_dir: Path) -> pd.DataFrame:
    """What the logged requests of a run realised: one row per request.

    Parameters
    ----------
    raw_dir : a run's raw folder (``impressions``, ``clicks``, ``purchases`` are read).

    Returns
    -------
    DataFrame indexed by request_id with clicks, purchases (counts) and gmv (currency).
    """

    raw = Path(raw_dir)
    ids = pd.Index(
        pq.read_table(raw / "impressions", columns=["request_id"]).column(0).unique().to_pylist()
    )
    clicks = pq.read_table(raw / "clicks", columns=["request_id"]).to_pandas()
    pur = pq.read_table(raw / "purchases", columns=["purchase_id", "price"]).to_pandas()
    # purchase_id = p-<seed>-<request number>-<slot>; request_id = r-<seed>-<request number>
    pur["request_id"] = "r-" + pur["purchase_id"].str.split("-").str[1:3].str.join("-")
    return pd.DataFrame(
        {
            "clicks": clicks.groupby("request_id").size().reindex(ids, fill_value=0),
            "purchases": pur.groupby("request_id").size().reindex(ids, fill_value=0),
            "gmv": pur.groupby("request_id")["price"].sum().reindex(ids, fill_value=0.0),
        }
    )
