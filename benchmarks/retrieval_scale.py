"""Inputs of the 1M-listing retrieval benchmark: a trained item tower and a simulated catalogue.

``demo_tower``      demo-size simulation → ingest → labels → features → two-tower training (the
                    production stages, ``train_retrieval_stage``) + the bundle's candidate tables.
``scaled_snapshot`` ``n`` listings drawn by the simulator's own catalogue generator (same
                    taxonomy, title words, price model and sellers as the demo run, scaled up),
                    as a snapshot frame the item tower embeds from content alone.
``embedded_catalogue``  ``n`` listings (demo's + drawn) embedded chunk by chunk, cached in a
                    folder: the index benchmark's input at 1M and 18M (``faiss_scale.py``).
``new_listings``    listings no catalogue holds (added in place by the benchmark).
``user_requests``   requests of the demo run's users (basket, recent items, region, hour) with
                    their user-tower vectors.

The catalogue's behavioural columns (views/clicks/purchases decayed) are drawn from the
simulator's hidden listing quality, because nobody has interacted with 995k of the 1M listings:
they only order the popular pool, whose cost (not quality) is what the benchmark measures.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _progress(msg: str) -> None:
    print(f"[bench retrieval {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def demo_tower(work: Path, days: int = 14) -> dict[str, Path]:
    """Run the demo simulation pipeline and train the two-tower model only.

    Returns paths: ``raw``, ``labels``, ``features``, ``model`` (holding ``two_tower/``),
    ``candidates`` (``write_candidate_tables`` output). Reuses a finished ``work`` folder.
    """
    from checkout_recs.data.ingest import ingest
    from checkout_recs.data.labels import build_labels
    from checkout_recs.features.build import build_feature_tables
    from checkout_recs.models.train import train_retrieval_stage
    from checkout_recs.serving.bundle_writer import write_candidate_tables
    from checkout_recs.simulate import run_simulation
    from checkout_recs.simulate.config import SimConfig

    work = Path(work)
    p = {k: work / k for k in ("raw", "ingested", "labels", "features", "model", "candidates")}
    if (p["model"] / "two_tower" / "weights.safetensors").exists() and (p["candidates"]).is_dir():
        return p
    cfg = SimConfig(days=days)
    t0 = time.perf_counter()
    run_simulation(cfg, p["raw"])
    ingest(str(p["raw"]), p["ingested"], now=cfg.start + dt.timedelta(days=days + 1))
    build_labels(p["ingested"], p["labels"])
    build_feature_tables(p["ingested"], p["labels"], p["features"])
    _progress(f"demo simulation pipeline {time.perf_counter() - t0:.0f}s")
    t0 = time.perf_counter()
    train_retrieval_stage(p["labels"], p["features"], p["model"])
    write_candidate_tables(p["labels"], p["features"], p["candidates"])
    _progress(f"two-tower trained + candidate tables {time.perf_counter() - t0:.0f}s")
    return p


def scaled_snapshot(
    n: int, days: int = 14, seed: int = 7, listings_per_seller: int = 50
) -> pd.DataFrame:
    """``n`` simulated listings as a snapshot frame (ids 1..n, sorted).

    Columns: ``listing_id, seller_id, category_id, top_category_id, region, title, price,
    take_rate, age_days, views_decayed, clicks_decayed, purchases_decayed, ctr_smoothed,
    cvr_smoothed, ctr_lift, cvr_lift, seller_rating, seller_is_new, seller_age_days,
    seller_linked_history, seller_sales_velocity`` (the contract's listing + seller feature columns; the smoothed rates
    use the feature pipeline's fitted Beta priors, sales velocity is the seller's decayed
    purchases per day over ``days``). Deterministic for ``seed``; one seller per
    ``listings_per_seller``.
    """
    from checkout_recs.simulate.config import SimConfig
    from checkout_recs.simulate.taxonomy import build_taxonomy
    from checkout_recs.simulate.world import (
        US_PER_DAY,
        chunk_bounds,
        listing_chunk_table,
        make_listing_chunk,
        make_sellers,
        start_us,
    )

    cfg = SimConfig(seed=seed, days=days, n_listings=n, n_sellers=max(1, n // listings_per_seller))
    tax, sellers = build_taxonomy(), make_sellers(cfg)
    now = start_us(cfg) + days * US_PER_DAY
    frames = []
    for first, end in chunk_bounds(cfg):
        chunk = make_listing_chunk(cfg, tax, sellers, first, end - first)
        df = (
            listing_chunk_table(cfg, tax, chunk, first)
            .select(
                ["listing_id", "seller_id", "category_id", "region", "title", "price", "take_rate"]
            )
            .to_pandas()
        )
        df["age_days"] = (now - chunk.listed_at) / US_PER_DAY
        rate = np.exp(chunk.quality.astype(np.float64))  # hidden quality → behavioural counts
        rng = np.random.default_rng([seed, first])
        df["views_decayed"] = rng.poisson(20 * rate).astype(np.float64)
        df["clicks_decayed"] = rng.poisson(rate).astype(np.float64)
        df["purchases_decayed"] = rng.poisson(0.1 * rate).astype(np.float64)
        frames.append(df)
    snap = pd.concat(frames, ignore_index=True)
    s = snap["seller_id"].to_numpy() - 1
    rating = sellers.rating[s]
    snap["seller_rating"] = np.where(np.isnan(rating), np.nanmean(sellers.rating), rating)
    snap["seller_is_new"] = sellers.new[s].astype(np.int8)
    snap["seller_age_days"] = np.maximum((now - sellers.joined_at[s]) / US_PER_DAY, 0.0)
    snap["top_category_id"] = tax.top[snap["category_id"].to_numpy()].astype(np.int32)
    _add_rates(snap, days)
    from checkout_recs.features.item_views import snapshot_category_columns

    return snapshot_category_columns(snap[snap["age_days"] >= 0].reset_index(drop=True))


def _add_rates(snap: pd.DataFrame, days: int) -> None:
    """Smoothed CTR / CVR and their lifts (the feature pipeline's priors and formulas,
    ``item_views.snapshot_rate_columns``) and seller sales velocity, in place."""
    from checkout_recs.features.item_views import snapshot_rate_columns

    rates = snapshot_rate_columns(snap)
    for c in ("ctr_smoothed", "cvr_smoothed", "ctr_lift", "cvr_lift"):
        snap[c] = rates[c]
    snap["seller_linked_history"] = np.zeros(len(snap), np.int8)
    snap["seller_sales_velocity"] = snap.groupby("seller_id")["purchases_decayed"].transform(
        "sum"
    ) / max(days, 1)


def scaled_catalogue(paths: dict[str, Path], n: int) -> pd.DataFrame:
    """An ``n``-listing snapshot: the demo run's listings (``demo_tower`` ``paths``) followed by
    ``n - len(demo)`` simulator-drawn ones with ids after the demo's; the demo's columns that
    ``scaled_snapshot`` also has (contract listing + seller features, title), sorted by id."""
    from checkout_recs.models.inputs import listing_snapshot

    demo = listing_snapshot(paths["features"], labels_dir=paths["labels"])
    more = scaled_snapshot(n - len(demo))
    more["listing_id"] += int(demo["listing_id"].max())
    return pd.concat([demo[[c for c in more.columns if c in demo]], more], ignore_index=True)


#: Snapshot columns the retrieval index keeps (``RetrievalIndex`` + ``CandidateGenerator``).
INDEX_COLUMNS = (
    "listing_id",
    "category_id",
    "region",
    "age_days",
    "views_decayed",
    "clicks_decayed",
    "purchases_decayed",
)


def embedded_catalogue(
    paths: dict[str, Path], n: int, work: Path, seed: int = 7
) -> tuple[pd.DataFrame, np.ndarray]:
    """An ``n``-listing catalogue embedded by the item tower, built chunk by chunk.

    The demo run's listings (``demo_tower`` ``paths``) then simulator-drawn ones (ids after the
    demo's), generated one simulator chunk at a time as ``scaled_snapshot`` draws them (same
    columns the tower reads: title, category, price, region, seller features) and embedded
    before the next chunk, so memory holds one chunk's full rows at a time. Listings listed after
    the snapshot time are dropped, so slightly fewer than ``n`` rows come back.

    Written to ``work`` (and reused from it when complete: ``catalogue.parquet`` and
    ``embeddings.npy``). Returns the ``INDEX_COLUMNS`` frame (region as a pandas categorical) and
    the float32 (rows, d) unit embeddings, memory-mapped read-only.
    """
    from checkout_recs.models.inputs import listing_snapshot
    from checkout_recs.models.two_tower import TwoTowerModel
    from checkout_recs.simulate.config import SimConfig
    from checkout_recs.simulate.taxonomy import build_taxonomy
    from checkout_recs.simulate.world import US_PER_DAY, chunk_bounds, make_sellers, start_us

    work = Path(work)
    cat_path, emb_path = work / "catalogue.parquet", work / "embeddings.npy"
    if cat_path.exists() and emb_path.exists():
        return _compact(pd.read_parquet(cat_path)), np.load(emb_path, mmap_mode="r")
    work.mkdir(parents=True, exist_ok=True)
    tt = TwoTowerModel.load(paths["model"] / "two_tower")
    demo = listing_snapshot(paths["features"], labels_dir=paths["labels"])
    demo = demo.astype({"listing_id": np.int64, "category_id": np.int32})
    m = n - len(demo)
    days = 14
    cfg = SimConfig(seed=seed, days=days, n_listings=m, n_sellers=max(1, m // 50))
    tax, sellers = build_taxonomy(), make_sellers(cfg)
    now = start_us(cfg) + days * US_PER_DAY
    offset = int(demo["listing_id"].max())
    rating_prior = float(np.nanmean(sellers.rating))
    tmp = work / "embeddings.f32"  # raw rows first: the count is known only at the end
    with open(tmp, "wb") as f:
        f.write(np.ascontiguousarray(tt.embed_items(demo), np.float32).tobytes())
        parts, row, t0 = [_compact(demo[list(INDEX_COLUMNS)])], len(demo), time.perf_counter()
        for first, end in chunk_bounds(cfg):
            df = _chunk_frame(cfg, tax, sellers, first, end, now, rating_prior, seed)
            df["listing_id"] += offset
            f.write(np.ascontiguousarray(tt.embed_items(df), np.float32).tobytes())
            parts.append(_compact(df[list(INDEX_COLUMNS)]))
            row += len(df)
            if len(parts) % 5 == 0 or end == m:
                rate_s = (row - len(demo)) / max(time.perf_counter() - t0, 1e-9)
                _progress(f"catalogue: {row:,} of ~{n:,} listings embedded ({rate_s:,.0f}/s)")
    _raw_to_npy(tmp, emb_path, (row, tt.dim))
    cat = _compact(pd.concat(parts, ignore_index=True))
    cat.to_parquet(cat_path, index=False)  # region stays categorical (a dictionary column)
    return cat, np.load(emb_path, mmap_mode="r")


def new_listings(paths: dict[str, Path], m: int, first_id: int, seed: int = 107) -> pd.DataFrame:
    """``m`` listings no catalogue of ``embedded_catalogue`` holds (the simulator's generator
    under another seed), ids ``first_id ..``: what the tower embeds plus ``INDEX_COLUMNS``."""
    from checkout_recs.simulate.config import SimConfig
    from checkout_recs.simulate.taxonomy import build_taxonomy
    from checkout_recs.simulate.world import US_PER_DAY, chunk_bounds, make_sellers, start_us

    cfg = SimConfig(seed=seed, days=14, n_listings=m, n_sellers=max(1, m // 50))
    tax, sellers = build_taxonomy(), make_sellers(cfg)
    now, prior = start_us(cfg) + 14 * US_PER_DAY, float(np.nanmean(sellers.rating))
    df = pd.concat(
        [_chunk_frame(cfg, tax, sellers, a, b, now, prior, seed) for a, b in chunk_bounds(cfg)],
        ignore_index=True,
    )
    df["listing_id"] = np.arange(first_id, first_id + len(df), dtype=np.int64)
    return df


def _chunk_frame(
    cfg: object,
    tax: object,
    sellers: object,
    first: int,
    end: int,
    now: int,
    rating_prior: float,
    seed: int,
) -> pd.DataFrame:
    """Listings ``first .. end`` of the simulator's catalogue as ``scaled_snapshot`` draws them
    (content, behavioural counts from the hidden quality, seller columns; no smoothed rates),
    listed at or before ``now`` (µs)."""
    from checkout_recs.simulate.world import US_PER_DAY, listing_chunk_table, make_listing_chunk

    chunk = make_listing_chunk(cfg, tax, sellers, first, end - first)  # type: ignore[arg-type]
    df = listing_chunk_table(cfg, tax, chunk, first).to_pandas()  # type: ignore[arg-type]
    df["age_days"] = (now - chunk.listed_at) / US_PER_DAY
    rate = np.exp(chunk.quality.astype(np.float64))
    rng = np.random.default_rng([seed, first])
    df["views_decayed"] = rng.poisson(20 * rate).astype(np.float64)
    df["clicks_decayed"] = rng.poisson(rate).astype(np.float64)
    df["purchases_decayed"] = rng.poisson(0.1 * rate).astype(np.float64)
    s = df["seller_id"].to_numpy() - 1
    rating = sellers.rating[s]  # type: ignore[attr-defined]
    df["seller_rating"] = np.where(np.isnan(rating), rating_prior, rating)
    df["seller_is_new"] = sellers.new[s].astype(np.int8)  # type: ignore[attr-defined]
    joined = sellers.joined_at[s]  # type: ignore[attr-defined]
    df["seller_age_days"] = np.maximum((now - joined) / US_PER_DAY, 0.0)
    return df[df["age_days"] >= 0].reset_index(drop=True)


def _raw_to_npy(raw: Path, out: Path, shape: tuple[int, int]) -> None:
    """Copy raw float32 rows ``raw`` into an ``.npy`` file of ``shape`` with plain reads and writes
    (no memory map, so the copy adds page cache, not resident memory), then delete ``raw``."""
    with open(out, "wb") as f, open(raw, "rb") as src:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        while block := src.read(64 << 20):
            f.write(block)
    raw.unlink()


def _compact(frame: pd.DataFrame) -> pd.DataFrame:
    """``INDEX_COLUMNS`` with compact dtypes: ids int64, category int32, region categorical,
    the rest float32."""
    out = pd.DataFrame(
        {
            "listing_id": frame["listing_id"].to_numpy(np.int64),
            "category_id": frame["category_id"].to_numpy(np.int32),
            "region": pd.Categorical(frame["region"].astype(str)),
        }
    )
    for c in INDEX_COLUMNS[3:]:
        out[c] = frame[c].to_numpy(np.float32)
    return out


def user_requests(model_dir: Path, features_dir: Path, n: int, seed: int = 0) -> list[dict]:
    """``n`` requests of the demo run's users (with at least two recent items).

    Each: ``user_id``, ``region``, ``basket`` (the newest recent item: what was just bought),
    ``recent_listing_ids`` (the ones before), ``hour`` (uniform in [0, 24)) and ``vector``
    (float32 (dim,), the user tower's output for that request).
    """
    from checkout_recs.models.inputs import latest_per_entity, read_table
    from checkout_recs.models.user_encoder import FastUserEncoder

    enc = FastUserEncoder.from_dir(Path(model_dir) / "two_tower")
    users = latest_per_entity(read_table(Path(features_dir) / "user.parquet"), "user_id")
    users = users[users["recent_listing_ids"].map(len) >= 2].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(users), n, replace=n > len(users)):
        recent = [int(x) for x in users.at[i, "recent_listing_ids"]]
        region, hour = str(users.at[i, "region"]), float(rng.uniform(0, 24))
        out.append(
            {
                "user_id": int(users.at[i, "user_id"]),
                "region": region,
                "basket": recent[-1:],
                "recent_listing_ids": recent[:-1],
                "hour": hour,
                "vector": enc.encode(recent, region, "web", hour),
            }
        )
    return out
