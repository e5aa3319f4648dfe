"""The deterministic fallback: complements of the basket x regional popularity.

Used when the user is unknown, the kill switch or the drift flag is on, the predictor fails or
misses its deadline, or Redis is down; also fills the six when the ranked candidates run short.
It reads only the item catalogue and the category co-purchase table, both loaded at start-up,
so it answers in well under a millisecond and cannot fail for lack of a live dependency.

Score of a listing ``i`` for a basket ``B`` in region ``r``::

    fallback(i) = (1 + w_c * max_{b in B} strength(cat(b) -> cat(i)) / max_strength)
                  * (popularity(i) + 1) * (1 + w_r * [region(i) == r])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from checkout_recs.policy.catalog import ItemCatalog

COMPLEMENT_WEIGHT = 2.0
REGION_WEIGHT = 0.5
PARTNERS_PER_CATEGORY = 8
#: Listings taken from each partner category's popularity list.
POOL_PER_LIST = 25
#: Ranked pools kept per (basket categories, region); the cache is emptied when full.
POOL_CACHE_SIZE = 4096


@dataclass
class ComplementMap:
    """For each category, its strongest co-purchased partner categories.

    ``partners[c]`` is ``(partner_ids int32 (k,), strength float64 (k,))``, strongest first,
    strength normalised to [0, 1] by the table's maximum.
    """

    partners: dict[int, tuple[np.ndarray, np.ndarray]]
    _pools: dict[tuple[tuple[int, ...], int], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _pool_catalog: ItemCatalog | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_frame(cls, df: pd.DataFrame | None, k: int = PARTNERS_PER_CATEGORY) -> ComplementMap:
        """Build from ``contract.CATEGORY_PAIR_FEATURES`` rows (latest snapshot per pair wins)."""
        if df is None or len(df) == 0:
            return cls({})
        if "event_timestamp" in df.columns:
            df = df.sort_values("event_timestamp").drop_duplicates(
                ["category_a", "category_b"], keep="last"
            )
        df = df[df["category_a"] != df["category_b"]]
        top = float(df["co_purchase_strength"].max() or 1.0)
        partners: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for a, grp in df.groupby("category_a", sort=False):
            g = grp.nlargest(k, "co_purchase_strength")
            partners[int(a)] = (
                g["category_b"].to_numpy(np.int32),
                g["co_purchase_strength"].to_numpy(np.float64) / top,
            )
        return cls(partners)

    def for_basket(self, basket_categories: np.ndarray) -> dict[int, float]:
        """Partner category -> strongest normalised strength over the basket's categories."""
        out: dict[int, float] = {}
        for c in np.unique(basket_categories).tolist():
            ids, strength = self.partners.get(int(c), (np.empty(0, np.int32), np.empty(0)))
            for p, s in zip(ids.tolist(), strength.tolist(), strict=True):
                if s > out.get(p, 0.0):
                    out[p] = s
        return out

    def pool(
        self, catalog: ItemCatalog, basket_categories: tuple[int, ...], rcode: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ranked fallback pool (rows int64, scores float64, sources object; basket not removed)
        for distinct basket categories and a region code, cached per catalogue (read-only arrays)."""
        if catalog is not self._pool_catalog:
            self._pools.clear()
            self._pool_catalog = catalog
        key = (basket_categories, rcode)
        hit = self._pools.get(key)
        if hit is None:
            if len(self._pools) >= POOL_CACHE_SIZE:
                self._pools.clear()
            hit = _ranked_pool(
                catalog, self.for_basket(np.asarray(basket_categories, np.int64)), rcode
            )
            for a in hit:
                a.flags.writeable = False
            self._pools[key] = hit
        return hit


def fallback_candidates(
    catalog: ItemCatalog,
    complements: ComplementMap,
    basket_ids: np.ndarray,
    region: str,
    basket_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fallback pool and scores for one checkout.

    The ranked pool depends only on the basket's distinct categories and the region, so it is
    computed once per (categories, region) and kept in ``complements`` (bounded, per catalogue);
    the basket's own listings are then dropped from it (the order is a total one: dropping after
    ranking gives the same answer as before).

    Parameters
    ----------
    catalog : item catalogue (treated as immutable once built).
    complements : category co-purchase map.
    basket_ids : int64 (b,) listing ids just bought (unknown ids are ignored).
    region : buyer's region.
    basket_rows : int64 catalogue rows of ``basket_ids`` (unknown dropped) when the caller has
        them already; ``basket_ids`` is then not looked up again.

    Returns
    -------
    rows : int64 (m,) catalogue rows, best first (ties broken by listing id), basket excluded.
    scores : float64 (m,) fallback scores (unitless, higher is better).
    sources : object (m,) ``complement`` or ``popular``.
    """
    if basket_rows is None:
        basket_rows = catalog.rows(basket_ids)
        basket_rows = basket_rows[basket_rows >= 0]
    rcode = catalog.region_code_of(region)
    cats = tuple(np.unique(catalog.category_id[basket_rows]).tolist())
    rows, scores, sources = complements.pool(catalog, cats, rcode)
    if len(basket_rows):
        keep = ~np.isin(rows, basket_rows)
        return rows[keep], scores[keep], sources[keep]
    return rows.copy(), scores.copy(), sources.copy()


def _ranked_pool(
    catalog: ItemCatalog, partner: dict[int, float], rcode: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fallback pool of a basket whose partner categories are ``partner``, ranked, basket kept."""
    pools = [catalog.by_category.get(c, np.empty(0, np.int64))[:POOL_PER_LIST] for c in partner]
    pools.append(catalog.by_region.get(rcode, np.empty(0, np.int64)))
    pools.append(catalog.global_top)  # never empty while the catalogue is not
    rows = np.unique(np.concatenate(pools).astype(np.int64))
    strength = np.zeros(len(rows))
    if partner:
        keys = np.fromiter(partner.keys(), np.int64, len(partner))
        vals = np.fromiter(partner.values(), np.float64, len(partner))
        order = np.argsort(keys)
        keys, vals = keys[order], vals[order]
        cats = catalog.category_id[rows].astype(np.int64)
        pos = np.clip(np.searchsorted(keys, cats), 0, len(keys) - 1)
        strength = np.where(keys[pos] == cats, vals[pos], 0.0)
    scores = (
        (1.0 + COMPLEMENT_WEIGHT * strength)
        * (catalog.popularity[rows] + 1.0)
        * (1.0 + REGION_WEIGHT * (catalog.region_code[rows] == rcode))
    )
    order = np.lexsort((catalog.listing_id[rows], -scores))
    sources = np.where(strength[order] > 0, "complement", "popular").astype(object)
    return rows[order], scores[order], sources
