"""Overload benchmark: the transformer at twice its sustainable rate, with and without deadlines.

Issue #19's finding: at 200 checkouts/s on 2 cores, 354 of 1,000 calls timed out at the client
while the server computed (and logged) 392 answers nobody received. This benchmark drives the
same overload and measures what the server-side deadline changes (``inference.deadline``):

1. **calibrate** (``--overload off``, no shedding): open-loop steps of ``--step_s`` seconds at rising
   rates; the sustainable rate is the highest whose calls were all answered with p99 <=
   ``--sustainable_p99_ms`` (100: the page's budget);
2. **overload** at ``--factor`` (2) x that rate for ``--duration`` seconds, once per mode, each on
   fresh servers: ``off`` (every call computed, as before), ``refuse`` (503 + Retry-After) and
   ``fallback`` (the cheap path).

Each call carries ``X-Request-Deadline-Ms: --deadline_ms`` and the client gives up at that
deadline. Per mode: calls sent, answered (200) and their p50 / p99 / max latency from the
scheduled send (open loop: no coordinated omission), answered within the deadline, refused (503),
client timeouts, answers by the cheap path, and **computed but unsent**: the server's answers
(``checkout_recs_answers_total`` on ``/metrics``) minus the answers the client received. Shed
counts come from ``checkout_recs_shed_total``.

The bundle is synthetic (``checkout_recs.synthetic.serving``: ``--listings`` listings, built-in
candidates, a tiny ranker); no switches. Inventory: ``--inventory memory`` (this process's dict),
or ``replica`` as the manifests run it — a private ``redis-server``, the transformer's replica
with its read fence tailing the stream, and a thread of this process publishing checkout-flow
events (lock, then sold or unlocked; relisted later) at ``--bg_events_per_s`` all along, so lookups
pay for fences and applies under overload (``--inventory_unproven`` as the server's). The figures
are the request path's and the servers', on whatever cores the machine has (shared ones say so in
``host``).

    .venv/bin/python benchmarks/overload.py [--deadline_ms 250 --factor 2 --duration 30]
        [--sustainable RPS]   # skip the calibration
        [--inventory replica --bg_events_per_s 100 --inventory_unproven known|refuse]

Writes ``benchmarks/results/overload.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inventory_stream_parts import CheckoutFlow  # noqa: E402
from benchmarks.redis_server import kill_redis_server, start_redis_server  # noqa: E402
from benchmarks.serving_load import _pct, _until, encode_bodies, run  # noqa: E402
from checkout_recs.serving.inventory_stream import publish_events, stream_key  # noqa: E402
from inference.launch import running_servers  # noqa: E402

PREFIX = "bench_overload"

MODES = ("off", "refuse", "fallback")


def build_bundle(out: Path, listings: int, users: int) -> Path:
    """A synthetic serving bundle (the tests' builders at ``listings`` listings); cached in ``out``."""
    from checkout_recs.serving.bundle_layout import BundleLayout
    from checkout_recs.serving.bundle_writer import assemble_bundle
    from checkout_recs.synthetic.serving import (
        make_pairs,
        make_snapshot,
        make_users,
        train_tiny_ranker,
    )

    bundle = out / f"bundle-{listings}"
    if BundleLayout(bundle).info_path.exists():
        return bundle
    stage = out / f"inputs-{listings}"
    labels, features, model = stage / "labels", stage / "features", BundleLayout(stage)
    for d in (labels, features, model.model_dir):
        d.mkdir(parents=True, exist_ok=True)
    snap, user_rows = make_snapshot(listings, seed=0), make_users(users, seed=0)
    pairs, co = make_pairs(0)
    pairs.to_parquet(labels / "category_pairs.parquet")
    co.to_parquet(labels / "co_purchase_items.parquet")
    user_rows.to_parquet(features / "user.parquet")
    train_tiny_ranker(snap, user_rows, model.ranker_dir, 0)
    assemble_bundle(
        model.model_dir, labels, features, bundle, snapshot=snap, index_version="idx-overload"
    )
    return bundle


def make_bodies(bundle: Path, n: int, seed: int = 0) -> list[dict]:
    """``n`` v1 bodies: known users with a basket of one or two listings of the catalogue."""
    from checkout_recs.serving.bundle import ServingBundle

    b = ServingBundle.load(bundle)
    rng = np.random.default_rng(seed)
    users = b.users.sample(n, replace=True, random_state=seed)
    ids = b.catalog.listing_id
    return [
        {
            "instances": [
                {
                    "user_id": int(u.user_id),
                    "region": str(u.region),
                    "purchased_item_ids": [int(x) for x in rng.choice(ids, rng.integers(1, 3))],
                }
            ]
        }
        for u in users.itertuples()
    ]


def listing_ids(bundle: Path) -> list[int]:
    """The catalogue's listing ids (the background inventory events' listings)."""
    import pyarrow.parquet as pq

    from checkout_recs.serving.bundle_layout import BundleLayout

    return pq.read_table(BundleLayout(bundle).snapshot, columns=["listing_id"])[
        "listing_id"
    ].to_pylist()


async def open_loop(
    url: str, bodies: list[dict], rate: float, duration: float, deadline_ms: float
) -> dict[str, Any]:
    """``rate`` calls/s for ``duration`` s, each with ``X-Request-Deadline-Ms``: what is left of
    ``deadline_ms`` from its scheduled send time when it is sent; the client gives up at that
    deadline. Latency from each call's scheduled send time, ms."""
    import aiohttp
    import orjson

    n = int(rate * duration)
    payloads = encode_bodies(bodies)
    lat, status = np.full(n, np.nan), np.zeros(n, int)
    reasons: list[str | None] = [None] * n
    late = np.zeros(n)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2048)) as client:
        t0 = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            sched = t0 + i / rate
            late[i] = (
                time.perf_counter() - sched
            ) * 1e3  # the generator's own lateness (shared cores)
            left_ms = max(1.0, deadline_ms - late[i])  # what the client has left of its deadline
            headers = {
                "content-type": "application/json",
                "x-request-deadline-ms": f"{left_ms:.1f}",
            }
            timeout = aiohttp.ClientTimeout(total=left_ms / 1e3)
            try:
                async with client.post(
                    url, data=payloads[i % len(payloads)], headers=headers, timeout=timeout
                ) as r:
                    body = await r.read()
                    status[i] = r.status
                    if r.status == 200:
                        reasons[i] = orjson.loads(body)["predictions"][0]["fallback_reason"]
            except TimeoutError:
                status[i] = -1  # the client's deadline passed
            except aiohttp.ClientError:
                status[i] = -2
            lat[i] = (time.perf_counter() - sched) * 1e3

        tasks = []
        for i in range(n):
            await _until(t0 + i / rate)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    ok = status == 200
    return {
        "rate_rps": rate,
        "duration_s": duration,
        "sent": n,
        "answered": int(ok.sum()),
        "answered_within_deadline": int((ok & (lat <= deadline_ms)).sum()),
        "answered_late": int((ok & (lat > deadline_ms)).sum()),
        "refused_503": int((status == 503).sum()),
        "client_timeouts": int((status == -1).sum()),
        "client_errors": int((status == -2).sum()),
        "other_status": {
            str(s): int((status == s).sum()) for s in set(status.tolist()) - {200, 503, -1, -2}
        },
        "cheap_path_answers": sum(r == "overload" for r in reasons),
        "answered_latency": _pct(lat[ok]),
        "all_latency": _pct(lat[~np.isnan(lat)]),
        "send_late_p50_ms": float(np.percentile(late, 50)) if n else float("nan"),
        "send_late_p99_ms": float(np.percentile(late, 99)) if n else float("nan"),
    }


