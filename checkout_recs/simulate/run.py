"""``run_simulation``: draw the world, run the market, write every raw table of the contract.

Output (``out_dir``)::

    <table>/part-00000.parquet ...   one folder per ``contract.RAW_TABLES`` entry, cast to its schema
    _truth/                          hidden parameters (never read by training)
    manifest.json                    ``SimSummary``
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from checkout_recs import contract
from checkout_recs.simulate.config import SimConfig, SimSummary
from checkout_recs.simulate.logging_policy import HeuristicPolicy
from checkout_recs.simulate.market import EVENT_CODES, Market, MarketLog
from checkout_recs.simulate.scenario import SimWorld
from checkout_recs.simulate.taxonomy import Taxonomy, build_taxonomy
from checkout_recs.simulate.world import (
    Catalogue,
    Sellers,
    Users,
    chunk_bounds,
    listing_chunk_table,
)


def string_ids(prefix: str, nums: np.ndarray, width: int = 0) -> pa.Array:
    """``f"{prefix}{n:0{width}d}"`` for every n of ``nums`` (N,), built in Arrow (fast at 18M rows)."""

    digits = pc.cast(pa.array(np.asarray(nums, np.int64)), pa.string())
    if width:
        digits = pc.utf8_lpad(digits, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _ts(values: np.ndarray | list[int]) -> pa.Array:
    return pa.array(np.asarray(values, np.int64), pa.int64()).cast(contract.TS)


def _write(out_dir: Path, name: str, table: pa.Table, part: int = 0) -> int:
    table = table.cast(contract.RAW_TABLES[name]) if name in contract.RAW_TABLES else table
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"part-{part:05d}.parquet")
    return table.num_rows


def categories_table(tax: Taxonomy) -> pa.Table:
    """The taxonomy as a ``contract.CATEGORIES`` table."""
    parent = [None if p < 0 else int(p) for p in tax.parent]
    return pa.table(
        {
            "category_id": np.arange(len(tax.names), dtype=np.int32),
            "parent_id": parent,
            "top_category_id": tax.top,
            "name": tax.names,
        },
        schema=contract.CATEGORIES,
    )


def sellers_table(cfg: SimConfig, s: Sellers) -> pa.Table:
    """Sellers as a ``contract.SELLERS`` table (rating null where unrated)."""
    rating = pa.array(s.rating, pa.float64(), from_pandas=True)
    return pa.table(
        {
            "seller_id": np.arange(1, len(s.region) + 1, dtype=np.int64),
            "region": np.asarray(cfg.regions, dtype=object)[s.region],
            "joined_at": _ts(s.joined_at),
            "rating": rating,
            "linked_history": s.linked,
        },
        schema=contract.SELLERS,
    )


def users_table(cfg: SimConfig, u: Users) -> pa.Table:
    """Users as a ``contract.USERS`` table."""
    return pa.table(
        {
            "user_id": np.arange(1, len(u.region) + 1, dtype=np.int64),
            "region": np.asarray(cfg.regions, dtype=object)[u.region],
            "device": np.asarray(contract.DEVICES, dtype=object)[u.device],
            "signup_at": _ts(u.signup_at),
        },
        schema=contract.USERS,
    )


def event_tables(
    cfg: SimConfig, log: MarketLog, users: Users, cat_price: np.ndarray
) -> dict[str, pa.Table]:
    """Market log -> ``orders``, ``impressions``, ``clicks``, ``purchases`` contract tables."""
    regions = np.asarray(cfg.regions, dtype=object)
    devices = np.asarray(contract.DEVICES, dtype=object)
    seed = cfg.seed

    def col(table: str, name: str) -> np.ndarray:
        return log.column(table, name).astype(np.int64)

    def ids(prefix: str, ns: np.ndarray) -> pa.Array:
        return string_ids(f"{prefix}-{seed}-", ns, 8)

    ou, iu = col("orders", "user"), col("impressions", "user")
    o_item, i_item, p_item = (
        col("orders", "item"),
        col("impressions", "item"),
        col("purchases", "item"),
    )
    return {
        "orders": pa.table(
            {
                "order_id": ids("o", col("orders", "n")),
                "user_id": ou + 1,
                "listing_id": o_item + 1,
                "price": cat_price[o_item],
                "quantity": np.ones(len(ou), np.int32),
                "region": regions[users.region[ou]],
                "device": devices[users.device[ou]],
                "event_timestamp": _ts(col("orders", "t")),
            }
        ),
        "impressions": pa.table(
            {
                "request_id": ids("r", col("impressions", "n")),
                "order_id": ids("o", col("impressions", "n")),
                "user_id": iu + 1,
                "listing_id": i_item + 1,
                "slot": col("impressions", "slot").astype(np.int8),
                "policy": [HeuristicPolicy.name] * len(iu),
                "propensity": log.column("impressions", "prop").astype(np.float64),
                "region": regions[users.region[iu]],
                "device": devices[users.device[iu]],
                "event_timestamp": _ts(col("impressions", "t")),
            }
        ),
        "clicks": pa.table(
            {
                "request_id": ids("r", col("clicks", "n")),
                "user_id": col("clicks", "user") + 1,
                "listing_id": col("clicks", "item") + 1,
                "event_timestamp": _ts(col("clicks", "t")),
            }
        ),
        "purchases": pa.table(
            {
                "purchase_id": [
                    f"p-{seed}-{n:08d}-{s}"
                    for n, s in zip(
                        col("purchases", "n").tolist(),
                        col("purchases", "slot").tolist(),
                        strict=True,
                    )
                ],
                "user_id": col("purchases", "user") + 1,
                "listing_id": p_item + 1,
                "price": cat_price[p_item],
                "event_timestamp": _ts(col("purchases", "t")),
            }
        ),
    }


def market_inventory_table(cfg: SimConfig, log: MarketLog, lock_ttl_s: int) -> pa.Table:
    """Locks, unlocks, sales and delistings, sequence 2.. per listing in time order (1 = listed)."""
    item, t = (
        log.column("inventory", "item").astype(np.int64),
        log.column("inventory", "t").astype(np.int64),
    )
    code = log.column("inventory", "code").astype(np.int64)
    order = np.lexsort((np.arange(len(item)), t, item))
    item, t, code = item[order], t[order], code[order]
    first = np.r_[True, item[1:] != item[:-1]] if len(item) else np.zeros(0, bool)
    run_start = (
        np.maximum.accumulate(np.where(first, np.arange(len(item)), 0)) if len(item) else first
    )
    seq = np.arange(len(item)) - run_start + 2
    ttl = pa.array(np.where(code == 1, lock_ttl_s, 0), pa.int32(), mask=code != 1)
    return pa.table(
        {
            "event_id": string_ids(f"m-{cfg.seed}-", np.arange(len(item)), 9),
            "listing_id": item + 1,
            "event_type": np.asarray(EVENT_CODES, dtype=object)[code],
            "sequence": seq.astype(np.int64),
            "lock_ttl_s": ttl,
            "event_timestamp": _ts(t),
        }
    )


def listed_events_table(first_index: int, listed_at: np.ndarray) -> pa.Table:
    """One ``listed`` event (sequence 1) per listing of a chunk."""
    ids = np.arange(first_index + 1, first_index + len(listed_at) + 1, dtype=np.int64)
    return pa.table(
        {
            "event_id": string_ids("l-", ids),
            "listing_id": ids,
            "event_type": pa.DictionaryArray.from_arrays(
                np.zeros(len(ids), np.int8), ["listed"]
            ).cast(pa.string()),
            "sequence": np.ones(len(ids), np.int64),
            "lock_ttl_s": pa.nulls(len(ids), pa.int32()),
            "event_timestamp": _ts(listed_at),
        }
    )


def run_simulation(cfg: SimConfig, out_dir: Path) -> SimSummary:
    """Simulate the marketplace and write every table of ``contract.RAW_TABLES`` under ``out_dir``.

    Parameters
    ----------
    cfg : sizes, time span, seed and behaviour knobs.
    out_dir : folder to write (created; parquet files of a previous run there are replaced).

    Returns
    -------
    SimSummary with the row count of every table (also written to ``manifest.json``).
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    for name in (*contract.RAW_TABLES, "_truth", "_truth/listings"):
        for old in (out_dir / name).glob("*.parquet"):
            old.unlink()
    rows = {name: 0 for name in contract.RAW_TABLES}
    n_parts = len(chunk_bounds(cfg))

    def write_chunk(part: int, first: int, chunk: Catalogue) -> None:
        bar.update(1)
        rows["listings"] += _write(
            out_dir, "listings", listing_chunk_table(cfg, tax, chunk, first), part
        )
        rows["inventory_events"] += _write(
            out_dir, "inventory_events", listed_events_table(first, chunk.listed_at), part
        )
        write_truth_listings(out_dir / "_truth" / "listings", part, first, chunk)

    tax = build_taxonomy()
    with _progress(cfg, n_parts) as bar:
        world = SimWorld.build(cfg, on_chunk=write_chunk)
    rows["categories"] = _write(out_dir, "categories", categories_table(tax))
    rows["sellers"] = _write(out_dir, "sellers", sellers_table(cfg, world.sellers))
    rows["users"] = _write(out_dir, "users", users_table(cfg, world.users))
    log = Market(world).run(cfg.progress)
    for name, table in event_tables(cfg, log, world.users, world.cat.price).items():
        rows[name] = _write(out_dir, name, table)
    inv = market_inventory_table(cfg, log, cfg.lock_ttl_s)
    rows["inventory_events"] += _write(out_dir, "inventory_events", inv, n_parts)
    write_truth(out_dir / "_truth", world)
    summary = SimSummary(
        seed=cfg.seed,
        out_dir=str(out_dir),
        rows=rows,
        start=cfg.start,
        end=cfg.start + dt.timedelta(days=cfg.days),
        seconds=round(time.perf_counter() - t_start, 3),
        config=cfg,
    )
    (out_dir / "manifest.json").write_text(summary.model_dump_json(indent=2))
    return summary


