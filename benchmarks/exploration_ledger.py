"""Added latency of the shared (Redis) exploration ledger on the policy stage, per request.

Runs the same stream of scored requests through two policy engines, one with the per-process
ledger and one with the Redis ledger (loopback), alternating request by request so machine load
hits both alike, and reports per-request ``PolicyEngine.choose`` latency (ms: mean, p50, p95,
p99), the added mean, Redis round trips per request and the time of one round trip.

Usage: ``python -m benchmarks.exploration_ledger [--requests 20000] [--redis_url URL]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
import uuid

import numpy as np

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import ExplorationConfig, ExposureConfig, LedgerConfig, PolicyConfig
from checkout_recs.policy.engine import PolicyEngine
from checkout_recs.policy.ledger import RedisLedger
from tests.fixtures_serving import make_prepared, make_snapshot


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"mean": round(float(a.mean()), 4), **{f"p{q}": round(float(np.percentile(a, q)), 4)
                                                   for q in (50, 95, 99)}}


def run(n: int, url: str, eps: float) -> dict[str, object]:
    """``n`` requests through both engines; returns latency figures (ms) and round-trip counts."""
    cat = ItemCatalog.from_frame(make_snapshot(3000, seed=5))
    prefix = f"bench_ledger_{uuid.uuid4().hex[:6]}"
    engines = {}
    for backend in ("local", "redis"):
        expl = ExplorationConfig(epsilon=dict.fromkeys(("new_user", "returning", "high_value"), eps),
                                 ledger=LedgerConfig(backend=backend, url=url if backend == "redis" else None,
                                                     prefix=prefix))
        pcfg = PolicyConfig(exploration=expl, exposure=ExposureConfig(enabled=False))
        engines[backend] = PolicyEngine(cat, pcfg)
    rng = np.random.default_rng(0)
    start = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lat: dict[str, list[float]] = {"local": [], "redis": []}
    for i in range(n):
        rows = rng.choice(len(cat), 200, replace=False)
        scores = rng.uniform(0.01, 0.3, 200), rng.uniform(0.05, 0.5, 200)
        prep = make_prepared(cat, rows, timestamp=(start + dt.timedelta(seconds=i * 4)).isoformat())
        for backend in (("local", "redis") if i % 2 else ("redis", "local")):
            t0 = time.perf_counter()
            engines[backend].choose(prep, scores)
            lat[backend].append((time.perf_counter() - t0) * 1e3)
        if (i + 1) % 5000 == 0:
            print(f"  {i + 1}/{n} requests", flush=True)
    led = engines["redis"].explorer.ledger
    assert isinstance(led, RedisLedger)
    rtt = []
    for _ in range(500):
        t0 = time.perf_counter()
        led._sync(led._want)
        rtt.append((time.perf_counter() - t0) * 1e3)
    led.redis.delete(*led.redis.scan_iter(f"{prefix}:*"))
    out: dict[str, object] = {backend: _stats(v) for backend, v in lat.items()}
    added = float(np.mean(lat["redis"]) - np.mean(lat["local"]))
    out.update(eps=eps, requests=n, added_mean_ms=round(added, 4),
               round_trips_per_request=round(led.syncs / n, 4), round_trip_ms=_stats(rtt),
               explored_share=round(led.explored / max(led.requests, 1), 4), load_avg=os.getloadavg()[0])
    return out


def main() -> None:
    """Command line: print the figures as JSON, one line per epsilon."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--redis_url", default="redis://127.0.0.1:6379/12")
    args = p.parse_args()
    for eps in (0.1, 0.5):
        print(json.dumps(run(args.requests, args.redis_url, eps)), flush=True)


if __name__ == "__main__":
    main()
