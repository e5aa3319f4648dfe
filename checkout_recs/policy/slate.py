"""Six-slot assembly: expected revenue, diversity, fill from the fallback, always exactly six.

``expected_revenue = p_click * p_purchase|click * price * take_rate`` (currency units).
The greedy pass takes candidates best-first while at most ``max_per_seller`` items per seller
and ``max_per_category`` per category are in the six; when candidates run short it continues
down the fallback pool; only when both are exhausted are the diversity limits relaxed
(category first, then seller), so six distinct in-stock listings come back whenever six exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from checkout_recs.contract import SLATE_SIZE
from checkout_recs.policy.catalog import ItemCatalog


def expected_revenue(
    p_click: np.ndarray, p_purchase: np.ndarray, price: np.ndarray, take_rate: np.ndarray
) -> np.ndarray:
    """Expected revenue per candidate, float64 (n,) in currency units; NaN/negative inputs -> 0."""
    er = np.asarray(p_click, np.float64) * np.asarray(p_purchase, np.float64) * price * take_rate
    return np.nan_to_num(np.clip(er, 0.0, None), nan=0.0)


def prior_expected_revenue(catalog: ItemCatalog, rows: np.ndarray) -> np.ndarray:
    """Expected revenue from the snapshot's smoothed rates (no model), float64 (n,)."""
    return expected_revenue(
        catalog.ctr[rows], catalog.cvr[rows], catalog.price[rows], catalog.take_rate[rows]
    )


@dataclass
class Slate:
    """The six chosen listings (catalogue rows) and per-slot facts, all arrays of shape (6,)."""

    rows: np.ndarray
    scores: np.ndarray  # expected revenue, currency units
    p_click: np.ndarray  # NaN where no model scored the slot
    p_purchase: np.ndarray
    propensity: np.ndarray  # P(this listing in this slot | request), in (0, 1]
    sources: list[str]
    from_fallback: np.ndarray  # bool: filled from the fallback pool
    explored: bool = False
    exploration_cost: float = 0.0  # expected revenue given up by exploring, currency units
    notes: dict = field(default_factory=dict)


@dataclass
class _Picker:
    catalog: ItemCatalog
    max_seller: int
    max_category: int
    rows: list[int] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)  # index into the source lists

    def _fits(self, row: int, seller_cap: int, cat_cap: int) -> bool:
        sel = self.catalog.seller_id[row]
        cat = self.catalog.category_id[row]
        n_sel = sum(1 for r in self.rows if self.catalog.seller_id[r] == sel)
        n_cat = sum(1 for r in self.rows if self.catalog.category_id[r] == cat)
        return n_sel < seller_cap and n_cat < cat_cap

    def take(self, ranked: np.ndarray, tag: int, seller_cap: int, cat_cap: int, k: int) -> None:
        chosen = set(self.rows)
        for r in ranked.tolist():
            if len(self.rows) >= k:
                return
            if r in chosen or not self._fits(r, seller_cap, cat_cap):
                continue
            self.rows.append(r)
            self.origin.append(tag)
            chosen.add(r)


def greedy_rows(
    catalog: ItemCatalog,
    ranked: list[np.ndarray],
    max_per_seller: int,
    max_per_category: int,
    k: int = SLATE_SIZE,
) -> tuple[list[int], list[int]]:
    """Greedy diverse pick over pools in priority order.

    Parameters
    ----------
    ranked : list of int64 arrays of catalogue rows, each best-first (candidates, then fallback).

    Returns
    -------
    rows : up to ``k`` distinct rows; fewer only when all pools together hold fewer than ``k``.
    pool : for each row, the index of the pool it came from.
    """
    p = _Picker(catalog, max_per_seller, max_per_category)
    big = k + 1
    for seller_cap, cat_cap in (
        (max_per_seller, max_per_category),
        (max_per_seller, big),
        (big, big),
    ):
        for tag, pool in enumerate(ranked):
            p.take(pool, tag, seller_cap, cat_cap, k)
        if len(p.rows) >= k:
            break
    return p.rows, p.origin


def assemble_slate(
    catalog: ItemCatalog,
    cand_rows: np.ndarray,
    er: np.ndarray,
    p_click: np.ndarray | None,
    p_purchase: np.ndarray | None,
    cand_sources: np.ndarray,
    fb_rows: np.ndarray,
    fb_sources: np.ndarray,
    max_per_seller: int = 1,
    max_per_category: int = 2,
) -> Slate:
    """Deterministic six: candidates by expected revenue, then the fallback pool.

    Parameters
    ----------
    cand_rows : int64 (n,) in-stock candidate rows; ``er`` float64 (n,) their expected revenue.
    p_click, p_purchase : float (n,) model probabilities, or None (fallback answers).
    cand_sources : object (n,) candidate source names.
    fb_rows, fb_sources : (m,) in-stock fallback rows best-first and their sources.

    Returns
    -------
    Slate with fewer than six rows only if fewer than six distinct in-stock rows were given.
    """
    order = (
        np.lexsort((catalog.listing_id[cand_rows], -er))
        if len(cand_rows)
        else np.empty(0, np.int64)
    )
    ranked = cand_rows[order]
    rows, origin = greedy_rows(catalog, [ranked, fb_rows], max_per_seller, max_per_category)

    def pos(pool: np.ndarray, r: int) -> int:
        return int(np.flatnonzero(pool == r)[0])

    k = len(rows)
    scores, pc, pp = np.zeros(k), np.full(k, np.nan), np.full(k, np.nan)
    sources: list[str] = []
    from_fb = np.array([o == 1 for o in origin], dtype=bool)
    prior = prior_expected_revenue(catalog, np.asarray(rows, np.int64)) if k else np.zeros(0)
    for j, (r, o) in enumerate(zip(rows, origin, strict=True)):
        if o == 0:
            i = pos(cand_rows, r)
            scores[j] = er[i]
            if p_click is not None and p_purchase is not None:
                pc[j], pp[j] = p_click[i], p_purchase[i]
            sources.append(str(cand_sources[i]))
        else:
            scores[j] = prior[j]
            sources.append(str(fb_sources[pos(fb_rows, r)]))
    return Slate(
        rows=np.asarray(rows, np.int64),
        scores=scores,
        p_click=pc,
        p_purchase=pp,
        propensity=np.ones(k),
        sources=sources,
        from_fallback=from_fb,
    )
