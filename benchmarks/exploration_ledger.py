"""Added latency of the shared (Redis) exploration ledger on the policy stage, per request.

Runs the same stream of scored requests through three policy engines — the per-process ledger,
the Redis ledger with inline round trips (``redis``) and the serving one whose round trips run
in a renewer thread (``redis_bg``, ``ledger_background``) — rotating the order request by request
so machine load hits all alike, and reports per-request ``PolicyEngine.choose`` latency (ms:
mean, p50, p95, p99, max), the added mean, Redis round trips per request, the time of one round
trip, and each engine's explored share (the background one explores nothing while its lease is
being renewed). ``--pause_ms`` spaces the requests (a serving rate) so the renewer gets its turn.

Usage: ``python -m benchmarks.exploration_ledger [--requests 20000] [--redis_url URL]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
import uuid
from typing import Literal

import numpy as np

from checkout_recs.policy.catalog import ItemCatalog
from checkout_recs.policy.config import (
    ExplorationConfig,
    ExposureConfig,
    LedgerConfig,
    PolicyConfig,
)
from checkout_recs.policy.engine import PolicyEngine
from checkout_recs.policy.ledger import RedisLedger
from checkout_recs.policy.ledger_background import BackgroundRedisLedger
from checkout_recs.synthetic.serving import make_prepared, make_snapshot


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "mean": round(float(a.mean()), 4),
        **{f"p{q}": round(float(np.percentile(a, q)), 4) for q in (50, 95, 99)},
        "max": round(float(a.max()), 4),
    }


def run(n: int, url: str, eps: float, pause_ms: float = 0.0) -> dict[str, object]:
    """``n`` requests through both engines; returns latency figures (ms) and round-trip counts."""
    cat = ItemCatalog.from_frame(make_snapshot(3000, seed=5))
    prefix = f"bench_ledger_{uuid.uuid4().hex[:6]}"
    engines = {}
    for name in ("local", "redis", "redis_bg"):
        backend: Literal["local", "redis"] = "local" if name == "local" else "redis"
        renewal: Literal["inline", "background"] = "background" if name == "redis_bg" else "inline"
        expl = ExplorationConfig(
            epsilon=dict.fromkeys(("new_user", "returning", "high_value"), eps),
            ledger=LedgerConfig(
                backend=backend,
                url=url if backend == "redis" else None,
                prefix=f"{prefix}_{name}",
                renewal=renewal,
            ),
        )
        pcfg = PolicyConfig(exploration=expl, exposure=ExposureConfig(enabled=False))
        engines[name] = PolicyEngine(cat, pcfg)
    rng = np.random.default_rng(0)
    start = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lat: dict[str, list[float]] = {name: [] for name in engines}
    order = list(engines)
    for i in range(n):
        rows = rng.choice(len(cat), 200, replace=False)
        scores = rng.uniform(0.01, 0.3, 200), rng.uniform(0.05, 0.5, 200)
        prep = make_prepared(cat, rows, timestamp=(start + dt.timedelta(seconds=i * 4)).isoformat())
        for which in order[i % 3 :] + order[: i % 3]:
            t0 = time.perf_counter()
            engines[which].choose(prep, scores)
            lat[which].append((time.perf_counter() - t0) * 1e3)
        if pause_ms:
            time.sleep(pause_ms / 1e3)
        if (i + 1) % 5000 == 0:
            print(f"  {i + 1}/{n} requests", flush=True)
    led = engines["redis"].explorer.ledger
    assert isinstance(led, RedisLedger)
    rtt = []
    for _ in range(500):
        t0 = time.perf_counter()
        led._sync(led._want)
        rtt.append((time.perf_counter() - t0) * 1e3)
    bg = engines["redis_bg"].explorer.ledger
    assert isinstance(bg, BackgroundRedisLedger)
    bg.close()
    led.redis.delete(*led.redis.scan_iter(f"{prefix}_*"))
    out: dict[str, object] = {backend: _stats(v) for backend, v in lat.items()}
    out.update(
        eps=eps,
        requests=n,
        pause_ms=pause_ms,
        added_mean_ms={
            k: round(float(np.mean(lat[k]) - np.mean(lat["local"])), 4)
            for k in ("redis", "redis_bg")
        },
        round_trips_per_request={
            "redis": round(led.syncs / n, 4),
            "redis_bg": round(bg.syncs / n, 4),
        },
        round_trip_ms=_stats(rtt),
        explored_share={
            k: round(e.explorer.ledger.explored / max(e.explorer.ledger.requests, 1), 4)
            for k, e in engines.items()
        },
        load_avg=os.getloadavg()[0],
    )
    return out


def main() -> None:
    """Command line: print the figures as JSON, one line per epsilon, and write them all to
    ``--out`` (default ``benchmarks/results/exploration_ledger.json``)."""
    from pathlib import Path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--redis_url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--pause_ms", type=float, default=0.0, help="pause between requests (ms)")
    p.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "exploration_ledger.json"
    )
    args = p.parse_args()
    runs = []
    for eps in (0.1, 0.5):
        runs.append(run(args.requests, args.redis_url, eps, args.pause_ms))
        print(json.dumps(runs[-1]), flush=True)
    args.out.write_text(json.dumps({"load_average_1m": os.getloadavg()[0], "runs": runs}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
