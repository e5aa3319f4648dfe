"""Sellers, users and the listing catalogue of the simulated marketplace.

The catalogue is held as compact numpy arrays (about 20 bytes a listing: no strings), generated
chunk by chunk from a per-chunk seed, so that 18M listings fit in a few hundred MB and titles
are only made while a chunk is written (``listing_chunk_table``). Everything here is
deterministic for a given ``SimConfig.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from checkout_recs import contract
from checkout_recs.simulate.config import SimConfig
from checkout_recs.simulate.taxonomy import CONDITION_WORDS, Taxonomy

US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S
#: Seed streams, so that adding a draw to one stage never changes another stage's numbers.
STREAM_SELLERS, STREAM_USERS, STREAM_LISTINGS, STREAM_MARKET, STREAM_TRUTH, STREAM_TITLES = (
    1,
    2,
    3,
    4,
    5,
    7,
)


def rng_for(seed: int, stream: int, part: int = 0) -> np.random.Generator:
    """Independent generator for (seed, stream, part)."""
    return np.random.default_rng([seed, stream, part])


def start_us(cfg: SimConfig) -> int:
    """``cfg.start`` in microseconds since the epoch (UTC)."""
    return int(cfg.start.timestamp() * US_PER_S)


@dataclass
class Sellers:
    """Sellers as arrays, index ``s`` has ``seller_id = s + 1``; shapes (n_sellers,).

    ``joined_at`` is µs since epoch; ``incumbent`` joined > 1 year before the start; ``new`` joined
    within 30 days of the start or during the run; ``reliability`` is hidden (drives P(purchase)),
    ``rating`` is what buyers see (NaN before any rating); ``weight`` is listing activity.
    """

    region: np.ndarray
    joined_at: np.ndarray
    incumbent: np.ndarray
    new: np.ndarray
    linked: np.ndarray
    reliability: np.ndarray
    rating: np.ndarray
    weight: np.ndarray


@dataclass
class Users:
    """Buyers as arrays, index ``u`` has ``user_id = u + 1``.

    ``taste`` (n_users, n_top) sums to 1 per user; ``price_sens`` > 0 (per log-price unit);
    ``activity`` (n_users,) relative checkout rate; ``region``/``device`` index into the config's
    regions and ``contract.DEVICES``; ``signup_at`` µs since epoch.
    """

    region: np.ndarray
    device: np.ndarray
    signup_at: np.ndarray
    taste: np.ndarray
    price_sens: np.ndarray
    activity: np.ndarray


@dataclass
class Catalogue:
    """Listings as compact arrays, index ``i`` has ``listing_id = i + 1``; shapes (n_listings,).

    ``leaf`` indexes ``Taxonomy.leaf_ids``; ``seller`` indexes ``Sellers``; ``region`` the config
    regions; ``price`` currency units; ``quality`` hidden latent N(0, 1); ``quantity`` >= 1;
    ``listed_at`` and ``delist_at`` (when the seller takes it down, if still live) µs since epoch.
    """

    leaf: np.ndarray
    seller: np.ndarray
    region: np.ndarray
    price: np.ndarray
    quality: np.ndarray
    quantity: np.ndarray
    listed_at: np.ndarray
    delist_at: np.ndarray

    def __len__(self) -> int:
        return len(self.leaf)


def make_sellers(cfg: SimConfig) -> Sellers:
    """Draw ``cfg.n_sellers`` sellers (incumbents, regulars and new, some with linked history)."""
    rng, n, t0 = rng_for(cfg.seed, STREAM_SELLERS), cfg.n_sellers, start_us(cfg)
    kind = rng.choice(3, size=n, p=[0.4, 0.6 - cfg.new_seller_share, cfg.new_seller_share])
    age_days = np.where(
        kind == 0, rng.uniform(365, 2000, n), np.where(kind == 1, rng.uniform(30, 365, n), 0.0)
    )
    join_new = rng.uniform(-30, cfg.days, n)  # new sellers: last 30 days or during the run
    joined = np.where(kind == 2, t0 + join_new * US_PER_DAY, t0 - age_days * US_PER_DAY).astype(
        np.int64
    )
    new = kind == 2
    reliability = rng.normal(0.0, 0.5, n)  # the same for new and old: burying new sellers is a bias
    linked = new & (rng.random(n) < cfg.linked_history_share)
    rated = ~new | linked
    rating = np.where(rated, np.clip(4.2 + 0.6 * reliability + rng.normal(0, 0.2, n), 1, 5), np.nan)
    weight = rng.lognormal(0, 1, n) * np.where(kind == 0, 3.0, 1.0)
    return Sellers(
        region=rng.integers(0, len(cfg.regions), n).astype(np.int8),
        joined_at=joined,
        incumbent=kind == 0,
        new=new,
        linked=linked,
        reliability=reliability,
        rating=np.round(rating, 2),
        weight=weight / weight.sum(),
    )


def make_users(cfg: SimConfig, n_top: int) -> Users:
    """Draw ``cfg.n_users`` buyers with latent tastes over top categories and price sensitivity."""
    rng, n = rng_for(cfg.seed, STREAM_USERS), cfg.n_users
    return Users(
        region=rng.integers(0, len(cfg.regions), n).astype(np.int8),
        device=rng.choice(len(contract.DEVICES), size=n, p=[0.4, 0.35, 0.25]).astype(np.int8),
        signup_at=(start_us(cfg) - rng.uniform(1, 1500, n) * US_PER_DAY).astype(np.int64),
        taste=rng.dirichlet(np.full(n_top, 0.4), size=n),
        price_sens=rng.lognormal(0.0, 0.4, n),
        activity=rng.lognormal(0.0, 0.8, n),
    )


#: Listings drawn from one seeded generator. Chunks are whole blocks, so the catalogue does not
#: depend on ``chunk_rows``: one seed, one catalogue, however it is written.
RNG_BLOCK = 1_000


def chunk_bounds(cfg: SimConfig) -> list[tuple[int, int]]:
    """[(first index, end index)] of the listing chunks (``chunk_rows`` is a multiple of ``RNG_BLOCK``)."""
    n, c = cfg.n_listings, cfg.chunk_rows
    return [(a, min(a + c, n)) for a in range(0, n, c)]


def block_draws(
    seed: int, stream: int, first: int, n: int, n_uniform: int, n_normal: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Uniforms (n, n_uniform) and standard normals (n, n_normal) for listings ``first .. first + n``.

    One generator per ``RNG_BLOCK`` block of listings; ``first`` must be a multiple of
    ``RNG_BLOCK``. The same listing gets the same numbers whatever the chunking.
    """
    u, z = np.empty((n, n_uniform)), np.empty((n, n_normal))
    for a in range(0, n, RNG_BLOCK):
        m = min(RNG_BLOCK, n - a)
        rng = rng_for(seed, stream, (first + a) // RNG_BLOCK)
        u[a : a + m] = rng.random((m, n_uniform))
        z[a : a + m] = rng.standard_normal((m, n_normal))
    return u, z


def make_listing_chunk(
    cfg: SimConfig, tax: Taxonomy, sellers: Sellers, first: int, n: int
) -> Catalogue:
    """Draw listings ``first .. first + n`` (deterministic per seed; ``first`` a multiple of ``RNG_BLOCK``)."""
    (u, z), t0 = block_draws(cfg.seed, STREAM_LISTINGS, first, n, 8, 2), start_us(cfg)
    cdf = np.cumsum(sellers.weight)
    seller = np.minimum(np.searchsorted(cdf, u[:, 0] * cdf[-1]), len(cdf) - 1).astype(np.int32)
    leaf = (u[:, 1] * tax.n_leaf).astype(np.int16)
    price = np.round(np.exp(tax.price_mu[leaf] + 0.5 * z[:, 0]), 2).clip(1.0)
    initial = u[:, 3] < cfg.initial_listing_share
    listed = np.where(
        initial, t0 - (0.01 + 59.99 * u[:, 4]) * US_PER_DAY, t0 + u[:, 4] * cfg.days * US_PER_DAY
    ).astype(np.int64)
    listed = np.maximum(listed, sellers.joined_at[seller] + 60 * US_PER_S)
    rate = cfg.delist_rate_per_day
    life_days = -np.log1p(-u[:, 5]) / rate if rate > 0 else np.full(n, 1e6)
    multi = u[:, 6] < cfg.multi_quantity_share
    quantity = np.where(multi, 2 + (u[:, 7] * 9).astype(np.int64), 1).astype(np.int16)
    return Catalogue(
        leaf=leaf,
        seller=seller,
        region=sellers.region[seller],
        price=price,
        quality=z[:, 1].astype(np.float32),
        quantity=quantity,
        listed_at=listed,
        delist_at=(listed + np.minimum(life_days, 1e5) * US_PER_DAY).astype(np.int64),
    )


def allocate(n: int, like: Catalogue) -> Catalogue:
    """An uninitialised catalogue of ``n`` listings with the dtypes of ``like``."""
    return Catalogue(
        **{k: np.empty(n, getattr(like, k).dtype) for k in Catalogue.__dataclass_fields__}
    )


def fill(target: Catalogue, first: int, chunk: Catalogue) -> None:
    """Copy ``chunk`` into ``target`` at ``first`` (no second copy of the catalogue is ever held)."""
    for k in Catalogue.__dataclass_fields__:
        getattr(target, k)[first : first + len(chunk)] = getattr(chunk, k)


def listing_chunk_table(
    cfg: SimConfig, tax: Taxonomy, chunk: Catalogue, first_index: int
) -> pa.Table:
    """The chunk as a ``contract.LISTINGS`` table, with titles drawn from the leaf's words."""

    n = len(chunk)
    u, _ = block_draws(cfg.seed, STREAM_TITLES, first_index, n, 3)
    width = max(len(w) for w in tax.words)
    vocab = pa.array([w[k % len(w)] for w in tax.words for k in range(width)])  # (n_leaf * width,)
    leaf = chunk.leaf.astype(np.int64)
    lens = np.asarray([len(w) for w in tax.words])[leaf]
    i1 = (u[:, 0] * lens).astype(np.int64)
    i2 = (i1 + 1 + (u[:, 1] * (lens - 1)).astype(np.int64)) % lens  # a different word of the leaf
    first = vocab.take(pa.array(leaf * width + i1))
    second = vocab.take(pa.array(leaf * width + i2))
    cond = pa.array(CONDITION_WORDS).take(
        pa.array((u[:, 2] * len(CONDITION_WORDS)).astype(np.int64))
    )
    titles = pc.binary_join_element_wise(cond, first, second, " ")
    ids = np.arange(first_index + 1, first_index + n + 1, dtype=np.int64)
    regions = pa.array(list(cfg.regions))
    return pa.table(
        {
            "listing_id": ids,
            "seller_id": chunk.seller.astype(np.int64) + 1,
            "category_id": tax.leaf_ids[chunk.leaf],
            "region": regions.take(pa.array(chunk.region.astype(np.int64))),
            "title": titles,
            "price": chunk.price.astype(np.float64),
            "take_rate": tax.take_rate[chunk.leaf],
            "quantity": chunk.quantity.astype(np.int32),
            "listed_at": pa.array(chunk.listed_at, pa.int64()).cast(contract.TS),
        },
        schema=contract.LISTINGS,
    )
