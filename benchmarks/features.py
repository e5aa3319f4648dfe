"""Feature-store benchmark: online read latency (SQLite vs Redis), the naive 300-row Feast read
against the in-memory listing snapshot, on-demand feature latency, materialization throughput.

One simulated run (``--users/--listings/--days``) is built once; then, per environment
(embedded = SQLite + file registry; production = Redis db 14 + SQL registry in PostgreSQL
database ``checkout_recs_features_bench``, on a throwaway project torn down at the end):

* ``online_user_1``: one ``get_online_features`` call for one user row (``--reads`` calls);
* ``online_listing_300``: one call for 300 listing rows, the read the design avoids;
* baseline, same run: 300 rows taken from the listing snapshot in memory (what serving does).

    .venv/bin/python benchmarks/features.py [--users 1000 --listings 3000 --days 5] [--reads 200]

Writes ``benchmarks/results/features.json`` and prints a table. Needs Redis and PostgreSQL on
127.0.0.1 for the production column (it is skipped, and says so, when they do not answer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import track
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_REDIS = "redis://127.0.0.1:6379/14"
BENCH_PG_DB = "checkout_recs_features_bench"


def _pct(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "n": int(ms.size),
    }


def _timed(fn, n: int, label: str) -> dict[str, float]:
    fn()  # warm-up
    out = []
    for _ in track(range(n), description=label, transient=True):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return _pct(out)


def _make_run(work: Path, users: int, listings: int, days: int) -> tuple[Path, dict]:
    from checkout_recs.data.ingest import ingest
    from checkout_recs.data.labels import build_labels
    from checkout_recs.features.build import build_feature_tables
    from checkout_recs.features.training import build_training_set
    from checkout_recs.simulate import SimConfig, run_simulation

    run = work / "run"
    cfg = SimConfig(
        seed=5, n_users=users, n_listings=listings, n_sellers=max(listings // 10, 10), days=days
    )
    run_simulation(cfg, run / "raw")
    ingest(str(run / "raw"), run / "ingested", now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    build_labels(run / "ingested", run / "labels")
    t = time.perf_counter()
    report = build_feature_tables(run / "ingested", run / "labels", run / "features")
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    ts = build_training_set(
        run / "labels", run / "features", run / "ingested", run / "train.parquet"
    )
    train_s = time.perf_counter() - t
    rows = {v: r["rows"] for v, r in report["views"].items()}
    return run, {
        "feature_rows": rows,
        "build_s": build_s,
        "build_rows_per_s": sum(rows.values()) / build_s,
        "training_set_rows": ts.rows_out,
        "training_set_s": train_s,
        "training_set_rows_per_s": ts.rows_out / train_s,
    }


def _registry_url() -> str:
    import psycopg

    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True, connect_timeout=3
    ) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_PG_DB,)
        ).fetchone():
            conn.execute(f'CREATE DATABASE "{BENCH_PG_DB}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{BENCH_PG_DB}"


def _bench_env(env: str, run: Path, work: Path, reads: int, snapshot: pd.DataFrame) -> dict:
    import uuid

    from feature_repo.store import open_store

    kw = {"redis_url": BENCH_REDIS, "registry_url": _registry_url()} if env == "production" else {}
    store = open_store(
        env, run / "features", work / env, project=f"crbench_{uuid.uuid4().hex[:8]}", **kw
    )
    try:
        store.apply()
        end = pd.read_parquet(run / "features" / "user.parquet")[
            "event_timestamp"
        ].max() + pd.Timedelta(seconds=1)
        t = time.perf_counter()
        records = store.materialize(None, end.to_pydatetime())
        mat_s = time.perf_counter() - t
        latest_rows = sum(
            pd.read_parquet(run / "features" / f"{v}.parquet").drop_duplicates(k).shape[0]
            for v, k in (("user", "user_id"), ("listing", "listing_id"), ("seller", "seller_id"))
        )
        users = pd.read_parquet(run / "features" / "user.parquet")["user_id"].unique()
        lids = snapshot["listing_id"].to_numpy()
        rng = np.random.default_rng(0)
        one = _timed(
            lambda: store.online_user_features([int(rng.choice(users))]),
            reads,
            f"{env}: 1 user row",
        )
        many = _timed(
            lambda: store.online_features("listing", "listing_id", rng.choice(lids, 300).tolist()),
            max(reads // 5, 20),
            f"{env}: 300 listing rows",
        )
        return {
            "online_user_1": one,
            "online_listing_300": many,
            "materialize_s": mat_s,
            "materialize_entities": latest_rows,
            "materialize_entities_per_s": latest_rows / mat_s,
            "materialize_windows": records,
        }
    finally:
        store.teardown()


def _bench_in_memory(snapshot: pd.DataFrame, run: Path, reads: int) -> dict:
    from checkout_recs.features.on_demand import Basket, InteractionTables, interaction_features

    indexed = snapshot.set_index("listing_id")
    lids = snapshot["listing_id"].to_numpy()
    rng = np.random.default_rng(1)
    snap_read = _timed(
        lambda: indexed.loc[rng.choice(lids, 300)], reads, "snapshot: 300 rows (pandas .loc)"
    )
    pos = np.arange(len(lids))
    price = snapshot["price"].to_numpy()
    arr = _timed(lambda: price[rng.choice(pos, 300)], reads, "snapshot: 300 rows (numpy take)")
    tables = InteractionTables.from_frames(
        pd.read_parquet(run / "features" / "category_pair.parquet"),
        pd.read_parquet(run / "labels" / "co_purchase_items.parquet"),
    )
    basket_rows = snapshot.sample(3, random_state=0)
    basket = Basket(
        basket_rows["listing_id"].to_numpy(),
        basket_rows["category_id"].to_numpy(),
        basket_rows["top_category_id"].to_numpy(),
        basket_rows["price"].to_numpy(),
    )
    cand = snapshot.sample(300, random_state=1)
    args = (
        cand["listing_id"].to_numpy(),
        cand["category_id"].to_numpy(),
        cand["top_category_id"].to_numpy(),
        cand["price"].to_numpy(),
    )
    inter = _timed(
        lambda: interaction_features(basket, *args, tables), reads * 3, "interaction features x300"
    )
    return {
        "snapshot_300_pandas": snap_read,
        "snapshot_300_numpy": arr,
        "interaction_features_300": inter,
    }


def _print(console: Console, res: dict) -> None:
    table = Table(title="feature store latency (ms)")
    for col in ("what", "p50", "p95", "p99", "n"):
        table.add_column(col)
    rows = [
        (f"{env}: {k}", v)
        for env, r in res["environments"].items()
        if "error" not in r
        for k, v in r.items()
        if k.startswith("online")
    ]
    rows += [(f"in-memory: {k}", v) for k, v in res["in_memory"].items()]
    for name, v in rows:
        table.add_row(
            name, f"{v['p50_ms']:.3f}", f"{v['p95_ms']:.3f}", f"{v['p99_ms']:.3f}", str(v["n"])
        )
    console.print(table)
    for env, r in res["environments"].items():
        if "error" in r:
            console.print(f"{env}: skipped ({r['error']})")
        else:
            console.print(
                f"{env}: materialized {r['materialize_entities']} entities in {r['materialize_s']:.1f} s "
                f"({r['materialize_entities_per_s']:.0f}/s)"
            )
    b = res["build"]
    console.print(
        f"build_feature_tables: {sum(b['feature_rows'].values())} rows in {b['build_s']:.1f} s; "
        f"training set: {b['training_set_rows']} rows in {b['training_set_s']:.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--listings", type=int, default=3000)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--reads", type=int, default=200)
    ap.add_argument("--envs", nargs="+", default=["embedded", "production"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "features.json")
    args = ap.parse_args()
    console = Console()
    from checkout_recs.features.snapshot import export_listing_snapshot

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        console.print("building the run (simulate, ingest, label, features, training set)...")
        run, build = _make_run(work, args.users, args.listings, args.days)
        as_of = pd.read_parquet(run / "features" / "listing.parquet")["event_timestamp"].max()
        snapshot = export_listing_snapshot(run / "features", as_of.to_pydatetime())
        res = {
            "machine": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_start": os.getloadavg()[0],
            "config": vars(args) | {"out": str(args.out)},
            "build": build,
            "in_memory": _bench_in_memory(snapshot, run, args.reads),
            "environments": {},
        }
        for env in args.envs:
            try:
                res["environments"][env] = _bench_env(env, run, work, args.reads, snapshot)
            except Exception as exc:  # a missing Redis/PostgreSQL skips that column, loudly
                res["environments"][env] = {"error": f"{type(exc).__name__}: {exc}"}
    res["load_avg_1m_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str))
    _print(console, res)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
