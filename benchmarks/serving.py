"""Serving benchmark: six recommendations over a 1M-listing catalogue, open-loop load on 127.0.0.1.

One run, same machine, same catalogue, same requests:

* **design path** — transformer (snapshot-aligned item features precomputed at load, user
  features from Feast online (embedded SQLite), Redis inventory + switches) -> predictor over v2
  REST binary tensors; open-loop load at ``--rate`` for ``--duration`` seconds;
* **hop micro-benchmark** — the transformer->predictor hop alone: REST JSON vs REST binary vs gRPC;
* **rate sweep** — the highest rate with p95 <= 25 ms;
* **fault run** — the private Redis (never the shared one on 6379) is stopped mid-load: answers
  must keep coming, through the fallback, with no 5xx;
* **naive path** — candidate listing + seller features read from Feast online per request and the
  hop as a JSON tensor (what the design avoids); the ratio of p95s is reported;
* **in-process path** — the ranker scored inside the transformer (no hop).

Latency is measured from each request's *scheduled* send time (open loop: no coordinated
omission). RSS is summed over each server's process tree.

    .venv/bin/python benchmarks/serving.py [--listings 1000000 --rate 50 --duration 60]

Writes ``benchmarks/results/serving.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures_serving import RICH_NAMES, make_pairs, make_snapshot, make_users, train_tiny_ranker  # noqa: E402

PRIVATE_REDIS_PORT = 6391


def build_bundle(root: Path, listings: int, users: int, console: Console) -> Path:
    """1M-listing bundle (snapshot, candidate tables, ranker) + Feast feature tables; cached."""
    bundle = root / f"bundle-{listings}"
    if (bundle / "model" / "ranker" / "config.json").exists():
        return bundle
    t = time.perf_counter()
    (bundle / "index").mkdir(parents=True, exist_ok=True)
    (bundle / "candidates").mkdir(exist_ok=True)
    snap = make_snapshot(listings, seed=1)
    snap.to_parquet(bundle / "index" / "snapshot.parquet")
    (bundle / "index" / "manifest.json").write_text(json.dumps({"version": f"bench-{listings}"}))
    pairs, co = make_pairs(1)
    pairs.to_parquet(bundle / "candidates" / "category_pairs.parquet")
    co.to_parquet(bundle / "candidates" / "co_purchase_items.parquet")
    user_df = make_users(users, seed=1)
    train_tiny_ranker(snap, user_df, bundle / "model" / "ranker", names=RICH_NAMES, n=20000, hidden=[64, 32])
    _feature_tables(snap, user_df, pairs, bundle / "features")
    console.print(f"bundle built in {time.perf_counter() - t:.0f} s: {listings} listings, {users} users")
    return bundle


def _feature_tables(snap: pd.DataFrame, users: pd.DataFrame, pairs: pd.DataFrame, out: Path) -> None:
    """Contract feature views for Feast: users, and the listings/sellers candidates can reach."""
    from checkout_recs import contract
    from checkout_recs.policy.catalog import ItemCatalog

    out.mkdir(parents=True, exist_ok=True)
    ts = pd.Timestamp("2026-11-01", tz="UTC")
    cat = ItemCatalog.from_frame(snap)
    reach = np.unique(np.concatenate([*cat.by_category.values(), *cat.by_region.values(),
                                      *cat.cold_by_region.values()]))
    lst = snap.iloc[reach].assign(event_timestamp=ts)
    lst[contract.field_names(contract.LISTING_FEATURES)].to_parquet(out / "listing.parquet")
    sel = lst.drop_duplicates("seller_id")
    sel[contract.field_names(contract.SELLER_FEATURES)].to_parquet(out / "seller.parquet")
    u = users.assign(recent_listing_ids=[[] for _ in range(len(users))])
    u[contract.field_names(contract.USER_FEATURES)].to_parquet(out / "user.parquet")
    pairs[contract.field_names(contract.CATEGORY_PAIR_FEATURES)].to_parquet(out / "category_pair.parquet")


def materialize_feast(bundle: Path, work: Path) -> str:
    """Apply + materialize the feature tables into an embedded (SQLite) Feast store; returns project."""
    from feature_repo.store import open_store

    project = f"crserve_{uuid.uuid4().hex[:6]}"
    store = open_store("embedded", bundle / "features", work, project=project)
    store.apply()
    store.materialize(None, pd.Timestamp("2026-11-02", tz="UTC").to_pydatetime())
    return project


@contextlib.contextmanager
def private_redis(port: int = PRIVATE_REDIS_PORT):
    """A throw-away redis-server on 127.0.0.1:port (the fault run stops it; 6379 is never touched)."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    import redis

    r = redis.Redis(port=port)
    for _ in range(50):
        with contextlib.suppress(redis.RedisError):
            if r.ping():
                break
        time.sleep(0.1)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def make_requests(n: int, users: int, listings: int, seed: int = 0) -> list[dict]:
    """Checkout bodies: known users, baskets of 1-3 listings, the four regions."""
    rng = np.random.default_rng(seed)
    regions = ("north", "south", "east", "west")
    return [{"instances": [{"user_id": int(rng.integers(0, users)),
                            "purchased_item_ids": [int(x) for x in 1000 + rng.integers(0, listings, rng.integers(1, 4))],
                            "region": regions[int(rng.integers(0, 4))], "device": ("web", "ios", "android")[i % 3]}]}
            for i in range(n)]


