"""Serving checks the listing snapshot's age against its SLA at the checkout's time (issue 8)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from checkout_recs import contract
from checkout_recs.features.sla import SNAPSHOT_SLA
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.recommender import Recommender, TableUserFeatures
from tests.fixtures_serving import make_serving_bundle

SNAPSHOT_TIME = dt.datetime(2026, 10, 14, 23, 59, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ServingBundle:
    path = make_serving_bundle(
        tmp_path_factory.mktemp("sla") / "bundle", n_listings=800, with_model=False
    )
    manifest = Path(path) / "index" / "manifest.json"
    manifest.write_text(
        json.dumps({"version": "idx-sla", "snapshot_time": SNAPSHOT_TIME.isoformat()})
    )
    return ServingBundle.load(path)


def _reason(bundle: ServingBundle, at: dt.datetime, max_age: dt.timedelta | None) -> str | None:
    rec = Recommender(bundle, TableUserFeatures(bundle.users), max_snapshot_age=max_age)
    req = contract.PostCheckoutRequest(
        user_id=3, purchased_item_ids=[1000], region="north", timestamp=at
    )
    return asyncio.run(rec.prepare(req)).fallback_reason


def test_bundle_reads_its_snapshot_time(bundle: ServingBundle) -> None:
    assert bundle.snapshot_time == SNAPSHOT_TIME


def test_a_snapshot_within_its_sla_is_served(bundle: ServingBundle) -> None:
    assert _reason(bundle, SNAPSHOT_TIME + dt.timedelta(hours=5), SNAPSHOT_SLA) is None


def test_a_snapshot_past_its_sla_sends_serving_to_the_fallback(bundle: ServingBundle) -> None:
    late = SNAPSHOT_TIME + SNAPSHOT_SLA + dt.timedelta(hours=1)
    assert _reason(bundle, late, SNAPSHOT_SLA) == "stale_features"
    assert _reason(bundle, late, None) is None  # the check is off when no SLA is configured


def test_the_fallback_for_a_stale_snapshot_still_answers_six(bundle: ServingBundle) -> None:
    rec = Recommender(bundle, TableUserFeatures(bundle.users), max_snapshot_age=SNAPSHOT_SLA)
    req = contract.PostCheckoutRequest(
        user_id=3,
        purchased_item_ids=[1000],
        region="north",
        timestamp=SNAPSHOT_TIME + dt.timedelta(days=9),
    )
    resp = rec.recommend(req, None).response
    assert resp.policy == "fallback" and resp.fallback_reason == "stale_features"
    assert len({it.listing_id for it in resp.items}) == contract.SLATE_SIZE
