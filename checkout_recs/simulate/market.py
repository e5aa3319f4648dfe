"""Daily checkouts, post-checkout requests, clicks, purchases and inventory changes.

Per day, in three passes:

1. in time order (sequential, cheap scalar checks): an abandoned lock elsewhere for some
   checkouts (locked, then unlocked), the basket (locked a few minutes before checkout, then
   sold), and the request's candidates (available listings: half from complements of the basket);
2. vectorised over the day: the logged heuristic picks six of the candidates with exact per-slot
   propensities; clicks and purchase intents are drawn from the hidden truth;
3. in time order: a purchase after a click succeeds only if the listing is still available
   (not sold out, not locked, not delisted) and then sells it.

Baskets take priority over recommendation purchases of the same day (pass 1 runs first); an
impression may therefore show a listing a recommendation purchase sold minutes before, as the
old system did. Every inventory change is emitted as an inventory event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from checkout_recs.contract import SLATE_SIZE
from checkout_recs.simulate.logging_policy import HeuristicPolicy
from checkout_recs.simulate.scenario import DayDraw, SimWorld, draw_day
from checkout_recs.simulate.world import STREAM_MARKET, US_PER_DAY, US_PER_S, rng_for, start_us

EVENT_CODES = ("listed", "locked", "unlocked", "sold", "delisted")


@dataclass
class MarketLog:
    """Event arrays (listing/user indices, times in µs), one list of per-day arrays per column."""

    orders: dict[str, list[np.ndarray]] = field(default_factory=dict)
    impressions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    clicks: dict[str, list[np.ndarray]] = field(default_factory=dict)
    purchases: dict[str, list[np.ndarray]] = field(default_factory=dict)
    inventory: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, table: str, **cols: np.ndarray | list) -> None:
        """Append columns (equal lengths) to ``table``."""
        store = getattr(self, table)
        for k, v in cols.items():
            store.setdefault(k, []).append(np.asarray(v))

    def column(self, table: str, name: str) -> np.ndarray:
        """All rows of one column."""
        parts = getattr(self, table).get(name, [])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class Market:
    """Inventory state (remaining quantity, locks) plus the day loop."""

    def __init__(self, world: SimWorld) -> None:
        self.w, self.cfg = world, world.cfg
        self.policy = HeuristicPolicy(world.tax, world.sellers, world.cat, world.cfg.epsilon)
        self.rng = rng_for(world.cfg.seed, STREAM_MARKET)
        self.remaining = world.cat.quantity.copy()  # int16, the only per-listing state array
        self.locked_until: dict[int, int] = {}  # sparse: listings touched by a lock
        self.sold_out_at: dict[int, int] = {}
        self.log = MarketLog()
        self._inv: dict[str, list] = {"item": [], "code": [], "t": []}
        self._n = 0  # checkouts so far (order and request numbers)
        self.k, self.n_per_day = world.cfg.n_candidates, world.cfg.checkouts_per_day
        #: True: ``_settle`` checks every impression's availability at its purchase time (evaluation).
        self.track_availability = False

    # ---- inventory ---------------------------------------------------------------------------
    def _free(self, i: int, t: int) -> bool:
        return i >= 0 and self.remaining[i] > 0 and self.locked_until.get(i, 0) <= t

    def _event(self, i: int, code: int, t: int) -> None:
        self._inv["item"].append(i)
        self._inv["code"].append(code)
        self._inv["t"].append(t)

    def _sell(self, i: int, t_lock: int, t_sold: int) -> None:
        self._event(i, 1, max(t_lock, int(self.w.cat.listed_at[i]) + 1))
        self._event(i, 3, t_sold)
        self.remaining[i] -= 1
        if self.remaining[i] == 0:
            self.sold_out_at[i] = t_sold

    def _first_free(
        self, picks: list[int], t: int, taken: set[int], k: int, out: list[int]
    ) -> None:
        for i in picks:
            if len(out) >= k:
                return
            if i not in taken and self._free(i, t):
                taken.add(i)
                out.append(i)

    # ---- pass 1: baskets and candidates -----------------------------------------------------------
    def _pass1(self, d: DayDraw) -> tuple[np.ndarray, np.ndarray]:
        n, k = len(d.t), self.k
        basket = np.full((n, 2), -1, np.int64)
        cands = np.full((n, k), -1, np.int64)
        ab, bp, sp = d.abandon_picks.tolist(), d.basket_picks.tolist(), d.second_picks.tolist()
        cp, op = d.comp_picks.tolist(), d.other_picks.tolist()
        for r in range(n):
            t = int(d.t[r])
            if d.abandon[r]:
                got: list[int] = []
                self._first_free(ab[r], t, set(), 1, got)
                if got:
                    i = got[0]
                    t_lock = max(t - int(d.abandon_offset[r, 0]), int(self.w.cat.listed_at[i]) + 1)
                    self.locked_until[i] = t_lock + int(d.abandon_offset[r, 1])
                    self._event(i, 1, t_lock)
                    self._event(i, 2, self.locked_until[i])
            items: list[int] = []
            self._first_free(bp[r], t, set(), 1, items)
            if not items:
                continue
            self._first_free(sp[r], t, set(items), 2, items)
            for j, i in enumerate(items):
                self._sell(i, t - int(d.lock_offset[r, j]), t)
                basket[r, j] = i
            taken, got = set(items), []
            self._first_free(cp[r], t, taken, k // 2, got)
            self._first_free(op[r], t, taken, k, got)
            cands[r, : len(got)] = got
        return basket, cands

    # ---- pass 2 and 3: slates, clicks, purchases ----------------------------------------------------
    def _requests(self, d: DayDraw, basket: np.ndarray, cands: np.ndarray) -> None:
        rows = np.flatnonzero((basket[:, 0] >= 0) & ((cands >= 0).sum(axis=1) >= SLATE_SIZE))
        ids = self._n + np.arange(len(d.t))
        has = basket >= 0
        for j in range(2):
            r = np.flatnonzero(has[:, j])
            self.log.add("orders", n=ids[r], user=d.user[r], item=basket[r, j], t=d.t[r])
        if len(rows) == 0:
            return
        bl = np.where(basket[rows] >= 0, self.w.cat.leaf[np.maximum(basket[rows], 0)], -1).astype(
            np.int64
        )
        items, prop = self._choose(d, rows, basket[rows], bl, cands[rows])
        m = len(rows)
        t_req = np.repeat(d.t[rows] + 2 * US_PER_S, SLATE_SIZE)
        user = np.repeat(d.user[rows], SLATE_SIZE)
        blr = np.repeat(bl, SLATE_SIZE, axis=0)
        slot = np.tile(np.arange(SLATE_SIZE), m)
        flat = items.ravel()
        p_click = self.w.truth.click_prob(
            user, blr, flat, slot, t_req, np.repeat(d.device[rows], SLATE_SIZE)
        )
        p_buy = self.w.truth.purchase_prob(user, blr, flat)
        clicked = self.rng.random(len(flat)) < p_click
        wants = self.rng.random(len(flat)) < p_buy
        t_click = t_req + ((5 + self.rng.exponential(60, len(flat))) * US_PER_S).astype(np.int64)
        t_buy = t_click + ((30 + self.rng.exponential(240, len(flat))) * US_PER_S).astype(np.int64)
        req = np.repeat(ids[rows], SLATE_SIZE)
        self.log.add(
            "impressions", n=req, user=user, item=flat, slot=slot, prop=prop.ravel(), t=t_req
        )
        c = np.flatnonzero(clicked)
        self.log.add("clicks", n=req[c], user=user[c], item=flat[c], t=t_click[c])
        dn, avail = self._settle(flat, t_buy, clicked & wants)
        self.log.add(
            "purchases", n=req[dn], slot=slot[dn], user=user[dn], item=flat[dn], t=t_buy[dn]
        )
        self._observe(d, rows, req, items, prop, p_click, p_buy, avail, clicked, dn)

    def _choose(
        self,
        d: DayDraw,
        rows: np.ndarray,
        basket: np.ndarray,
        basket_leaf: np.ndarray,
        cands: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Six per request of ``rows`` (M,): basket (M, 2), basket_leaf (M, 2), cands (M, K) listing
        indices (-1 pad) -> items (M, 6), propensities (M, 6). The logged heuristic here."""
        return self.policy.slate_batch(self.rng, basket_leaf, cands)

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
        """Hook after each day's requests (arrays flat over the M x 6 impressions); no-op here."""

    def _settle(
        self, flat: np.ndarray, t_buy: np.ndarray, attempt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Purchase attempts in time order: one succeeds only if the listing is still free, and sells it.

        Parameters
        ----------
        flat : (n,) listing index per impression.  t_buy : (n,) purchase time, µs.
        attempt : (n,) bool, clicked and wanting to buy.

        Returns
        -------
        done : (m,) indices of the impressions that became purchases.
        avail : (n,) bool, free at ``t_buy`` (only attempts are checked unless ``track_availability``;
            unchecked entries are False).
        """
        visit = np.arange(len(flat)) if self.track_availability else np.flatnonzero(attempt)
        visit = visit[np.argsort(t_buy[visit], kind="stable")]
        ok = self.w.static_available(flat[visit], t_buy[visit])
        avail = np.zeros(len(flat), bool)
        done = []
        for x, okx in zip(visit.tolist(), ok.tolist(), strict=True):
            i, tb = int(flat[x]), int(t_buy[x])
            if okx and self._free(i, tb):
                avail[x] = True
                if attempt[x]:
                    self._sell(i, tb - 20 * US_PER_S, tb)
                    done.append(x)
        return np.asarray(done, np.int64), avail

    # ---- the run ----------------------------------------------------------------------------
    def _draw(self, day: int) -> DayDraw:
        """The day's checkout contexts (from the market stream here)."""
        return draw_day(self.w, self.rng, day, self.n_per_day, self.k)

    def run_day(self, day: int) -> None:
        """One day: draw checkouts, baskets and candidates (pass 1), then slates and outcomes."""
        d = self._draw(day)
        basket, cands = self._pass1(d)
        self._requests(d, basket, cands)
        self._n += len(d.t)

    def run(self, progress: bool = False) -> MarketLog:
        """Every day's checkouts; then the delistings of listings still live. Returns the log."""

        cfg = self.cfg
        for day in tqdm(range(cfg.days), desc="market days", disable=not progress):
            self.run_day(day)
        end = start_us(cfg) + cfg.days * US_PER_DAY
        c = self.w.cat
        gone = np.flatnonzero(c.delist_at < end)
        sold = np.fromiter(self.sold_out_at.keys(), np.int64, len(self.sold_out_at))
        when = np.fromiter(self.sold_out_at.values(), np.int64, len(self.sold_out_at))
        early = sold[when < c.delist_at[sold]]  # sold out before the seller would have delisted
        gone = gone[~np.isin(gone, early)]
        inv = self._inv
        self.log.add(
            "inventory",
            item=np.concatenate([np.asarray(inv["item"], np.int64), gone]),
            code=np.concatenate([np.asarray(inv["code"], np.int64), np.full(len(gone), 4)]),
            t=np.concatenate([np.asarray(inv["t"], np.int64), c.delist_at[gone]]),
        )
        return self.log