async def open_loop(url: str, bodies: list[dict], rate: float, duration: float,
                    on_tick=None) -> dict:
    """Send ``rate`` requests/s for ``duration`` s regardless of answers; latency from schedule."""
    import httpx

    n = int(rate * duration)
    lat, status, policies, reasons = np.full(n, np.nan), np.zeros(n, int), [None] * n, [None] * n
    async with httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=512)) as client:
        t0 = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            sched = t0 + i / rate
            try:
                r = await client.post(url, json=bodies[i % len(bodies)])
                status[i] = r.status_code
                if r.status_code == 200:
                    pred = r.json()["predictions"][0]
                    policies[i], reasons[i] = pred["policy"], pred["fallback_reason"]
            except httpx.HTTPError:
                status[i] = -1
            lat[i] = time.perf_counter() - sched

        tasks = []
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if on_tick is not None:
                on_tick(i / rate)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    ok = status == 200
    ms = lat[ok] * 1e3
    pct = (lambda q: float(np.percentile(ms, q))) if ms.size else (lambda q: float("nan"))
    fb = pd.Series([r for r in reasons if r]).value_counts().to_dict()
    return {"rate_rps": rate, "duration_s": duration, "sent": n, "ok": int(ok.sum()),
            "errors": int((~ok).sum()), "http_5xx": int((status >= 500).sum()), "throughput_rps": float(ok.sum() / wall),
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": pct(100),
            "ranker_share": float(np.mean([p == "ranker" for p in policies])), "fallback_reasons": fb}


