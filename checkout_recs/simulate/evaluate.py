"""What any policy *would have* earned in the simulated marketplace, computed from the hidden truth.

The policy interface
--------------------
A policy is any callable ``policy(ctx, cands) -> (listing_ids, propensities)``:

* ``ctx`` is a ``RequestContext``: request id, user id, region, device, time, and the basket
  (listing ids and category ids just bought).
* ``cands`` is a ``CandidateSet`` of K listings available at that time in the user's region
  (arrays of shape (K,): ids, category, seller, price, take rate, listing age, seller age,
  rating, whether the seller is new). Only observable fields: nothing of the hidden truth.
* it returns six distinct listing ids taken from ``cands`` (shape (6,), slot order) and the
  probability that it would put each in its slot (shape (6,), in (0, 1]; 1.0 for a deterministic
  policy). ``evaluate_policy`` raises ``ValueError`` on anything else.

``evaluate_policy`` draws the same requests for every policy (common random numbers per day: a
paired comparison), asks the policy for its six, and sums the truth's expectations::

    clicks    = sum P(click)                      (position bias included)
    purchases = sum P(click) * P(purchase | click)
    gmv       = sum P(click) * P(purchase | click) * price
    revenue   = gmv weighted by take rate

Inventory is static here (listed and not delisted at the request time; sales by other buyers are
ignored), so that policies are compared on the same candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from checkout_recs import contract
from checkout_recs.simulate.logging_policy import HeuristicPolicy
from checkout_recs.simulate.scenario import DayDraw, SimWorld, draw_day
from checkout_recs.simulate.world import US_PER_DAY, US_PER_S, rng_for

STREAM_EVAL = 6
AGE_BUCKETS = ((0.0, 1.0, "<1d"), (1.0, 7.0, "1-7d"), (7.0, 30.0, "7-30d"), (30.0, np.inf, ">30d"))


@dataclass(frozen=True)
class RequestContext:
    """One post-checkout request: who, where, when, and the basket (B items)."""

    request_id: str
    user_id: int
    region: str
    device: str
    t_us: int  # µs since epoch, UTC
    basket_listing_ids: np.ndarray  # (B,) int64
    basket_category_ids: np.ndarray  # (B,) int32


@dataclass(frozen=True)
class CandidateSet:
    """K available listings with their observable fields, all arrays of shape (K,)."""

    listing_id: np.ndarray  # int64
    category_id: np.ndarray  # int32, leaf
    top_category_id: np.ndarray  # int32
    seller_id: np.ndarray  # int64
    price: np.ndarray  # float64, currency units
    take_rate: np.ndarray  # float64 in (0, 1)
    age_days: np.ndarray  # float64, days since listed
    seller_age_days: np.ndarray  # float64, days since the seller joined (may be < 30 for new)
    seller_rating: np.ndarray  # float64, NaN when unrated
    seller_is_new: np.ndarray  # bool, joined within 30 days


Policy = Callable[[RequestContext, CandidateSet], tuple[np.ndarray, np.ndarray]]


class PolicyValue(BaseModel):
    """Expected outcomes of a policy over the evaluated requests (sums; per-request means in ``per_request``)."""

    n_requests: int
    clicks: float
    purchases: float
    gmv: float
    revenue: float
    per_request: dict[str, float]
    impressions_by_seller_cohort: dict[str, int]  # incumbent / regular / new
    impressions_by_listing_age: dict[str, int]  # <1d / 1-7d / 7-30d / >30d
    purchases_by_seller_cohort: dict[str, float]


def candidate_set(world: SimWorld, items: np.ndarray, t_us: int) -> CandidateSet:
    """Observable fields of listing indices ``items`` (K,) at time ``t_us``."""
    c, s, tax = world.cat, world.sellers, world.tax
    seller = c.seller[items]
    seller_age = (t_us - s.joined_at[seller]) / US_PER_DAY
    return CandidateSet(
        listing_id=items.astype(np.int64) + 1, category_id=tax.leaf_ids[c.leaf[items]],
        top_category_id=tax.top[tax.leaf_ids[c.leaf[items]]], seller_id=seller.astype(np.int64) + 1,
        price=c.price[items].astype(np.float64), take_rate=tax.take_rate[c.leaf[items]],
        age_days=(t_us - c.listed_at[items]) / US_PER_DAY, seller_age_days=seller_age,
        seller_rating=s.rating[seller], seller_is_new=seller_age < 30,
    )


def _cohort(world: SimWorld, items: np.ndarray) -> np.ndarray:
    s = world.sellers
    seller = world.cat.seller[items]
    return np.where(s.incumbent[seller], "incumbent", np.where(s.new[seller], "new", "regular"))


def _check_slate(ids: np.ndarray, prop: np.ndarray, cands: CandidateSet) -> None:
    ids, prop = np.asarray(ids), np.asarray(prop)
    if ids.shape != (contract.SLATE_SIZE,) or prop.shape != (contract.SLATE_SIZE,):
        raise ValueError(f"a policy must return six ids and six propensities, got {ids.shape} and {prop.shape}")
    if len(set(ids.tolist())) != contract.SLATE_SIZE or not np.isin(ids, cands.listing_id).all():
        raise ValueError("a policy must return six distinct listing ids taken from the candidates")
    if not ((prop > 0) & (prop <= 1)).all():
        raise ValueError("propensities must lie in (0, 1]")


def evaluate_policy(
    policy: Policy,
    days: Sequence[int] | int,
    regions: Sequence[str] | None = None,
    world: SimWorld | None = None,
    requests_per_day: int | None = None,
    n_candidates: int = 60,
) -> PolicyValue:
    """Expected clicks, purchases, GMV and exposure of ``policy`` on simulated requests.

    Parameters
    ----------
    policy : see the module docstring.
    days : day indices (0 = ``cfg.start``), or a count meaning ``range(days)``.
    regions : only requests from these regions (geo holdouts); all when None.
    world : the simulated world (``SimWorld.build(cfg)`` or ``SimWorld.from_raw(raw_dir)``);
        the demo world when None.
    requests_per_day : requests drawn per day before the region filter (default ``cfg.checkouts_per_day``).
    n_candidates : K, candidates offered to the policy per request.

    Returns
    -------
    PolicyValue. Raises ``ValueError`` when the policy returns an invalid slate.
    """
    from checkout_recs.simulate.config import SimConfig

    world = world or SimWorld.build(SimConfig())
    cfg = world.cfg
    day_list = list(range(days)) if isinstance(days, int) else list(days)
    keep_regions = set(regions) if regions is not None else set(cfg.regions)
    n_req = 0
    acc = {"clicks": 0.0, "purchases": 0.0, "gmv": 0.0, "revenue": 0.0}
    by_cohort: dict[str, int] = {"incumbent": 0, "regular": 0, "new": 0}
    buys_cohort: dict[str, float] = dict.fromkeys(by_cohort, 0.0)
    by_age: dict[str, int] = {name: 0 for *_, name in AGE_BUCKETS}
    for day in day_list:
        rng = rng_for(cfg.seed, STREAM_EVAL, day)
        d = draw_day(world, rng, day, requests_per_day or cfg.checkouts_per_day, n_candidates)
        for r in range(len(d.t)):
            if cfg.regions[d.region[r]] not in keep_regions:
                continue
            shown = _one_request(world, policy, d, r, day, n_candidates)
            if shown is None:
                continue
            items, p_click, p_buy = shown
            price = world.cat.price[items]
            n_req += 1
            acc["clicks"] += float(p_click.sum())
            acc["purchases"] += float((p_click * p_buy).sum())
            acc["gmv"] += float((p_click * p_buy * price).sum())
            acc["revenue"] += float((p_click * p_buy * price * world.tax.take_rate[world.cat.leaf[items]]).sum())
            for cohort, pb in zip(_cohort(world, items).tolist(), (p_click * p_buy).tolist(), strict=True):
                by_cohort[cohort] += 1
                buys_cohort[cohort] += pb
            age = (int(d.t[r]) - world.cat.listed_at[items]) / US_PER_DAY
            for lo, hi, name in AGE_BUCKETS:
                by_age[name] += int(((age >= lo) & (age < hi)).sum())
    n = max(n_req, 1)
    return PolicyValue(
        n_requests=n_req, clicks=acc["clicks"], purchases=acc["purchases"], gmv=acc["gmv"], revenue=acc["revenue"],
        per_request={k: acc[k] / n for k in ("clicks", "purchases", "gmv", "revenue")},
        impressions_by_seller_cohort=by_cohort, impressions_by_listing_age=by_age, purchases_by_seller_cohort=buys_cohort,
    )


def _one_request(
    world: SimWorld, policy: Policy, d: DayDraw, r: int, day: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Basket and candidates of request ``r`` (static inventory), the policy's six and their truth."""
    t = int(d.t[r])
    first = [i for i in d.basket_picks[r].tolist() if i >= 0][:1]
    if not first:
        return None
    second = [i for i in d.second_picks[r].tolist() if i >= 0 and i != first[0]][:1]
    basket = np.asarray(first + second, np.int64)
    taken: set[int] = set(basket.tolist())
    cands: list[int] = []
    for i in d.comp_picks[r].tolist()[: 2 * k] + d.other_picks[r].tolist():
        if i >= 0 and i not in taken and len(cands) < k:
            taken.add(i)
            cands.append(i)
    if len(cands) < contract.SLATE_SIZE:
        return None
    cand_idx = np.asarray(cands, np.int64)
    cs = candidate_set(world, cand_idx, t)
    ctx = RequestContext(
        request_id=f"eval-{day}-{r}", user_id=int(d.user[r]) + 1, region=world.cfg.regions[d.region[r]],
        device=contract.DEVICES[d.device[r]], t_us=t + 2 * US_PER_S, basket_listing_ids=basket + 1,
        basket_category_ids=world.tax.leaf_ids[world.cat.leaf[basket]],
    )
    ids, prop = policy(ctx, cs)
    _check_slate(np.asarray(ids), np.asarray(prop, dtype=float), cs)
    items = np.asarray(ids, np.int64) - 1
    bl = np.tile(world.cat.leaf[basket].astype(np.int64), (contract.SLATE_SIZE, 1))
    u = np.full(contract.SLATE_SIZE, d.user[r])
    slots = np.arange(contract.SLATE_SIZE)
    p_click = world.truth.click_prob(u, bl, items, slots, np.full(6, ctx.t_us), np.full(6, d.device[r]))
    return items, p_click, world.truth.purchase_prob(u, bl, items)


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
        return rng.permutation(cands.listing_id)[: contract.SLATE_SIZE], np.full(contract.SLATE_SIZE, 1.0 / k)

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
    import pyarrow.parquet as pq

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
    return pd.DataFrame({"request_id": imp["request_id"], "slot": imp["slot"], "listing_id": imp["listing_id"],
                         "p_click": p_click, "p_purchase": world.truth.purchase_prob(u, bl, items)})
