"""The simulator: deterministic per seed, truth consistent with its logs, exact propensities."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from checkout_recs.simulate import SimConfig, run_simulation
from checkout_recs.simulate.evaluate import logged_expectations
from checkout_recs.simulate.logging_policy import HeuristicPolicy
from checkout_recs.simulate.scenario import SimWorld
from tests.fixtures_data import TINY


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "raw"
    run_simulation(TINY, out)
    return out


def test_one_seed_gives_identical_files_and_another_seed_does_not(
    raw: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    run_simulation(TINY, again)
    assert _digests(raw) == _digests(again)
    other = tmp_path / "other"
    run_simulation(TINY.model_copy(update={"seed": TINY.seed + 1}), other)
    assert (
        _digests(other)["impressions/part-00000.parquet"]
        != _digests(raw)["impressions/part-00000.parquet"]
    )


def test_chunked_catalogue_writes_partitioned_parquet_with_the_same_data(tmp_path: Path) -> None:
    cfg = TINY.model_copy(update={"n_listings": 2_500, "chunk_rows": 1_000, "days": 1})
    s = run_simulation(cfg, tmp_path / "chunked")
    parts = sorted(p.name for p in (tmp_path / "chunked" / "listings").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    chunked = pq.read_table(tmp_path / "chunked" / "listings").sort_by("listing_id")
    assert s.rows["listings"] == 2_500
    assert np.array_equal(chunked["listing_id"].to_numpy(), np.arange(1, 2_501))
    run_simulation(cfg.model_copy(update={"chunk_rows": 500_000}), tmp_path / "whole")
    whole = pq.read_table(tmp_path / "whole" / "listings")
    assert whole.equals(
        chunked.select(whole.column_names)
    )  # chunking does not change the catalogue
    for table in ("impressions", "orders", "clicks"):
        a = pq.read_table(tmp_path / "chunked" / table)
        assert a.equals(pq.read_table(tmp_path / "whole" / table)), table


def test_truth_expected_clicks_match_logged_clicks(raw: Path) -> None:
    world = SimWorld.from_raw(raw)
    exp = logged_expectations(world, raw)
    clicks = pq.read_table(raw / "clicks").to_pandas()
    observed = len(clicks)
    expected = exp.p_click.sum()
    sd = np.sqrt((exp.p_click * (1 - exp.p_click)).sum())
    assert abs(observed - expected) < 4 * sd, (observed, expected, sd)
    # and per slot: position bias is in the logs the way the truth says
    by_slot = (
        clicks.merge(
            pq.read_table(raw / "impressions").to_pandas(), on=["request_id", "listing_id"]
        )
        .groupby("slot")
        .size()
    )
    assert by_slot.loc[0] > by_slot.loc[5]


def test_purchases_follow_clicks_and_never_exceed_truth(raw: Path) -> None:
    world = SimWorld.from_raw(raw)
    exp = logged_expectations(world, raw)
    purchases = pq.read_table(raw / "purchases").to_pandas()
    clicks = pq.read_table(raw / "clicks").to_pandas()
    assert purchases.merge(clicks, on=["user_id", "listing_id"]).shape[0] >= len(purchases)
    # purchases need stock, so at most the truth's expectation (+ noise)
    expected = (exp.p_click * exp.p_purchase).sum()
    assert len(purchases) < expected + 4 * np.sqrt(expected)
    assert len(purchases) > 0.5 * expected


def test_logged_propensities_are_exact_marginals() -> None:
    world = SimWorld.build(TINY)
    policy = HeuristicPolicy(world.tax, world.sellers, world.cat, epsilon=0.3)
    rng = np.random.default_rng(0)
    cands = np.arange(10, 22)  # K = 12
    basket = np.array([0, -1])
    n = 20_000
    items, prop = policy.slate_batch(rng, np.tile(basket, (n, 1)), np.tile(cands, (n, 1)))
    for slot in (0, 3, 5):
        for j in cands[:4]:
            shown = items[:, slot] == j
            freq = shown.mean()
            logged = np.unique(prop[shown, slot]) if shown.any() else np.array([0.3 / 12])
            assert len(logged) == 1  # one propensity per (context, listing, slot)
            assert abs(freq - logged[0]) < 4 * np.sqrt(logged[0] * (1 - logged[0]) / n) + 1e-9, (
                slot,
                j,
            )
    assert (prop >= 0.3 / 12 - 1e-12).all() and (prop <= 1).all()


def test_seasonality_knob_zero_is_quiet() -> None:
    quiet = SimWorld.build(TINY.model_copy(update={"seasonality": 0.0}))
    loud = SimWorld.build(TINY)
    t = np.array([0, 7, 14]) * 86_400_000_000 + quiet.truth.params.start_us
    tops = np.zeros(3, np.int64)
    assert np.all(quiet.truth.season(tops, t) == 0)
    assert np.ptp(loud.truth.season(tops, t)) > 0.5


def test_inventory_events_consistent(raw: Path) -> None:
    inv = (
        pq.read_table(raw / "inventory_events").to_pandas().sort_values(["listing_id", "sequence"])
    )
    assert (
        inv.groupby("listing_id").event_timestamp.apply(lambda s: s.is_monotonic_increasing)
    ).all()
    assert (inv.groupby("listing_id").sequence.apply(lambda s: s.is_unique)).all()
    first = inv.groupby("listing_id").first()
    assert (first.event_type == "listed").all()
    listings = pq.read_table(raw / "listings").to_pandas().set_index("listing_id")
    sold = inv[inv.event_type == "sold"].groupby("listing_id").size()
    assert (sold <= listings.quantity.reindex(sold.index)).all()  # never sells more than the stock
    assert inv.loc[inv.event_type == "locked", "lock_ttl_s"].notna().all()
    assert inv.loc[inv.event_type != "locked", "lock_ttl_s"].isna().all()


def test_new_sellers_exist_and_some_have_linked_history(raw: Path) -> None:
    sellers = pq.read_table(raw / "sellers").to_pandas()
    start = SimConfig().start
    new = sellers.joined_at > (start - np.timedelta64(30, "D"))
    assert new.any() and (~new).any()
    assert (
        sellers.loc[new, "linked_history"].any() and not sellers.loc[~new, "linked_history"].any()
    )
    assert sellers.loc[new & ~sellers.linked_history, "rating"].isna().all()
    assert set(pq.read_table(raw / "impressions").to_pandas().policy) == {"heuristic_v0"}


def test_seasonality_moves_category_demand_over_the_days() -> None:
    from checkout_recs.simulate.scenario import draw_day

    def tv(cfg_seasonality: float) -> float:
        world = SimWorld.build(TINY.model_copy(update={"seasonality": cfg_seasonality, "days": 14}))
        share = []
        for day in (0, 13):
            d = draw_day(world, np.random.default_rng(day), day, 4_000)
            top = world.tax.leaf_top[d.basket_leaf[:, 0]]
            share.append(np.bincount(top, minlength=len(world.tax.top_ids)) / len(top))
        return 0.5 * np.abs(share[0] - share[1]).sum()

    quiet, loud = tv(0.0), tv(1.0)
    assert quiet < 0.06  # sampling noise only
    assert loud > quiet + 0.08