def _progress(cfg: SimConfig, total: int):  # noqa: ANN202

    return tqdm(total=total, desc="listing chunks", disable=not cfg.progress)


def write_truth_listings(folder: Path, part: int, first: int, chunk: Catalogue) -> None:
    """Hidden listing quality and delisting time of one chunk."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.arange(first + 1, first + len(chunk) + 1, dtype=np.int64)
    pq.write_table(
        pa.table({"listing_id": ids, "quality": chunk.quality, "delist_at_us": chunk.delist_at}),
        folder / f"part-{part:05d}.parquet",
    )


def write_truth(folder: Path, world: SimWorld) -> None:
    """Hidden parameters: coefficients (JSON), user tastes, seller reliability (listings: per chunk)."""
    folder.mkdir(parents=True, exist_ok=True)
    world.truth.save_params(folder / "params.json")
    u, s = world.users, world.sellers
    taste = {f"taste_{k}": u.taste[:, k] for k in range(u.taste.shape[1])}
    pq.write_table(
        pa.table(
            {
                "user_id": np.arange(1, len(u.region) + 1),
                "price_sens": u.price_sens,
                "activity": u.activity,
                **taste,
            }
        ),
        folder / "users.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "seller_id": np.arange(1, len(s.region) + 1),
                "reliability": s.reliability,
                "incumbent": s.incumbent,
                "new": s.new,
            }
        ),
        folder / "sellers.parquet",
    )
    (folder / "README").write_text(
        json.dumps(
            {
                "note": "hidden truth; never read by training. "
                "SimWorld.from_raw(raw_dir) rebuilds it exactly."
            }
        )
    )
