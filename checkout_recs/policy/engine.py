"""The policy stage: from scored candidates (or none) to the six, with exact propensities.

``PolicyEngine.choose`` is the one entry point used by serving and offline evaluation:

1. expected revenue per candidate (``slate.expected_revenue``), or the fallback ranking when no
   scores are available;
2. exposure adjustments (``exposure.ExposureController``): over-exposed sellers removed,
   over-exposed audit buckets penalised, a slot reserved for a new seller / cold-start listing
   when the running share is below target and quality allows;
3. greedy diverse pick (``slate.assemble_slate``), filling from the fallback when short;
4. capped exploration of the last slot (``exploration.Explorer``) with exact propensities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import PolicyConfig
from checkout_recs.policy.exploration import Explorer
from checkout_recs.policy.exposure import ExposureController
from checkout_recs.policy.fallback import ComplementMap
from checkout_recs.policy.inputs import PolicyInput
from checkout_recs.policy.reasons import slot_reasons
from checkout_recs.policy.slate import Slate, assemble_slate, expected_revenue


@dataclass(frozen=True)
class PolicyGauges:
    """The policy's state as exported gauges (read after each decision)."""

    #: Exploration budget of the day so far (currency): the ledger's cap (for a shared ledger,
    #: the shared cap at its last synchronisation).
    exploration_budget: float
    #: Share of the exposure window's slots that went to new sellers' listings (0..1).
    new_seller_share: float


class PolicyEngine:
    """Stateful policy (exploration budget and exposure counters live here).

    Parameters
    ----------
    catalog : item catalogue.
    cfg : policy configuration.
    seed : seed of the exploration random stream.
    """

    def __init__(
        self,
        catalog: ItemCatalog,
        cfg: PolicyConfig,
        complements: ComplementMap | None = None,
        seed: int = 7,
    ) -> None:
        self.catalog = catalog
        self.cfg = cfg
        self.complements = complements or ComplementMap({})
        self.explorer = Explorer(catalog, cfg.exploration, seed=seed)
        self.exposure = ExposureController(catalog, cfg.exposure)

    def session_class(
        self, user: dict[str, Any] | None, catalog: ItemCatalog, basket_rows: np.ndarray
    ) -> str:
        """``new_user`` (unknown or no purchase yet), ``high_value`` (basket value over the
        threshold) or ``returning``."""
        if user is None or float(user.get("n_purchases", 0) or 0) <= 0:
            return "new_user"
        if float(catalog.price[basket_rows].sum()) >= self.cfg.exploration.high_value_min_basket:
            return "high_value"
        return "returning"

    def choose(self, prep: PolicyInput, scores: tuple[np.ndarray, np.ndarray] | None) -> Slate:
        """The six for a prepared request.

        Parameters
        ----------
        prep : the prepared request (``inputs.PolicyInput``; in serving ``Recommender.prepare``'s
            output): in-stock candidates and fallback pool.
        scores : (p_click, p_purchase|click) float (n,) aligned with ``prep.cand_rows``; None
            means the fallback answers (no exploration, no exposure re-ranking).

        Returns
        -------
        Slate of six rows (fewer only when fewer than six in-stock listings were offered).
        """
        cat = self.catalog
        rows = prep.cand_rows
        if scores is None:
            slate = assemble_slate(
                cat,
                np.empty(0, np.int64),
                np.empty(0),
                None,
                None,
                np.empty(0, object),
                prep.fb_rows,
                prep.fb_sources,
                self.cfg.max_per_seller,
                self.cfg.max_per_category,
            )
            self.exposure.record(slate.rows)
            return slate
        pc, pp = (np.asarray(s, np.float64) for s in scores)
        er = expected_revenue(pc, pp, cat.price[rows], cat.take_rate[rows])
        keep, adj = self.exposure.adjust(rows, er)
        slate = assemble_slate(
            cat,
            rows[keep],
            adj[keep],
            pc[keep],
            pp[keep],
            prep.cand_sources[keep],
            prep.fb_rows,
            prep.fb_sources,
            self.cfg.max_per_seller,
            self.cfg.max_per_category,
        )
        # report true expected revenue, not the exposure-adjusted ranking score
        true_er = dict(zip(rows.tolist(), er.tolist(), strict=True))
        slate.scores = np.array(
            [true_er.get(int(r), s) for r, s in zip(slate.rows, slate.scores, strict=True)]
        )
        slate = self.exposure.reserve(slate, rows, er, pc, pp, prep.cand_sources, self.cfg)
        slate = self.explorer.explore(slate, prep, rows, er, pc, pp, self.cfg)
        self.exposure.record(slate.rows)
        slate.notes["candidate_er"] = er
        return slate

    def reasons(self, prep: PolicyInput, slate: Slate) -> list[str]:
        """Non-personal reason per slot (``reasons.slot_reasons``)."""
        cat = self.catalog
        basket_cats = cat.category_id[prep.basket_rows]
        complement_of: dict[int, int] = {}
        for b in np.unique(basket_cats).tolist():
            partners, _ = self._partners(int(b))
            for p in partners.tolist():
                complement_of.setdefault(int(p), int(b))
        return slot_reasons(
            cat, slate.rows, slate.sources, prep.basket_rows, complement_of, prep.request.region
        )

    def apply_config(self, cfg: PolicyConfig) -> list[str]:
        """Use ``cfg`` from the next decision on, keeping the state: the exploration ledger (the
        day's money and its lease), the exposure window and its counters, the random stream.

        Two fields shape that state and keep their running value until a restart:
        ``exploration.ledger`` (where the budget lives) and ``exposure.audit_buckets`` (the size of
        the bucket counters). Returns the dotted names of those that differed (empty list when all
        of ``cfg`` took effect). Call it between decisions (the transformer does, on its event loop).
        """
        kept = []
        exploration, exposure = cfg.exploration, cfg.exposure
        if exploration.ledger != self.cfg.exploration.ledger:
            kept.append("exploration.ledger")
            exploration = exploration.model_copy(update={"ledger": self.cfg.exploration.ledger})
        if exposure.audit_buckets != self.cfg.exposure.audit_buckets:
            kept.append("exposure.audit_buckets")
            exposure = exposure.model_copy(
                update={"audit_buckets": self.cfg.exposure.audit_buckets}
            )
        new = cfg.model_copy(update={"exploration": exploration, "exposure": exposure})
        self.explorer.cfg = new.exploration
        self.explorer.ledger.cfg = new.exploration
        self.exposure.reconfigure(new.exposure)
        self.cfg = new
        return kept

    def gauges(self) -> PolicyGauges:
        """The exploration budget and the new-seller exposure share now (``PolicyGauges``)."""
        return PolicyGauges(
            exploration_budget=self.explorer.ledger.cap(self.cfg.exploration),
            new_seller_share=self.exposure.new_share(),
        )

    def _partners(self, category: int) -> tuple[np.ndarray, np.ndarray]:
        return self.complements.partners.get(category, (np.empty(0, np.int32), np.empty(0)))
