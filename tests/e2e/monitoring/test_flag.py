"""The seasonal shift trips the drift monitor, the flag goes up, serving answers with the fallback;
a quiet world does not trip it. Redis DB 13, a private key, deleted afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from monitoring.flag import clear_drift_flag, read_drift_flag
from monitoring.simcheck import check_world
from monitoring.traffic import monitor_and_flag
from tests.fixtures_measure import REDIS_URL, redis_flag_fixture  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_seasonal_shift_sets_flag_and_serving_falls_back(tmp_path: Path, redis_flag) -> None:
    from checkout_recs import contract
    from checkout_recs.serving.bundle import ServingBundle
    from checkout_recs.serving.recommender import Recommender, TableUserFeatures
    from checkout_recs.serving.switches import Switches
    from tests.fixtures_serving import make_serving_bundle

    client, key = redis_flag
    quiet = check_world(seed=11, seasonality=0.0, work=tmp_path / "quiet")
    assert not quiet.confirmed, quiet.reasons
    assert not monitor_and_flag(quiet, client, key=key)
    assert read_drift_flag(client, key) is None

    seasonal = check_world(seed=11, seasonality=1.0, work=tmp_path / "seasonal")
    assert seasonal.confirmed and "top_category" in seasonal.features.drifted_columns
    assert (tmp_path / "seasonal" / "drift" / "index.html").is_file()
    assert monitor_and_flag(seasonal, client, who="monitoring-job", key=key)
    flag = read_drift_flag(client, key)
    assert flag is not None and flag.who == "monitoring-job" and "features" in flag.why

    bundle = ServingBundle.load(
        make_serving_bundle(tmp_path / "bundle", n_listings=400, with_model=False)
    )
    switches = Switches(REDIS_URL, ttl_s=0.0, drift_key=key, kill_key=key + "_kill")
    rec = Recommender(bundle, TableUserFeatures(bundle.users), switches=switches)
    req = contract.PostCheckoutRequest(user_id=1, purchased_item_ids=[1000], region="north")
    answer = rec.recommend(req, scorer=None).response
    assert answer.policy == "fallback" and answer.fallback_reason == "drift_flag"
    assert len({i.listing_id for i in answer.items}) == contract.SLATE_SIZE
    assert asyncio.run(switches.state()).detail["drift_flag"]["report"].endswith("index.html")

    clear_drift_flag(client, who="on-call", why="retrained", key=key)
    after = rec.recommend(req, scorer=None).response
    assert after.fallback_reason != "drift_flag"