def rss_mb(pid: int) -> float:
    """RSS of a process and its children, MiB."""
    import psutil

    p = psutil.Process(pid)
    return (p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))) / 2**20


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children."""
    import psutil

    p = psutil.Process(pid)
    procs = [p, *p.children(recursive=True)]
    return sum(sum(q.cpu_times()[:2]) for q in procs)


def hop_bench(servers, d: int, n_rows: int = 300, calls: int = 200) -> dict:
    """The transformer->predictor hop alone, per protocol (p50/p95 ms)."""
    from inference.predictor_client import PredictorClient

    x = np.random.default_rng(0).normal(size=(n_rows, d)).astype(np.float32)

    async def run(proto: str) -> dict:
        c = PredictorClient(servers.predictor_url, servers.predictor_grpc, protocol=proto)
        for _ in range(10):
            await c.score(x, 5.0)
        ts = []
        for _ in range(calls):
            t = time.perf_counter()
            await c.score(x, 5.0)
            ts.append((time.perf_counter() - t) * 1e3)
        await c.close()
        return {"p50_ms": float(np.percentile(ts, 50)), "p95_ms": float(np.percentile(ts, 95))}

    return {p: asyncio.run(run(p)) for p in ("rest-json", "rest-binary", "grpc")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listings", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--sweep", default="50,100,150,200,300", help="rates for the max-rate sweep")
    ap.add_argument("--sweep-duration", type=float, default=15.0)
    ap.add_argument("--fault-duration", type=float, default=30.0)
    ap.add_argument("--scenarios", default="design,naive,inprocess", help="which paths to run")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "checkout-recs-bench-serving")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving.json")
    args = ap.parse_args()
    sys.argv = sys.argv[:1]  # kserve parses sys.argv at import (and would take --w... for --workers)
    from inference.launch import running_servers

    con = Console()
    args.workdir.mkdir(parents=True, exist_ok=True)
    bundle = build_bundle(args.workdir, args.listings, args.users, con)
    feast_work = args.workdir / f"feast-{bundle.name}"
    marker = feast_work / "bench_project.txt"
    if marker.exists():  # materialized by an earlier run over the same bundle
        project = marker.read_text().strip()
    else:
        t = time.perf_counter()
        project = materialize_feast(bundle, feast_work)
        marker.write_text(project)
        con.print(f"Feast (embedded SQLite) applied + materialized in {time.perf_counter() - t:.0f} s")
    bodies = make_requests(4000, args.users, args.listings)
    d = len(json.loads((bundle / "model" / "ranker" / "config.json").read_text())["feature_names"])
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_avg_at_start": os.getloadavg()},
                 "catalogue_listings": args.listings, "ranker_features": d, "feast_project": project}
    scenarios = [("design", ["--ranker_protocol", "grpc"]),
                 ("naive", ["--naive", "--ranker_protocol", "rest-json"]),
                 ("inprocess", ["--scoring", "inprocess"])]
    for name, extra in [(n, e) for n, e in scenarios if n in args.scenarios.split(",")]:
        with private_redis() as redis_proc:  # a fresh one per scenario: the fault run kills it
            redis_url = f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0"
            base = ["--users", "feast", "--feast_features", str(bundle / "features"), "--feast_work_dir",
                    str(feast_work), "--feast_timeout_ms", "200", "--feast_project", project, "--inventory", "redis",
                    "--redis_url", redis_url, "--candidates", "builtin", "--deadline_ms", "40"]
            t = time.perf_counter()
            with running_servers(bundle, transformer_args=base + extra, start_predictor=name != "inprocess",
                                 ready_timeout_s=300, log_dir=args.workdir / f"logs-{name}") as s:
                con.print(f"[bold]{name}[/]: servers ready in {time.perf_counter() - t:.0f} s; "
                          f"{args.rate:.0f} rps for {args.duration:.0f} s")
                cpu0 = {k: cpu_s(p) for k, p in s.pids().items()}
                res[name] = asyncio.run(open_loop(s.v1_url, bodies, args.rate, args.duration))
                res[name]["rss_mb"] = {k: rss_mb(p) for k, p in s.pids().items()}
                res[name]["cpu_ms_per_request"] = {k: (cpu_s(p) - cpu0[k]) * 1e3 / max(res[name]["ok"], 1)
                                                   for k, p in s.pids().items()}
                res[name]["load_avg"] = os.getloadavg()
                con.print(res[name])
                if name == "design":
                    res["hop"] = hop_bench(s, d)
                    con.print({"hop": res["hop"]})
                    res["sweep"] = sweep(s, bodies, args, con)
                    ok = [r["rate_rps"] for r in res["sweep"] if r["p95_ms"] <= 25 and r["errors"] == 0]
                    res["max_rate_p95_le_25ms"] = max(ok) if ok else None
                    res["fault"] = fault_run(s, bodies, args.rate, args.fault_duration, redis_proc, con)
    _summarise(res, con)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str))
    con.print(f"wrote {args.out}")


def sweep(s, bodies: list[dict], args: argparse.Namespace, con: Console) -> list[dict]:
    """Open-loop runs at increasing rates until p95 passes 50 ms."""
    out = []
    for rate in [float(r) for r in args.sweep.split(",")]:
        r = asyncio.run(open_loop(s.v1_url, bodies, rate, args.sweep_duration))
        out.append(r)
        con.print(f"sweep {rate:.0f} rps: p95 {r['p95_ms']:.1f} ms, errors {r['errors']}")
        if r["p95_ms"] > 50:
            break
    return out


def fault_run(s, bodies: list[dict], rate: float, duration: float, redis_proc, con: Console) -> dict:
    """Stop the private Redis at a third of the run; the answers must keep coming."""
    state = {"stopped_at": None}

    def tick(elapsed: float) -> None:
        if state["stopped_at"] is None and elapsed >= duration / 3:
            os.killpg(redis_proc.pid, signal.SIGKILL)
            state["stopped_at"] = elapsed

    con.print(f"[bold]fault[/]: {rate:.0f} rps for {duration:.0f} s, private Redis killed at {duration / 3:.0f} s")
    r = asyncio.run(open_loop(s.v1_url, bodies, rate, duration, on_tick=tick))
    r["redis_killed_at_s"] = state["stopped_at"]
    con.print(r)
    return r


def _summarise(res: dict, con: Console) -> None:
    t = Table(title="serving benchmark (latency from scheduled send, open loop)")
    for c in ("path", "rps", "p50 ms", "p95 ms", "p99 ms", "errors", "5xx", "ranker share", "RSS MiB",
              "CPU ms/req"):
        t.add_column(c)
    for name in ("design", "inprocess", "naive", "fault"):
        r = res.get(name)
        if not r:
            continue
        rss = sum(r.get("rss_mb", {}).values()) if r.get("rss_mb") else float("nan")
        cpu = sum(r.get("cpu_ms_per_request", {}).values()) if r.get("cpu_ms_per_request") else float("nan")
        t.add_row(name, f"{r['throughput_rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}",
                  str(r["errors"]), str(r["http_5xx"]), f"{r['ranker_share']:.2f}", f"{rss:.0f}", f"{cpu:.1f}")
    con.print(t)
    if res.get("design") and res.get("naive"):
        res["naive_over_design_p95"] = res["naive"]["p95_ms"] / res["design"]["p95_ms"]
        res["naive_over_design_cpu"] = (sum(res["naive"]["cpu_ms_per_request"].values())
                                        / sum(res["design"]["cpu_ms_per_request"].values()))
        con.print(f"naive p95 / design p95 = {res['naive_over_design_p95']:.2f}x; naive CPU / design CPU per "
                  f"request = {res['naive_over_design_cpu']:.2f}x; "
                  f"max rate with p95 <= 25 ms: {res.get('max_rate_p95_le_25ms')}")


if __name__ == "__main__":
    main()
