"""Capped contextual-bandit exploration of the last slot, with exact propensities.

Design (chosen so every logged propensity is exact, not estimated):

* slots 0..4 are the deterministic greedy choice (propensity 1 given the policy state);
* the last slot shows the greedy item ``g`` with probability ``1 - eps`` and, with probability
  ``eps``, an item drawn from the exploration pool ``P`` with softmax weights ``q`` over UCB
  scores ``er(i) + alpha * sigma(i)``, where ``sigma(i) = scale / sqrt(1 + n_obs(i))`` is the
  uncertainty of an item seen ``n_obs`` times (cold and new-seller listings are the most
  uncertain). The propensity of the shown item ``x`` is exactly
  ``(1 - eps) * [x == g] + eps * q(x)``;
* ``eps`` depends on the session class (new user, returning, high value) and is set to 0
  **before** sampling whenever the ledger refuses to hold the worst possible cost of this
  request's exploration, ``er(g) - min_P er`` (budget exhausted, or the shared ledger is
  unreachable). The budget is ``daily_share * (expected revenue served today) +
  min_daily_budget``; the spend charged is the expected revenue actually given up,
  ``er(g) - er(x)``. Hence spend <= cap at every moment.

The day's money is kept by a ledger (``checkout_recs.policy.ledger``): per process by default,
or shared by all replicas through Redis (``ExplorationConfig.ledger``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import ExplorationConfig, PolicyConfig
from checkout_recs.policy.inputs import PolicyInput
from checkout_recs.policy.ledger import ExplorationLedger, utc_day
from checkout_recs.policy.ledger_factory import open_ledger
from checkout_recs.policy.slate import Slate


@dataclass
class SlotDraw:
    """The last slot's distribution for one request: pool rows, weights, eps, greedy row, and the
    worst-case cost of exploring (currency: greedy er minus the pool's lowest er)."""

    pool: np.ndarray  # int64 (m,) catalogue rows
    q: np.ndarray  # float64 (m,) softmax weights, sum 1
    eps: float
    greedy: int
    worst: float = 0.0

    def propensity(self, row: int) -> float:
        """Exact P(last slot shows ``row``)."""
        p = (1.0 - self.eps) * (row == self.greedy)
        hit = np.flatnonzero(self.pool == row)
        if hit.size:
            p += self.eps * float(self.q[hit[0]])
        return float(p)


class Explorer:
    """Exploration of the last slot (see module docstring).

    Parameters
    ----------
    catalog : item catalogue.
    cfg : exploration configuration.
    seed : seed of the sampling stream.
    ledger : the day's budget; default ``ledger_factory.open_ledger(cfg)`` (per process unless
        ``cfg.ledger`` names Redis; renewed inline or in a background thread per
        ``cfg.ledger.renewal``).
    """

    def __init__(
        self,
        catalog: ItemCatalog,
        cfg: ExplorationConfig,
        seed: int = 7,
        ledger: ExplorationLedger | None = None,
    ) -> None:
        self.catalog = catalog
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.ledger = ledger or open_ledger(cfg)

    def uncertainty(self, rows: np.ndarray, er: np.ndarray) -> np.ndarray:
        """sigma(i) = scale / sqrt(1 + n_obs(i)), n_obs from decayed views (popularity proxy)."""
        cat = self.catalog
        n_obs = cat.views[rows] if cat.views is not None else cat.popularity[rows] * 10.0
        scale = float(np.mean(er)) if len(er) else 0.0
        return scale / np.sqrt(1.0 + np.maximum(n_obs, 0.0))

    def draw(
        self,
        slate: Slate,
        rows: np.ndarray,
        er: np.ndarray,
        session_class: str,
        max_per_seller: int,
        max_per_category: int,
    ) -> SlotDraw:
        """The last slot's exact distribution before the budget check (no sampling, no state change)."""
        cfg, cat = self.cfg, self.catalog
        greedy = int(slate.rows[-1])
        head = slate.rows[:-1]
        eps = float(cfg.epsilon.get(session_class, 0.0)) if cfg.enabled else 0.0
        same_seller = (cat.seller_id[rows][:, None] == cat.seller_id[head][None, :]).sum(axis=1)
        same_cat = (cat.category_id[rows][:, None] == cat.category_id[head][None, :]).sum(axis=1)
        ok = ~np.isin(rows, head) & (same_seller < max_per_seller) & (same_cat < max_per_category)
        if eps <= 0 or slate.from_fallback[-1] or not ok.any():
            return SlotDraw(np.empty(0, np.int64), np.empty(0), 0.0, greedy)
        cand, cer = rows[ok], er[ok]
        ucb = cer + cfg.ucb_alpha * self.uncertainty(cand, cer)
        top = np.lexsort((cat.listing_id[cand], -ucb))[: cfg.pool_size]
        pool, pool_er, z = cand[top], cer[top], ucb[top]
        scale = max(float(np.abs(z).max()), 1e-12)
        w = np.exp((z - z.max()) / (cfg.temperature * scale))
        q = w / w.sum()
        g_er = float(slate.scores[-1])
        worst = max(g_er - float(pool_er.min()), 0.0)
        return SlotDraw(pool, q, eps, greedy, worst)

    def explore(
        self,
        slate: Slate,
        prep: PolicyInput,
        rows: np.ndarray,
        er: np.ndarray,
        pc: np.ndarray,
        pp: np.ndarray,
        pcfg: PolicyConfig,
    ) -> Slate:
        """Sample the last slot, set exact propensities, charge the ledger. Returns the slate.

        ``slate.notes["exploration"]["budget"]`` says why exploration was allowed or not: ``ok``,
        ``exhausted`` (the day's cap), ``ledger_unavailable`` (shared ledger unreachable: no
        exploration, no error) or None (nothing to explore).
        """
        if len(slate.rows) == 0:
            return slate
        ts = prep.request.timestamp or dt.datetime.now(dt.UTC)
        self.ledger.roll(utc_day(ts))
        d = self.draw(
            slate, rows, er, prep.session_class, pcfg.max_per_seller, pcfg.max_per_category
        )
        budget: str | None = None
        if d.eps > 0:
            budget = self.ledger.reserve(d.worst) or "ok"
            if budget != "ok":
                d = replace(d, eps=0.0)
        shown = d.greedy
        if d.eps > 0 and self.rng.random() < d.eps:
            shown = int(d.pool[self.rng.choice(len(d.pool), p=d.q)])
        if shown != d.greedy:
            i = int(np.flatnonzero(rows == shown)[0])
            cost = max(float(slate.scores[-1]) - float(er[i]), 0.0)
            slate.rows[-1], slate.scores[-1] = shown, er[i]
            slate.p_click[-1], slate.p_purchase[-1] = pc[i], pp[i]
            slate.sources[-1] = "explore"
            slate.explored, slate.exploration_cost = True, cost
        if d.eps > 0:
            self.ledger.settle(slate.exploration_cost, shown != d.greedy)
        slate.propensity[-1] = d.propensity(shown) if d.eps > 0 else 1.0
        slate.notes["exploration"] = {
            "eps": d.eps,
            "pool": len(d.pool),
            "session_class": prep.session_class,
            "budget": budget,
        }
        self.ledger.serve(float(np.sum(slate.scores)))
        return slate