def scrape(metrics_url: str) -> dict[str, float]:
    """Answers computed (``checkout_recs_answers_total``, all policies) and shed calls by point/answer."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=30) as r:  # noqa: S310 - loopback only
        text = r.read().decode()
    out: dict[str, float] = {"answers": 0.0}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "checkout_recs_answers_total":
                out["answers"] += s.value
            elif s.name == "checkout_recs_shed_total":
                out[f"shed:{s.labels['point']}:{s.labels['answer']}"] = s.value
    return out


@contextlib.contextmanager
def inventory_args(
    args: argparse.Namespace, listing_ids: list[int]
) -> Iterator[tuple[list[str], dict[str, int]]]:
    """The transformer's inventory flags for the ``with`` block, and the count of background events
    sent (``{"events": n}``): ``memory``; or ``replica`` on a private Redis whose stream gets
    checkout-flow events at ``--bg_events_per_s`` from a thread of this process until the block ends."""
    sent = {"events": 0}
    if args.inventory == "memory":
        yield ["--inventory", "memory"], sent
        return
    import redis

    url, proc = start_redis_server()
    stop = threading.Event()

    def publish() -> None:
        r = redis.Redis.from_url(url, decode_responses=True)
        flow = CheckoutFlow(listing_ids, np.random.default_rng(3))
        stream, tick, owed = stream_key(PREFIX), time.perf_counter(), 0.0
        while not stop.wait(0.01):
            now = time.perf_counter()
            owed += (now - tick) * args.bg_events_per_s
            tick = now
            if owed >= 1:
                events = flow.step(int(owed))
                owed -= int(owed)
                with contextlib.suppress(redis.RedisError):
                    publish_events(r, stream, events)
                    sent["events"] += len(events)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        yield (
            [
                *("--inventory", "replica", "--redis_url", url, "--redis_prefix", PREFIX),
                *("--inventory_unproven", args.inventory_unproven),
            ],
            sent,
        )
    finally:
        stop.set()
        thread.join(5)
        kill_redis_server(proc)


def run_mode(
    bundle: Path,
    mode: str,
    bodies: list[dict],
    rate: float,
    duration: float,
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, Any]:
    """Fresh servers (and inventory) in ``mode``; ``rate`` calls/s for ``duration`` s; the
    server-side counts around it."""
    with inventory_args(args, listing_ids(bundle)) as (inv, sent):
        targs = [
            *inv,
            "--switches",
            "none",
            "--overload",
            mode,
            "--request_deadline_ms",
            str(args.server_deadline_ms),
            "--max_inflight",
            str(args.max_inflight),
            "--max_queue_ms",
            str(args.max_queue_ms),
            "--deadline_reserve_ms",
            str(args.reserve_ms),
        ]
        with running_servers(bundle, transformer_args=targs, log_dir=log_dir / mode) as s:
            metrics_url = s.v1_url.split("/v1/")[0] + "/metrics"
            run(
                open_loop(s.v1_url, bodies, rate / 4, 3.0, args.deadline_ms)
            )  # warm-up at a quarter rate
            time.sleep(1.0)
            before, events0 = scrape(metrics_url), sent["events"]
            load0 = os.getloadavg()[0]
            res = run(open_loop(s.v1_url, bodies, rate, duration, args.deadline_ms))
            events = sent["events"] - events0
            time.sleep(
                max(2.0, args.deadline_ms / 1e3 * 4)
            )  # let the server finish what it still holds
            after = scrape(metrics_url)
        computed = after["answers"] - before["answers"]
        res.update(
            mode=mode,
            server_answers_computed=int(computed),
            computed_but_unsent=int(computed - res["answered"]),
            shed={
                k[5:]: int(after[k] - before.get(k, 0.0))
                for k in after
                if k.startswith("shed:") and after[k] - before.get(k, 0.0) > 0
            },
            load_avg_1m_at_start=round(load0, 2),
            inventory_events_during=events,
        )
        return res


def calibrate(
    bundle: Path, bodies: list[dict], args: argparse.Namespace, log_dir: Path
) -> tuple[float, list[dict]]:
    """The highest rate (``--overload off``) whose calls were all answered, p99 <= ``--sustainable_p99_ms``."""
    steps, best = [], 0.0
    with (
        inventory_args(args, listing_ids(bundle)) as (inv, _),
        running_servers(
            bundle,
            transformer_args=[*inv, "--switches", "none", "--overload", "off"],
            log_dir=log_dir / "calibrate",
        ) as s,
    ):
        run(open_loop(s.v1_url, bodies, 20, 3.0, args.deadline_ms))
        rate = args.start_rps
        while rate <= args.max_rps:
            r = run(open_loop(s.v1_url, bodies, rate, args.step_s, args.deadline_ms))
            steps.append(
                {
                    k: r[k]
                    for k in ("rate_rps", "sent", "answered", "client_timeouts", "answered_latency")
                }
            )
            ok = (
                r["answered"] == r["sent"]
                and r["answered_latency"]["p99_ms"] <= args.sustainable_p99_ms
            )
            print(
                f"  calibrate {rate:5.0f} rps: answered {r['answered']}/{r['sent']}, "
                f"p99 {r['answered_latency']['p99_ms']:.1f} ms -> {'ok' if ok else 'over'}",
                flush=True,
            )
            if not ok:
                break
            best = rate
            rate += args.step_rps
            time.sleep(1.0)
    return best, steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--deadline_ms",
        type=float,
        default=250.0,
        help="the client's deadline (header and timeout)",
    )
    p.add_argument(
        "--server_deadline_ms",
        type=float,
        default=1000.0,
        help="--request_deadline_ms of the server",
    )
    p.add_argument("--max_inflight", type=int, default=4)
    p.add_argument("--max_queue_ms", type=float, default=50.0)
    p.add_argument(
        "--reserve_ms", type=float, default=20.0, help="--deadline_reserve_ms of the server"
    )
    p.add_argument(
        "--factor", type=float, default=2.0, help="overload = factor x the sustainable rate"
    )
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument(
        "--sustainable", type=float, default=None, help="skip the calibration: this rate, calls/s"
    )
    p.add_argument("--sustainable_p99_ms", type=float, default=100.0)
    p.add_argument("--start_rps", type=float, default=20.0)
    p.add_argument("--step_rps", type=float, default=10.0)
    p.add_argument("--max_rps", type=float, default=400.0)
    p.add_argument("--step_s", type=float, default=8.0)
    p.add_argument("--listings", type=int, default=20000)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--inventory", default="memory", choices=["memory", "replica"])
    p.add_argument(
        "--bg_events_per_s",
        type=float,
        default=100.0,
        help="replica: checkout-flow inventory events per second on the stream meanwhile",
    )
    p.add_argument(
        "--inventory_unproven",
        default="known",
        choices=["known", "refuse"],
        help="replica: the transformer's --inventory_unproven",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="add this to the benchmark's niceness (servers and load generator; < 0 needs root): on "
        "shared cores it keeps other work from stretching the measured latencies",
    )
    p.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "checkout_recs_overload"
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "overload.json")
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.nice:
        os.nice(args.nice)
    t0 = time.time()
    bundle = build_bundle(args.workdir, args.listings, args.users)
    bodies = make_bodies(bundle, 2000)
    log_dir = args.workdir / f"logs-{int(t0)}"
    steps: list[dict] = []
    sustainable = args.sustainable
    if sustainable is None:
        print("calibrating (--overload off) ...", flush=True)
        sustainable, steps = calibrate(bundle, bodies, args, log_dir)
        if sustainable <= 0:
            sys.exit(
                f"no sustainable rate from {args.start_rps:g} calls/s up: the machine is too busy"
            )
    rate = args.factor * sustainable
    runs = {}
    for mode in args.modes.split(","):
        print(f"{mode}: {rate:.0f} calls/s for {args.duration:.0f} s ...", flush=True)
        runs[mode] = run_mode(bundle, mode, bodies, rate, args.duration, args, log_dir)
        _print(runs[mode], args.deadline_ms)
    out = {
        "command": "python "
        + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": round(time.time() - t0, 1),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "setup": {
            "bundle_listings": args.listings,
            "users": args.users,
            "inventory": args.inventory
            if args.inventory == "memory"
            else f"replica (fence 500 ms, bound 1 s), --inventory_unproven "
            f"{args.inventory_unproven}, {args.bg_events_per_s:g} checkout-flow events/s",
            "switches": "none",
            "client_deadline_ms": args.deadline_ms,
            "server_request_deadline_ms": args.server_deadline_ms,
            "max_inflight": args.max_inflight,
            "max_queue_ms": args.max_queue_ms,
            "deadline_reserve_ms": args.reserve_ms,
            "factor": args.factor,
            "sustainable_p99_ms": args.sustainable_p99_ms,
            "nice": args.nice,
        },
        "sustainable_rps": sustainable,
        "calibration": steps,
        "overload_rps": rate,
        "runs": runs,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


def _print(r: dict[str, Any], deadline_ms: float) -> None:
    lat = r["answered_latency"]
    print(
        f"  {r['mode']:8s} sent {r['sent']}, answered {r['answered']} ({r['answered_within_deadline']} within "
        f"{deadline_ms:g} ms; p50 {lat['p50_ms']:.1f} p99 {lat['p99_ms']:.1f} max {lat['max_ms']:.1f} ms), "
        f"cheap path {r['cheap_path_answers']}, 503 {r['refused_503']}, client timeouts {r['client_timeouts']}, "
        f"computed but unsent {r['computed_but_unsent']}, shed {r['shed']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
