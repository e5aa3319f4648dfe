"""Inputs of the 1M-listing retrieval benchmark: a trained item tower and a simulated catalogue.

``demo_tower``      demo-size simulation → ingest → labels → features → two-tower training (the
                    production stages, ``train_retrieval_stage``) + the bundle's candidate tables.
``scaled_snapshot`` ``n`` listings drawn by the simulator's own catalogue generator (same
                    taxonomy, title words, price model and sellers as the demo run, scaled up),
                    as a snapshot frame the item tower embeds from content alone.
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
    cvr_smoothed, seller_rating, seller_is_new, seller_age_days, seller_linked_history,
    seller_sales_velocity`` (the contract's listing + seller feature columns; the smoothed rates
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
    """Smoothed CTR / CVR (the feature pipeline's priors) and seller sales velocity, in place."""
    from checkout_recs.features.priors import (
        DEFAULT_CTR_PRIOR,
        DEFAULT_CVR_PRIOR,
        fit_beta_prior,
        smoothed_rate,
    )

    views, clicks, buys = (
        snap[c].to_numpy(np.float64)
        for c in ("views_decayed", "clicks_decayed", "purchases_decayed")
    )
    snap["ctr_smoothed"] = smoothed_rate(
        clicks, views, fit_beta_prior(clicks, views, DEFAULT_CTR_PRIOR)
    )
    snap["cvr_smoothed"] = smoothed_rate(
        buys, clicks, fit_beta_prior(buys, clicks, DEFAULT_CVR_PRIOR, min_trials=2.0)
    )
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


def faiss_report(section: dict, out: Path) -> Path:
    """Render the ``faiss`` section of ``models.json`` as one HTML page (recall vs latency plot,
    sweeps, category search, candidates); returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from checkout_recs.evaluation.html_report import figure_tag, page, table_html

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rows in (
        ("item-tower embeddings (global)", section["sweep_global"]),
        ("diffuse synthetic (global)", section["diffuse_synthetic"]["sweep"]),
    ):
        ax.plot([r["median_ms"] for r in rows], [r["recall@300"] for r in rows], "o-", label=label)
        for r in rows:
            ax.annotate(
                str(r["nprobe"]),
                (r["median_ms"], r["recall@300"]),
                fontsize=8,
                xytext=(3, -10),
                textcoords="offset points",
            )
    ax.axhline(0.95, color="grey", ls="--", lw=1)
    ax.axvline(2.0, color="grey", ls=":", lw=1)
    ax.set(
        xlabel="median ms per single query (one thread)",
        ylabel="recall@300 vs exact",
        title=f"IVF-Flat, {section['data']['n_items']:,} listings (labels: nprobe)",
    )
    ax.legend(loc="lower right")
    regions = pd.DataFrame([{"region": k, **v} for k, v in section["region"].items()])
    cand = section["candidates"]
    facts = pd.DataFrame(
        [
            {
                "figure": "build seconds (global + region indexes, 2 threads)",
                "value": section["build_seconds"],
            },
            {"figure": "memory when loaded, GB", "value": section["memory_bytes_loaded"] / 1e9},
            {
                "figure": "exact (category, region) search, median ms",
                "value": section["category"]["median_ms"],
            },
            {
                "figure": "exact (category, region) search, recall vs float32",
                "value": section["category"]["recall_vs_exact"],
            },
            {
                "figure": "post-filtered global ANN (top 1000), recall",
                "value": section["category"]["post_filtered_ann_1000_recall"],
            },
            {"figure": "candidates per request, median ms", "value": cand["median_ms"]},
            {"figure": "candidates per request, p95 ms", "value": cand["p95_ms"]},
            {
                "figure": "sold listings returned after removal",
                "value": section["add_remove"]["sold_returned_after_removal"],
            },
        ]
    )
    sources = pd.DataFrame(
        [{"source": k, "mean per request": v} for k, v in cand["by_source"].items()]
    )
    ok = section["at_config"]["recall@300"] >= 0.95 and section["at_config"]["median_ms"] <= 2.0
    html_text = page(
        f"Retrieval index at {section['data']['n_items']:,} listings",
        [
            (
                "Recall vs latency",
                figure_tag(fig, "recall vs latency")
                + f"<p class='note'>{section['data']['source']}; queries: {section['data']['queries']}. "
                f"1-min load average {section.get('load_average_1m_start_end')}.</p>",
            ),
            (
                "Global sweep (item-tower embeddings)",
                table_html(pd.DataFrame(section["sweep_global"])),
            ),
            ("Region indexes at the configured nprobe", table_html(regions)),
            ("Figures", table_html(facts)),
            ("Candidate sources at this scale", table_html(sources)),
        ],
        verdict=f"recall@300 {section['at_config']['recall@300']:.3f} at {section['at_config']['median_ms']:.2f} ms "
        f"(nprobe {section['at_config']['nprobe']})",
        ok=ok,
    )
    Path(out).write_text(html_text)
    return Path(out)
