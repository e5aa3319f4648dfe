"""The serving-policy adapter used by `experiment simulate`: candidates and slate repair."""

from __future__ import annotations

from collections import Counter

import numpy as np

from checkout_recs import contract
from checkout_recs.simulate.policy_api import RequestContext
from checkout_recs.studies.serving_policy import SimulatorCandidates, _within_candidates


class _Catalog:
    """Listing ids 100..109 at rows 0..9; anything else is unknown (-1)."""

    def rows(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        return np.where((ids >= 100) & (ids < 110), ids - 100, -1)


def _response(ids: list[int], props: list[float]) -> contract.PostCheckoutResponse:
    items = [
        contract.RecommendedItem(
            listing_id=i, slot=s, score=1.0, propensity=p, source="x", reason="r"
        )
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
    assert (
        ids.tolist() == [100, 101, 102, 103, 104, 105]
        and prop[-1] == 0.2
        and stats["replaced"] == 0
    )
    bad = _response([100, 500, 102, 501, 104, 105], [1, 0.5, 1, 0.5, 1, 1])
    ids, prop = _within_candidates(bad, offered, stats)
    assert set(ids.tolist()) <= set(offered.tolist()) and len(set(ids.tolist())) == 6
    assert prop[1] == prop[3] == 1.0 and stats["replaced"] == 1


def test_listings_newer_than_the_snapshot_are_indexed_before_the_answer(tmp_path) -> None:  # noqa: ANN001
    """A listing offered by the simulator but unknown to the bundle's snapshot is added (no history,
    prior rates, its observable fields) before the request is answered, so it may be shown."""
    import pandas as pd

    from checkout_recs.simulate.policy_api import CandidateSet, RequestContext
    from checkout_recs.studies.serving_policy import serving_policy
    from tests.fixtures_serving import make_serving_bundle

    bundle = make_serving_bundle(tmp_path / "b", n_listings=400, n_users=50)
    snap = pd.read_parquet(bundle / "index" / "snapshot.parquet")
    known = snap[snap["region"] == "north"].head(8)
    policy, stats = serving_policy(bundle)
    new_ids = np.array([10_001, 10_002, 10_003, 10_004])
    k = len(known) + len(new_ids)
    cands = CandidateSet(
        listing_id=np.r_[known["listing_id"].to_numpy(np.int64), new_ids],
        category_id=np.r_[known["category_id"].to_numpy(np.int32), np.full(4, 3, np.int32)],
        top_category_id=np.zeros(k, np.int32), seller_id=np.r_[known["seller_id"].to_numpy(np.int64), [1, 2, 3, 4]],
        price=np.full(k, 20.0), take_rate=np.full(k, 0.1), age_days=np.r_[np.full(8, 30.0), np.full(4, 0.1)],
        seller_age_days=np.full(k, 400.0), seller_rating=np.full(k, 4.5), seller_is_new=np.zeros(k, bool),
    )  # fmt: skip
    t_us = int(pd.Timestamp("2026-10-20T12:00:00Z").value // 1_000)
    ctx = RequestContext(
        "q1", 1, "north", "web", t_us, np.array([int(snap["listing_id"].iloc[-1])]), np.array([0])
    )
    ids, prop = policy(ctx, cands)
    assert stats["listings_added"] == 4 and stats["requests"] == 1 and stats["replaced"] == 0
    assert len(set(ids.tolist())) == 6 and set(ids.tolist()) <= set(cands.listing_id.tolist())
    assert ((prop > 0) & (prop <= 1)).all()


def test_exploration_cap_row_reports_the_worst_day() -> None:
    import pandas as pd

    from checkout_recs.studies.geo_experiment import with_cap_row

    table = pd.DataFrame(columns=["quantity", "treated", "holdout", "counterfactual", "note"])
    ok = with_cap_row(
        table,
        {"d1": {"served": 100.0, "spent": 1.0}, "d2": {"served": 50.0, "spent": 1.0}},
        cap=0.03,
    )
    assert ok.iloc[-1]["treated"] == 0.02 and "holds" in ok.iloc[-1]["note"]
    bad = with_cap_row(table, {"d1": {"served": 10.0, "spent": 1.0}}, cap=0.03)
    assert "BROKEN" in bad.iloc[-1]["note"]


def test_with_a_world_listed_listings_are_indexed_hourly_without_being_offered(tmp_path) -> None:  # noqa: ANN001
    """Near-line indexing: the scheduled refresh adds every listing of the world already listed
    and still live that the snapshot lacks, before any of them is offered."""
    import pandas as pd

    from checkout_recs.simulate.config import SimConfig
    from checkout_recs.simulate.policy_api import candidate_set
    from checkout_recs.simulate.scenario import SimWorld
    from checkout_recs.studies.serving_policy import serving_policy
    from tests.fixtures_serving import make_serving_bundle

    bundle = make_serving_bundle(tmp_path / "b", n_listings=400, n_users=50)
    snap = pd.read_parquet(bundle / "index" / "snapshot.parquet")
    world = SimWorld.build(
        SimConfig(
            seed=3,
            n_listings=1_600,
            n_sellers=60,
            n_users=50,
            days=4,
            regions=("north", "south", "east", "west"),
        )
    )
    policy, stats = serving_policy(bundle, world=world)
    known = np.flatnonzero(np.isin(np.arange(1_600) + 1, snap["listing_id"].to_numpy()))[:12]
    t_us = int(world.cat.listed_at.max()) + 1  # everything listed by now
    ctx = RequestContext(
        "q1", 1, "north", "web", t_us, np.array([int(known[-1]) + 1]), np.array([0])
    )
    policy(ctx, candidate_set(world, known[:-1], t_us))
    live = (world.cat.listed_at <= t_us) & (world.cat.delist_at > t_us)
    unknown = ~np.isin(np.arange(1_600) + 1, snap["listing_id"].to_numpy())
    assert stats["listings_added"] == int((live & unknown).sum()) > 0


def test_floor_row_reports_reserved_slots_and_the_share_given_up() -> None:
    import pandas as pd

    from checkout_recs.studies.geo_experiment import with_floor_row

    table = pd.DataFrame(columns=["quantity", "treated", "holdout", "counterfactual", "note"])
    row = with_floor_row(
        table,
        {
            "d1": {"reserved": 3, "given_up": 1.0, "served": 99.0},
            "d2": {"reserved": 1, "given_up": 0.0, "served": 100.0},
        },
    ).iloc[-1]
    assert row["treated"] == 0.005 and row["note"].startswith("4 reserved slots over 2 days")
