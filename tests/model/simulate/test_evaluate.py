"""evaluate_policy: a better policy earns more, the old heuristic buries new sellers, bad slates fail."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_recs.simulate.evaluate import (
    CandidateSet,
    RequestContext,
    evaluate_policy,
    heuristic_policy,
    oracle_policy,
    random_policy,
)
from checkout_recs.simulate.scenario import SimWorld
from tests.fixtures_data import TINY


@pytest.fixture(scope="module")
def world() -> SimWorld:
    return SimWorld.build(TINY.model_copy(update={"n_listings": 3_000}))


def test_oracle_beats_heuristic_and_random(world: SimWorld) -> None:
    kw = {"days": 2, "world": world, "requests_per_day": 80}
    oracle = evaluate_policy(oracle_policy(world), **kw)
    heur = evaluate_policy(heuristic_policy(world), **kw)
    rand = evaluate_policy(random_policy(), **kw)
    assert oracle.n_requests == heur.n_requests == rand.n_requests > 100
    assert oracle.revenue > heur.revenue and oracle.revenue > rand.revenue
    assert heur.clicks > rand.clicks  # complements do help clicks
    assert 0 < heur.purchases < heur.clicks


def test_heuristic_buries_new_sellers(world: SimWorld) -> None:
    kw = {"days": 2, "world": world, "requests_per_day": 80}
    heur = evaluate_policy(heuristic_policy(world), **kw).impressions_by_seller_cohort
    rand = evaluate_policy(random_policy(), **kw).impressions_by_seller_cohort
    assert heur["new"] / sum(heur.values()) < 0.7 * rand["new"] / sum(rand.values())


def test_same_requests_for_every_policy_and_region_filter(world: SimWorld) -> None:
    seen: list[list[str]] = [[], []]

    def spy(k: int):  # noqa: ANN202
        def policy(ctx: RequestContext, cands: CandidateSet) -> tuple[np.ndarray, np.ndarray]:
            seen[k].append((ctx.request_id, ctx.region, tuple(cands.listing_id[:3])))
            return cands.listing_id[:6], np.ones(6)

        return policy

    evaluate_policy(spy(0), [1], ["north"], world=world, requests_per_day=40)
    evaluate_policy(spy(1), [1], ["north"], world=world, requests_per_day=40)
    assert seen[0] == seen[1] and len(seen[0]) > 0
    assert {r for _, r, _ in seen[0]} == {"north"}


def test_invalid_slates_are_refused(world: SimWorld) -> None:
    def repeats(ctx: RequestContext, cands: CandidateSet) -> tuple[np.ndarray, np.ndarray]:
        return np.repeat(cands.listing_id[:1], 6), np.ones(6)

    def outsider(ctx: RequestContext, cands: CandidateSet) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(10**9, 10**9 + 6), np.ones(6)

    def zero_prop(ctx: RequestContext, cands: CandidateSet) -> tuple[np.ndarray, np.ndarray]:
        return cands.listing_id[:6], np.zeros(6)

    for bad in (repeats, outsider, zero_prop):
        with pytest.raises(ValueError):
            evaluate_policy(bad, [0], world=world, requests_per_day=5)


def test_logging_policy_expectation_matches_what_its_logs_realised(tmp_path) -> None:  # noqa: ANN001
    """Inventory is consumed as in the logged market: the heuristic evaluated on its own world
    expects what its logs realised (within the logs' 95% interval), per request."""
    from checkout_recs.simulate import run_simulation
    from checkout_recs.simulate.evaluate import logged_outcomes

    cfg = TINY.model_copy(update={"n_listings": 2_000, "days": 8, "checkouts_per_day": 80})
    run_simulation(cfg, tmp_path / "raw")
    world = SimWorld.from_raw(tmp_path / "raw")
    logs = logged_outcomes(tmp_path / "raw")
    value = evaluate_policy(heuristic_policy(world), cfg.days, world=world)
    assert abs(value.n_requests - len(logs)) <= 0.05 * len(logs)
    for name in ("clicks", "purchases", "gmv"):
        half = 1.96 * logs[name].std() / np.sqrt(len(logs))
        assert abs(value.per_request[name] - logs[name].mean()) <= half, name


def test_sold_listings_are_not_offered_again(world: SimWorld) -> None:
    """A one-off listing bought through a recommendation is never a candidate on a later day, and
    only listings still free are credited with expected purchases."""
    from checkout_recs.simulate.policy_market import run_policy_market

    pol = random_policy(0)
    rec = run_policy_market(world, lambda day, region: pol, 4, requests_per_day=120)
    s, o = rec.shown, rec.offered
    assert len(s) > 0 and not s["logged"].any()
    one_off = world.cat.quantity[s["listing_id"].to_numpy() - 1] == 1
    sold = s[s["purchased"] & one_off].groupby("listing_id")["day"].min()
    assert len(sold) > 0
    later = o.merge(sold.rename("sold_day"), left_on="listing_id", right_index=True)
    assert not (later["day"] > later["sold_day"] + 1).any()
    assert (s.loc[s["purchased"], "available"]).all() and (~s["available"]).any()
