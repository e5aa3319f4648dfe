"""The simulated world as one object, and the vectorised draw of a day's checkout contexts.

``SimWorld.build(cfg)`` rebuilds everything deterministically from the config (so a run's hidden
truth is recovered exactly from its ``manifest.json``: ``SimWorld.from_raw(raw_dir)``).
``draw_day`` draws, for one day, who checks out when, what they would like to buy and the
listings the candidate generator looks at; inventory is applied afterwards (``market``), so the
same draw serves the logged market and ``evaluate_policy``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from checkout_recs.simulate.config import SimConfig
from checkout_recs.simulate.taxonomy import Taxonomy, build_taxonomy
from checkout_recs.simulate.truth import Truth
from checkout_recs.simulate.world import (
    US_PER_DAY,
    US_PER_S,
    Catalogue,
    Sellers,
    Users,
    allocate,
    chunk_bounds,
    fill,
    make_listing_chunk,
    make_sellers,
    make_users,
    start_us,
)

BASKET_PICKS, SECOND_PICKS, ABANDON_PICKS = 16, 8, 8
SECOND_ITEM_SHARE = 0.25


class RegionLeafIndex:
    """Listing indices grouped by (region, leaf), for drawing listings of a leaf in a region."""

    def __init__(self, cat: Catalogue, n_regions: int, n_leaf: int) -> None:
        key = cat.region.astype(np.int64) * n_leaf + cat.leaf
        self.order = np.argsort(key, kind="stable").astype(np.int64)
        self.offsets = np.searchsorted(key[self.order], np.arange(n_regions * n_leaf + 1))
        self.n_leaf = n_leaf

    def draw(self, rng: np.random.Generator, region: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        """One random listing per entry: region (N, 1) or (N,), leaves (N, m) -> (N, m), -1 where empty."""
        k = np.asarray(region, np.int64).reshape(len(leaves), -1) * self.n_leaf + leaves
        lo, hi = self.offsets[k], self.offsets[k + 1]
        pos = lo + (rng.random(k.shape) * (hi - lo)).astype(np.int64)
        return np.where(hi > lo, self.order[np.minimum(pos, len(self.order) - 1)], -1)


@dataclass
class SimWorld:
    """Config, taxonomy, sellers, users, catalogue, hidden truth and the sampling index."""

    cfg: SimConfig
    tax: Taxonomy
    sellers: Sellers
    users: Users
    cat: Catalogue
    truth: Truth
    index: RegionLeafIndex

    @classmethod
    def build(
        cls, cfg: SimConfig, on_chunk: Callable[[int, int, Catalogue], None] | None = None
    ) -> SimWorld:
        """Draw the world for ``cfg``; ``on_chunk(part, first_index, chunk)`` sees each listing chunk."""
        tax = build_taxonomy()
        sellers, users = make_sellers(cfg), make_users(cfg, len(tax.top_ids))
        cat: Catalogue | None = None
        for k, (a, b) in enumerate(chunk_bounds(cfg)):
            chunk = make_listing_chunk(cfg, tax, sellers, a, b - a)
            if on_chunk is not None:
                on_chunk(k, a, chunk)
            if cat is None:
                cat = allocate(cfg.n_listings, chunk)
            fill(cat, a, chunk)
        if cat is None:
            raise ValueError("n_listings must be positive")
        truth = Truth.draw(cfg, tax, users, cat, sellers)
        return cls(
            cfg, tax, sellers, users, cat, truth, RegionLeafIndex(cat, len(cfg.regions), tax.n_leaf)
        )

    @classmethod
    def from_raw(cls, raw_dir: Path) -> SimWorld:
        """The world of a finished run, rebuilt from ``raw_dir/manifest.json`` (exact: same seed)."""
        manifest = json.loads((Path(raw_dir) / "manifest.json").read_text())
        return cls.build(SimConfig.model_validate(manifest["config"]))

    def static_available(self, items: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Listed and not yet delisted at ``t`` (µs), ignoring sales and locks: same shapes, bool."""
        c = self.cat
        safe = np.maximum(items, 0)
        return (items >= 0) & (c.listed_at[safe] <= t) & (c.delist_at[safe] > t)


