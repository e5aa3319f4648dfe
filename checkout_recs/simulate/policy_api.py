"""The policy interface of the simulator: what a policy is shown and what it must answer.

A policy is any callable ``policy(ctx, cands) -> (listing_ids, propensities)``:

* ``ctx`` is a ``RequestContext``: request id, user id, region, device, time, and the basket
  (listing ids and category ids just bought).
* ``cands`` is a ``CandidateSet`` of K listings available at that time in the user's region
  (arrays of shape (K,): ids, category, seller, price, take rate, listing age, seller age,
  rating, whether the seller is new). Only observable fields: nothing of the hidden truth.
* it returns six distinct listing ids taken from ``cands`` (shape (6,), slot order) and the
  probability that it would put each in its slot (shape (6,), in (0, 1]; 1.0 for a deterministic
  policy). ``check_slate`` raises ``ValueError`` on anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from checkout_recs import contract
from checkout_recs.simulate.world import US_PER_DAY

if TYPE_CHECKING:
    from checkout_recs.simulate.scenario import SimWorld


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


def candidate_set(world: SimWorld, items: np.ndarray, t_us: int) -> CandidateSet:
    """Observable fields of listing indices ``items`` (K,) at time ``t_us`` (µs)."""
    c, s, tax = world.cat, world.sellers, world.tax
    seller = c.seller[items]
    seller_age = (t_us - s.joined_at[seller]) / US_PER_DAY
    return CandidateSet(
        listing_id=items.astype(np.int64) + 1,
        category_id=tax.leaf_ids[c.leaf[items]],
        top_category_id=tax.top[tax.leaf_ids[c.leaf[items]]],
        seller_id=seller.astype(np.int64) + 1,
        price=c.price[items].astype(np.float64),
        take_rate=tax.take_rate[c.leaf[items]],
        age_days=(t_us - c.listed_at[items]) / US_PER_DAY,
        seller_age_days=seller_age,
        seller_rating=s.rating[seller],
        seller_is_new=seller_age < 30,
    )


def check_slate(ids: np.ndarray, prop: np.ndarray, cands: CandidateSet) -> None:
    """Raise ``ValueError`` unless ids (6,) are distinct candidates and propensities (6,) lie in (0, 1]."""
    ids, prop = np.asarray(ids), np.asarray(prop)
    if ids.shape != (contract.SLATE_SIZE,) or prop.shape != (contract.SLATE_SIZE,):
        raise ValueError(
            f"a policy must return six ids and six propensities, got {ids.shape} and {prop.shape}"
        )
    if len(set(ids.tolist())) != contract.SLATE_SIZE or not np.isin(ids, cands.listing_id).all():
        raise ValueError("a policy must return six distinct listing ids taken from the candidates")
    if not ((prop > 0) & (prop <= 1)).all():
        raise ValueError("propensities must lie in (0, 1]")
