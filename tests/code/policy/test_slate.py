"""Six-slot assembly, diversity, fallback: functions of checkout_recs.policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.fallback import ComplementMap, fallback_candidates
from checkout_recs.policy.slate import assemble_slate, expected_revenue, greedy_rows
from tests.fixtures_serving import make_pairs, make_snapshot


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    return ItemCatalog.from_frame(make_snapshot(800, seed=1), top_k=40)


@pytest.fixture(scope="module")
def complements() -> ComplementMap:
    return ComplementMap.from_frame(make_pairs(1)[0])


def test_expected_revenue_is_the_product_and_never_negative():
    er = expected_revenue(
        np.array([0.5, np.nan, -1.0]),
        np.array([0.2, 0.5, 0.5]),
        np.array([100.0, 10.0, 10.0]),
        np.array([0.1, 0.1, 0.1]),
    )
    assert er.tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_catalog_rows_lookup_and_unknown_ids(catalog):
    ids = np.array([catalog.listing_id[5], 10**12, catalog.listing_id[0]])
    assert catalog.rows(ids).tolist() == [5, -1, 0]


def test_catalog_refuses_a_snapshot_without_required_columns():
    with pytest.raises(ValueError, match="lacks columns"):
        ItemCatalog.from_frame(pd.DataFrame({"listing_id": [1]}))


def test_slate_respects_seller_and_category_limits(catalog):
    rng = np.random.default_rng(0)
    rows = rng.choice(len(catalog), 200, replace=False).astype(np.int64)
    er = rng.random(200)
    slate = assemble_slate(
        catalog,
        rows,
        er,
        er,
        er,
        np.full(200, "ann", object),
        np.empty(0, np.int64),
        np.empty(0, object),
    )
    assert len(slate.rows) == 6 and len(set(slate.rows.tolist())) == 6
    sellers = catalog.seller_id[slate.rows]
    cats = catalog.category_id[slate.rows]
    assert max(np.unique(sellers, return_counts=True)[1]) <= 1
    assert max(np.unique(cats, return_counts=True)[1]) <= 2


def test_slate_takes_the_best_diverse_candidates_in_order(catalog):
    rows = np.arange(60, dtype=np.int64)
    er = np.linspace(1.0, 0.1, 60)
    slate = assemble_slate(
        catalog,
        rows,
        er,
        er,
        er,
        np.full(60, "ann", object),
        np.empty(0, np.int64),
        np.empty(0, object),
    )
    assert slate.rows[0] == 0  # the best candidate always leads
    assert np.all(np.diff(slate.scores) <= 0)


def test_short_candidates_are_filled_from_the_fallback(catalog, complements):
    fb_rows, _, fb_src = fallback_candidates(catalog, complements, np.array([], np.int64), "north")
    rows = np.array([3, 4], np.int64)
    slate = assemble_slate(
        catalog,
        rows,
        np.array([2.0, 1.0]),
        None,
        None,
        np.array(["ann", "ann"], object),
        fb_rows,
        fb_src,
    )
    assert len(slate.rows) == 6
    assert slate.from_fallback.sum() >= 4
    assert len(set(slate.rows.tolist())) == 6


def test_diversity_relaxes_only_when_six_could_not_be_found_otherwise():
    df = make_snapshot(8, n_sellers=1, seed=3)  # one seller: the seller cap cannot hold
    cat = ItemCatalog.from_frame(df)
    rows, _ = greedy_rows(cat, [np.arange(8, dtype=np.int64)], 1, 2)
    assert len(rows) == 6 and len(set(rows)) == 6


def test_fallback_is_deterministic_excludes_the_basket_and_prefers_complements(
    catalog, complements
):
    basket = catalog.listing_id[:3]
    a = fallback_candidates(catalog, complements, basket, "north")
    b = fallback_candidates(catalog, complements, basket, "north")
    assert a[0].tolist() == b[0].tolist()
    assert not set(a[0].tolist()) & set(range(3))
    assert a[2][0] == "complement"
    assert np.all(np.diff(a[1]) <= 0)


def test_fallback_for_an_unknown_region_still_offers_listings(catalog, complements):
    rows, _, _ = fallback_candidates(catalog, complements, np.array([], np.int64), "atlantis")
    assert len(rows) >= 6
