"""The serving-policy adapter used by `experiment simulate`: candidates and slate repair."""

from __future__ import annotations

from collections import Counter

import numpy as np

from checkout_recs import contract
from checkout_recs.evaluation.experiment_serving import SimulatorCandidates, _within_candidates


class _Catalog:
    """Listing ids 100..109 at rows 0..9; anything else is unknown (-1)."""

    def rows(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        return np.where((ids >= 100) & (ids < 110), ids - 100, -1)


def _response(ids: list[int], props: list[float]) -> contract.PostCheckoutResponse:
    items = [
        contract.RecommendedItem(listing_id=i, slot=s, score=1.0, propensity=p, source="x", reason="r")
        for s, (i, p) in enumerate(zip(ids, props, strict=True))
    ]
    return contract.PostCheckoutResponse(request_id="q", items=items, policy="ranker")


def test_candidates_are_the_offered_known_listings_minus_the_basket() -> None:
    src = SimulatorCandidates()
    src.listing_ids = np.array([100, 105, 999, 107])
    rows, sources = src.generate(_Catalog(), None, None, basket_rows=np.array([5]))
    assert rows.tolist() == [0, 7] and sources.tolist() == ["simulator", "simulator"]


def test_slots_outside_the_offered_pool_are_replaced_and_counted() -> None:
    stats: Counter = Counter()
    offered = np.arange(100, 112)
    ok = _response([100, 101, 102, 103, 104, 105], [0.9, 1, 1, 1, 1, 0.2])
    ids, prop = _within_candidates(ok, offered, stats)
    assert ids.tolist() == [100, 101, 102, 103, 104, 105] and prop[-1] == 0.2 and stats["replaced"] == 0
    bad = _response([100, 500, 102, 501, 104, 105], [1, 0.5, 1, 0.5, 1, 1])
    ids, prop = _within_candidates(bad, offered, stats)
    assert set(ids.tolist()) <= set(offered.tolist()) and len(set(ids.tolist())) == 6
    assert prop[1] == prop[3] == 1.0 and stats["replaced"] == 1
