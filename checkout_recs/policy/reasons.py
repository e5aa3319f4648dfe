"""Reasons shown to sellers and support, from non-personal signals only.

A reason may mention the listing (new seller, new listing), the basket's categories as a
category (never the buyer's history or profile), or the region's popularity. It never mentions
the buyer's past purchases, embeddings or model scores.
"""

from __future__ import annotations

import numpy as np

from checkout_recs.policy.catalog import ItemCatalog


def category_label(catalog: ItemCatalog, category_id: int) -> str:
    """Human name of a category when the snapshot carries ``category_name``, else ``category N``."""
    names = getattr(catalog, "_category_names", None)
    if names is None:
        names = {}
        if "category_name" in catalog.frame.columns:
            sub = catalog.frame[["category_id", "category_name"]].drop_duplicates("category_id")
            names = dict(
                zip(sub["category_id"].astype(int), sub["category_name"].astype(str), strict=True)
            )
        catalog._category_names = names  # type: ignore[attr-defined]
    return names.get(int(category_id), f"category {int(category_id)}")


def slot_reasons(
    catalog: ItemCatalog,
    rows: np.ndarray,
    sources: list[str],
    basket_rows: np.ndarray,
    complement_of: dict[int, int],
    region: str,
) -> list[str]:
    """One reason per slot.

    Parameters
    ----------
    rows : int64 (6,) catalogue rows of the six.
    sources : candidate source of each slot.
    basket_rows : int64 (b,) catalogue rows of the basket (known listings only).
    complement_of : partner category -> basket category it complements.
    region : buyer's region.

    Returns
    -------
    list of 6 strings.
    """
    rcode = catalog.region_code_of(region)
    regional_top = set(catalog.by_region.get(rcode, np.empty(0, np.int64)).tolist())
    out = []
    for r, src in zip(rows.tolist(), sources, strict=True):
        cat = int(catalog.category_id[r])
        if cat in complement_of:
            out.append(f"often bought with {category_label(catalog, complement_of[cat])}")
        elif catalog.seller_is_new[r]:
            out.append("new seller")
        elif catalog.cold[r] or src == "cold_start":
            out.append("new listing")
        elif r in regional_top:
            out.append("popular in your region")
        elif src == "explore":
            out.append("new in this category")
        else:
            out.append(f"popular in {category_label(catalog, cat)}")
    return out
