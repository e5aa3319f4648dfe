"""The marketplace run with any policy: evaluation consumes inventory as the logged market does.

``run_policy_market(world, policy_for, n_days)`` runs the same day loop as the logged market
(``market.Market``: abandoned locks, baskets locked then sold, candidates drawn among listings
still free, purchases after clicks that succeed only while the listing is free, quantities) but
asks ``policy_for(day, region)`` who chooses the six of each request: a simulator ``Policy``
(``policy_api``), or None for the logged heuristic. So a listing sold, locked or delisted is
unavailable from then on whichever policy sold it, and a policy that sells more leaves less.

Random streams (common random numbers across policies): per day, one stream draws the checkouts
and candidate options, one the clicks / purchase intents / times, one the heuristic's slates. Two
runs that differ only in the policy see the same checkouts until inventory makes them differ.

Every impression is recorded with the truth's expectations: ``p_click``, ``p_purchase``
(P(purchase | click)) and ``available`` (the listing still free at the moment a purchase would
happen on this path), so ``expected purchases = sum p_click * p_purchase * available``;
realised clicks and purchases are recorded too. The candidates offered per request are recorded
for exposure-to-opportunity and cold-start measures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from checkout_recs import contract
from checkout_recs.simulate.market import Market
from checkout_recs.simulate.policy_api import Policy, RequestContext, candidate_set, check_slate
from checkout_recs.simulate.scenario import DayDraw, SimWorld, draw_day
from checkout_recs.simulate.world import US_PER_S, rng_for

STREAM_EVAL_DRAW, STREAM_EVAL_OUTCOME, STREAM_EVAL_SLATE = 6, 8, 9

#: (day, region) -> the policy answering there, or None for the logged heuristic.
PolicyFor = Callable[[int, str], Policy | None]


@dataclass
class MarketRecord:
    """What a policy market run showed and offered.

    ``shown``: one row per impression — day, region, request, user, slot, listing_id, propensity,
    p_click, p_purchase, available, clicked, purchased, price, take_rate, t_us (request time, µs),
    logged (True where the built-in heuristic answered).
    ``offered``: one row per (request, candidate, in offer order) — day, region, request, user,
    device (index into ``contract.DEVICES``), basket_leaf_0/1 (leaf index, -1 = none), listing_id,
    t_us, logged.
    """

    shown: pd.DataFrame
    offered: pd.DataFrame

    def expected(self) -> pd.DataFrame:
        """``shown`` plus exp_purchase = p_click * p_purchase * available and exp_gmv, exp_revenue."""
        s = self.shown
        buy = s["p_click"] * s["p_purchase"] * s["available"]
        return s.assign(
            exp_purchase=buy,
            exp_gmv=buy * s["price"],
            exp_revenue=buy * s["price"] * s["take_rate"],
        )


class PolicyMarket(Market):
    """``Market`` whose slates come from ``policy_for`` and whose every impression is recorded."""

    def __init__(
        self,
        world: SimWorld,
        policy_for: PolicyFor,
        requests_per_day: int | None = None,
        n_candidates: int | None = None,
        stream_seed: int | None = None,
    ) -> None:
        super().__init__(world)
        self.stream_seed = world.cfg.seed if stream_seed is None else stream_seed
        self.policy_for = policy_for
        self.track_availability = True
        self.k = n_candidates or world.cfg.n_candidates
        self.n_per_day = requests_per_day or world.cfg.checkouts_per_day
        self._day = 0
        self._slate_rng = rng_for(world.cfg.seed, STREAM_EVAL_SLATE)
        self._shown: list[dict[str, np.ndarray]] = []
        self._offered: list[dict[str, np.ndarray]] = []

    def _draw(self, day: int) -> DayDraw:
        seed = self.stream_seed
        self._day = day
        self.rng = rng_for(seed, STREAM_EVAL_OUTCOME, day)
        self._slate_rng = rng_for(seed, STREAM_EVAL_SLATE, day)
        return draw_day(self.w, rng_for(seed, STREAM_EVAL_DRAW, day), day, self.n_per_day, self.k)

    def _choose(
        self,
        d: DayDraw,
        rows: np.ndarray,
        basket: np.ndarray,
        basket_leaf: np.ndarray,
        cands: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        regions = self.cfg.regions
        pols = [self.policy_for(self._day, regions[int(d.region[r])]) for r in rows.tolist()]
        logged = np.array([p is None for p in pols], bool)
        items = np.zeros((len(rows), contract.SLATE_SIZE), np.int64)
        prop = np.ones((len(rows), contract.SLATE_SIZE))
        if logged.any():
            items[logged], prop[logged] = self.policy.slate_batch(
                self._slate_rng, basket_leaf[logged], cands[logged]
            )
        for j in np.flatnonzero(~logged).tolist():
            items[j], prop[j] = self._ask(pols[j], d, int(rows[j]), basket[j], cands[j])  # type: ignore[arg-type]
        self._record_offered(d, rows, basket_leaf, cands, logged)
        self._logged = logged
        return items, prop

    def _ask(
        self, policy: Policy, d: DayDraw, r: int, basket: np.ndarray, cands: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        w = self.w
        t = int(d.t[r])
        b = basket[basket >= 0]
        cs = candidate_set(w, cands[cands >= 0], t)
        ctx = RequestContext(
            request_id=f"eval-{self._day}-{self._n + r}",
            user_id=int(d.user[r]) + 1,
            region=self.cfg.regions[int(d.region[r])],
            device=contract.DEVICES[int(d.device[r])],
            t_us=t + 2 * US_PER_S,
            basket_listing_ids=b + 1,
            basket_category_ids=w.tax.leaf_ids[w.cat.leaf[b]],
        )
        ids, prop = policy(ctx, cs)
        check_slate(np.asarray(ids), np.asarray(prop, dtype=float), cs)
        return np.asarray(ids, np.int64) - 1, np.asarray(prop, float)

    def _record_offered(
        self,
        d: DayDraw,
        rows: np.ndarray,
        basket_leaf: np.ndarray,
        cands: np.ndarray,
        logged: np.ndarray,
    ) -> None:
        valid = cands >= 0
        per = valid.sum(axis=1)
        self._offered.append(
            {
                "user": np.repeat(d.user[rows], per) + 1,
                "device": np.repeat(d.device[rows], per),
                "basket_leaf_0": np.repeat(basket_leaf[:, 0], per),
                "basket_leaf_1": np.repeat(basket_leaf[:, 1], per),
                "day": np.full(int(per.sum()), self._day),
                "region": np.repeat(d.region[rows], per),
                "request": np.repeat(self._n + rows, per),
                "listing_id": cands[valid] + 1,
                "t_us": np.repeat(d.t[rows] + 2 * US_PER_S, per),
                "logged": np.repeat(logged, per),
            }
        )

    def _observe(
        self,
        d: DayDraw,
        rows: np.ndarray,
        req: np.ndarray,
        items: np.ndarray,
        prop: np.ndarray,
        p_click: np.ndarray,
        p_buy: np.ndarray,
        avail: np.ndarray,
        clicked: np.ndarray,
        done: np.ndarray,
    ) -> None:
        flat = items.ravel()
        bought = np.zeros(len(flat), bool)
        bought[done] = True
        six = contract.SLATE_SIZE
        self._shown.append(
            {
                "day": np.full(len(flat), self._day),
                "region": np.repeat(d.region[rows], six),
                "request": req,
                "user": np.repeat(d.user[rows], six) + 1,
                "slot": np.tile(np.arange(six), len(rows)),
                "listing_id": flat + 1,
                "propensity": prop.ravel(),
                "p_click": p_click,
                "p_purchase": p_buy,
                "available": avail,
                "clicked": clicked,
                "purchased": bought,
                "price": self.w.cat.price[flat].astype(np.float64),
                "take_rate": self.w.tax.take_rate[self.w.cat.leaf[flat]],
                "t_us": np.repeat(d.t[rows] + 2 * US_PER_S, six),
                "logged": np.repeat(self._logged, six),
            }
        )

    def record(self) -> MarketRecord:
        """Everything recorded so far (region as its code)."""
        regions = np.asarray(self.cfg.regions, dtype=object)

        def frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
            if not parts:
                return pd.DataFrame()
            df = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
            return df.assign(region=regions[df["region"].to_numpy().astype(np.int64)])

        return MarketRecord(frame(self._shown), frame(self._offered))


def run_policy_market(
    world: SimWorld,
    policy_for: PolicyFor,
    n_days: int,
    requests_per_day: int | None = None,
    n_candidates: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    stream_seed: int | None = None,
) -> MarketRecord:
    """Run days ``0 .. n_days - 1`` of ``world`` with the slates of ``policy_for``.

    Parameters
    ----------
    world : the simulated world (``SimWorld.build(cfg)`` / ``SimWorld.from_raw(raw_dir)``).
    policy_for : (day, region) -> ``Policy`` or None (the logged heuristic, batched).
    n_days : days to simulate from the world's start (inventory carries over between days).
    requests_per_day : checkouts drawn per day, all regions (default ``cfg.checkouts_per_day``).
    n_candidates : K candidates per request (default ``cfg.n_candidates``, as in the logs).
    progress : called with (days done, n_days) after each day.
    stream_seed : seed of the day streams (default the world's seed): other values give other
        checkouts and outcomes in the same world.

    Returns
    -------
    MarketRecord. Raises ``ValueError`` when a policy returns an invalid slate.
    """
    m = PolicyMarket(world, policy_for, requests_per_day, n_candidates, stream_seed)
    for day in range(n_days):
        m.run_day(day)
        if progress is not None:
            progress(day + 1, n_days)
    return m.record()