@dataclass
class DayDraw:
    """One day's checkout contexts (N checkouts); listing arrays hold indices, -1 = nothing."""

    t: np.ndarray  # (N,) checkout time, µs
    user: np.ndarray  # (N,)
    region: np.ndarray  # (N,)
    device: np.ndarray  # (N,)
    basket_leaf: np.ndarray  # (N, 2) intended leaves, -1 where no second item
    basket_picks: np.ndarray  # (N, 16) first item options, best first (statically available)
    second_picks: np.ndarray  # (N, 8) second item options
    lock_offset: np.ndarray  # (N, 2) how long before checkout the basket was locked, µs
    comp_picks: np.ndarray  # (N, 2K) candidate options from complementary leaves
    other_picks: np.ndarray  # (N, 4K) candidate options from any leaf
    abandon: np.ndarray  # (N,) bool: an abandoned lock happens just before
    abandon_picks: np.ndarray  # (N, 8)
    abandon_offset: np.ndarray  # (N, 2) lock before checkout, lock duration (µs)


def _inverse_cdf(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Row-wise categorical draws: weights (N, C) >= 0 -> (N, size) column indices."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random((len(weights), size)) * cdf[:, -1:]
    return np.minimum((cdf[:, None, :] <= u[:, :, None]).sum(axis=2), weights.shape[1] - 1)


def _mask(world: SimWorld, picks: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.where(world.static_available(picks, t[:, None]), picks, -1)


def draw_day(
    world: SimWorld, rng: np.random.Generator, day: int, n: int, k: int | None = None
) -> DayDraw:
    """Draw ``n`` checkout contexts of ``day`` (0-based), sorted by time; ``k`` candidates (default config)."""
    cfg, tax, users, cat = world.cfg, world.tax, world.users, world.cat
    k = k or cfg.n_candidates
    t = start_us(cfg) + day * US_PER_DAY + np.sort(rng.integers(0, US_PER_DAY, n))
    cum = np.cumsum(users.activity)
    user = np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1]), len(cum) - 1)
    region, n_top = users.region[user].astype(np.int64), len(tax.top_ids)
    season = world.truth.season(np.arange(n_top)[None, :], t[:, None])
    top = _inverse_cdf(rng, users.taste[user] * np.exp(season), 1)[:, 0]
    first_leaf, n_leaves = (
        np.searchsorted(tax.leaf_top, top),
        np.bincount(tax.leaf_top, minlength=n_top)[top],
    )
    leaf = first_leaf + (rng.random(n) * n_leaves).astype(np.int64)
    picks = _mask(
        world, world.index.draw(rng, region, np.repeat(leaf[:, None], BASKET_PICKS, 1)), t
    )
    safe = np.maximum(picks, 0)
    util = cat.quality[safe] - users.price_sens[user][:, None] * (
        np.log(cat.price[safe]) - tax.price_mu[leaf][:, None]
    )
    util = np.where(picks >= 0, util + rng.gumbel(size=picks.shape), -np.inf)
    basket_picks = np.take_along_axis(picks, np.argsort(-util, axis=1, kind="stable"), axis=1)
    second = np.where(
        rng.random(n) < SECOND_ITEM_SHARE, _inverse_cdf(rng, tax.comp[leaf], 1)[:, 0], -1
    )
    second_picks = _mask(
        world,
        world.index.draw(rng, region, np.repeat(np.maximum(second, 0)[:, None], SECOND_PICKS, 1)),
        t,
    )
    second_picks[second < 0] = -1
    basket_leaf = np.stack([leaf, second], axis=1)
    row = np.where(basket_leaf[:, :, None] >= 0, tax.comp[np.maximum(basket_leaf, 0)], 0).max(
        axis=1
    )
    comp_picks = _mask(world, world.index.draw(rng, region, _inverse_cdf(rng, row, 2 * k)), t)
    other_picks = _mask(
        world, world.index.draw(rng, region, rng.integers(0, tax.n_leaf, (n, 4 * k))), t
    )
    abandon_picks = _mask(
        world, world.index.draw(rng, region, rng.integers(0, tax.n_leaf, (n, ABANDON_PICKS))), t
    )
    return DayDraw(
        t=t,
        user=user,
        region=region,
        device=users.device[user].astype(np.int64),
        basket_leaf=basket_leaf,
        basket_picks=basket_picks,
        second_picks=second_picks,
        lock_offset=(rng.uniform(60, 600, (n, 2)) * US_PER_S).astype(np.int64),
        comp_picks=comp_picks,
        other_picks=other_picks,
        abandon=rng.random(n) < cfg.abandon_share,
        abandon_picks=abandon_picks,
        abandon_offset=(rng.uniform([60, 30], [3000, cfg.lock_ttl_s], (n, 2)) * US_PER_S).astype(
            np.int64
        ),
    )
