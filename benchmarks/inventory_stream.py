"""Live inventory under load: event → excluded latency of the replica, and answers that never show
an unavailable listing, with Redis healthy, slow and down.

Usage::

    .venv/bin/python benchmarks/inventory_stream.py [--listings 2000] [--latency_s 20] [--healthy_s 180]
        [--slow_s 150] [--down_s 150] [--out benchmarks/results/inventory_stream.json]

What runs, all on 127.0.0.1 (Redis 6379 is never touched):

* a private ``redis-server`` on a free port (``--enable-debug-command yes`` for ``DEBUG SLEEP``);
* a **publisher process**: inventory events appended with ``XADD`` in pipelined chunks every
  10 ms, each entry stamped with its send time (``bench_pub_ns``); sequence = ``time.time_ns()``.
  In the latency phase the events are random (locked with a 2-30 s TTL, unlocked, sold, listed,
  delisted on random listings); in the answer phases they follow the checkout flow: an available
  listing is locked (TTL 5-30 s), then 0.5-5 s later sold (70 %) or unlocked (30 %); a sold
  listing is listed again 5-20 s later (restocked); 3 % of actions delist an available listing
  (listed again 5-20 s later);
* **this process**: the transformer's stages in-process (``CheckoutTransformer.preprocess →
  predict → postprocess`` on one asyncio loop) with ``--inventory replica``
  (``ReplicaInventoryStore`` tailing the stream in its thread), a synthetic catalogue of
  ``--listings`` listings, and a numpy stand-in for the ranker (a fixed random projection of the
  ranker matrix: the ranker's cost is not what is measured here).

Phases:

1. **latency** — the publisher at ``--rate`` (10,000 events/s) for ``--latency_s`` while this
   process answers 50 checkouts/s; event → excluded = the replica's apply time minus the entry's
   send time, per event (p50 / p90 / p99 / max, ms);
2. **healthy** — cycles of: 4 adversarial events published by this process (sold / locked /
   delisted / sold on the listings the previous burst showed most; listed again 20 s later), then
   at once a burst of 300 concurrent checkouts; the publisher adds background events at
   ``--bg_rate``;
3. **slow** — the same while a thread stalls Redis (``DEBUG SLEEP 0.25`` every 0.5 s, and
   ``DEBUG SLEEP 3`` every 20 s: longer than the replica's bound, ``--max_lag_s`` 1 s, so some
   bursts are answered ``inventory_stale`` from known state only);
4. **down** — the publisher stops, the 4 listings shown most are sold, Redis is killed right after,
   and bursts go on from the replica's memory for ``--down_s`` (stale after the bound).

Truth: every stream entry (read back just before Redis is killed) with its stream time. An answer
*shows an unavailable listing* when one of its six was sold, delisted or locked (lock not over)
from before the request arrived until its answer was complete, per the stream — strict: no
allowance for the replica's propagation delay (an event appended a millisecond before the request
counts). Violations are reported with the age of the event that made the listing unavailable, the
answer's fallback reason, and separately those whose event was older than the bound when the
request arrived (what the stale rule is for).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import concurrent.futures
import contextlib
import heapq
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checkout_recs.serving.bundle import ServingBundle  # noqa: E402
from checkout_recs.serving.inventory import InventoryEvent  # noqa: E402
from checkout_recs.serving.inventory_replica import ReplicaInventoryStore  # noqa: E402
from checkout_recs.serving.inventory_stream import encode_event, publish_events, stream_key  # noqa: E402
from checkout_recs.serving.recommender import Recommender, TableUserFeatures  # noqa: E402
from inference.transformer import CheckoutTransformer  # noqa: E402

PREFIX = "bench_inv"
BURST = 300
REGIONS = ("north", "south", "east", "west")
_BG_TYPES = ("locked", "unlocked", "sold", "listed", "delisted")
_BG_WEIGHTS = (0.35, 0.25, 0.15, 0.2, 0.05)


# ---------------------------------------------------------------------------------- Redis, publisher
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[str, subprocess.Popen]:
    """A private redis-server on a free port: (URL, process)."""
    import redis

    port = _free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    r = redis.Redis.from_url(url)
    for _ in range(100):
        with contextlib.suppress(redis.RedisError):
            if r.ping():
                return url, proc
        time.sleep(0.05)
    raise RuntimeError("private redis-server did not start")


def kill_redis(proc: subprocess.Popen) -> None:
    """SIGKILL the private server."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


def publisher(
    url: str,
    stream: str,
    listing_ids: list[int],
    rate: Any,
    mode: Any,
    stop: Any,
    sent: Any,
    ready: Any,
) -> None:
    """Publisher process: ``rate.value`` events/s in 10 ms pipelined chunks until ``stop`` is set;
    ``mode.value`` 0 = random events, 1 = the checkout flow (``CheckoutFlow``)."""
    import redis

    rng = np.random.default_rng(os.getpid())
    flow = CheckoutFlow(listing_ids, rng)
    r = redis.Redis.from_url(url, socket_timeout=10.0)
    r.ping()
    ready.set()
    carry, next_tick = 0.0, time.perf_counter()
    while not stop.is_set():
        next_tick += 0.01
        carry += rate.value * 0.01
        n, carry = int(carry), carry - int(carry)
        events = flow.step(n) if mode.value == 1 else _random_events(rng, listing_ids, n)
        if events:
            try:
                _send(r, stream, events)
            except (redis.RedisError, OSError):
                return  # Redis is gone: no event can exist any more
            sent.value += len(events)
        time.sleep(max(0.0, next_tick - time.perf_counter()))


def _random_events(
    rng: np.random.Generator, listing_ids: list[int], n: int
) -> list[InventoryEvent]:
    lids: list[int] = rng.choice(listing_ids, n).tolist() if n else []
    types = rng.choice(len(_BG_TYPES), n, p=_BG_WEIGHTS)
    ttls = rng.integers(2, 31, n)
    now = time.time()
    return [
        InventoryEvent(lid, _BG_TYPES[t], time.time_ns(), ttl if t == 0 else None, now)
        for lid, t, ttl in zip(lids, types.tolist(), ttls.tolist(), strict=True)
    ]


class CheckoutFlow:
    """Events as checkouts make them: lock, then sold or unlocked; sold and delisted listings come back."""

    def __init__(self, listing_ids: list[int], rng: np.random.Generator) -> None:
        self.ids, self.rng = [int(x) for x in listing_ids], rng
        self.busy: set[int] = set()
        self.due: list[tuple[float, int, str]] = []  # (when, listing, event type), a heap

    def step(self, n: int) -> list[InventoryEvent]:
        """About ``n`` events: the follow-ups now due, then new actions for the rest."""
        now, out = time.time(), list[InventoryEvent]()
        while self.due and self.due[0][0] <= now and len(out) < n:
            _, lid, kind = heapq.heappop(self.due)
            out.append(InventoryEvent(lid, kind, time.time_ns(), None, now))
            if kind == "sold":
                heapq.heappush(self.due, (now + self.rng.uniform(5, 20), lid, "listed"))
            else:
                self.busy.discard(lid)
        for _ in range(max(0, n - len(out))):
            lid = self.ids[int(self.rng.integers(len(self.ids)))]
            if lid in self.busy:
                continue
            self.busy.add(lid)
            if self.rng.random() < 0.03:
                out.append(InventoryEvent(lid, "delisted", time.time_ns(), None, now))
                heapq.heappush(self.due, (now + self.rng.uniform(5, 20), lid, "listed"))
                continue
            out.append(
                InventoryEvent(lid, "locked", time.time_ns(), int(self.rng.integers(5, 31)), now)
            )
            kind = "sold" if self.rng.random() < 0.7 else "unlocked"
            heapq.heappush(self.due, (now + self.rng.uniform(0.5, 5.0), lid, kind))
        return out


def _send(r: Any, stream: str, events: list[InventoryEvent]) -> None:
    pipe = r.pipeline(transaction=False)
    for ev in events:
        pipe.xadd(stream, encode_event(ev) | {"bench_pub_ns": str(time.time_ns())})
    pipe.execute()


# ---------------------------------------------------------------------------------- truth
@dataclass
class Truth:
    """Per listing, the state after each event in stream order (the store's sequence rule)."""

    times: dict[int, list[int]] = field(default_factory=dict)  # stream ms of each effective event
    entry_ids: dict[int, list[str]] = field(default_factory=dict)  # and its stream id
    states: dict[int, list[tuple[str | None, float]]] = field(
        default_factory=dict
    )  # (state, lock end, Unix s)
    last_seq: dict[int, int] = field(default_factory=dict)

    def add(self, entry_id: str, f: dict[str, str]) -> None:
        """Apply one stream entry (ignored when its sequence is not newer, like the store)."""
        lid, seq = int(f["listing_id"]), int(f["sequence"])
        if seq <= self.last_seq.get(lid, -1):
            return
        self.last_seq[lid] = seq
        etype, ts = f["event_type"], int(f["event_ts_ms"]) / 1e3
        state = {"sold": "sold", "delisted": "delisted", "locked": "locked"}.get(etype)
        end = ts + int(f["lock_ttl_s"]) if etype == "locked" else float("inf")
        self.times.setdefault(lid, []).append(int(entry_id.split("-")[0]))
        self.entry_ids.setdefault(lid, []).append(entry_id)
        self.states.setdefault(lid, []).append((state, end))

    def unavailable_throughout(self, lid: int, t0: float, t1: float) -> tuple[float, str] | None:
        """(stream time, Unix s, and id) of the event that made ``lid`` unavailable before ``t0`` when it
        stayed unavailable until ``t1`` (Unix s), else None."""
        times = self.times.get(lid)
        if not times:
            return None
        i = bisect.bisect_left(times, int(t0 * 1000)) - 1  # strictly earlier milliseconds
        j = bisect.bisect_left(times, int(t1 * 1000)) - 1
        if i < 0:
            return None
        for k in range(i, j + 1):
            state, end = self.states[lid][k]
            until = times[k + 1] / 1e3 if k < j else t1
            if state is None or (state == "locked" and end <= until):
                return None
        return times[i] / 1e3, self.entry_ids[lid][i]


def read_truth(r: Any, stream: str, truth: Truth | None = None) -> Truth:
    """Every entry of ``stream`` into ``truth`` (new one by default)."""
    truth = truth or Truth()
    last = "-"
    while True:
        page = r.xrange(stream, min=last, max="+", count=10_000)
        page = [p for p in page if p[0] != last]
        if not page:
            return truth
        for eid, f in page:
            truth.add(eid, f)
        last = page[-1][0]


# ---------------------------------------------------------------------------------- serving
@dataclass
class Answers:
    """Answers of one phase: arrival and completion time (Unix s), the six ids, fallback reasons."""

    t: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    reasons: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    bursts: int = 0
    wall_s: float = 0.0

    def add(self, t: float, preds: list[tuple[dict, float]]) -> None:
        """Answers ``(prediction, completion time)`` of requests that arrived at ``t``."""
        for p, done in preds:
            self.t.append(t)
            self.done.append(done)
            self.ids.append([i["listing_id"] for i in p["items"]])
            self.why.append(p["fallback_reason"] or "none (ranker)")
            self.reasons[self.why[-1]] += 1
            if "error" in p:
                self.errors[p["error"]] += 1


def build_bundle(workdir: Path, listings: int, users: int) -> ServingBundle:
    """A catalogue-only synthetic bundle with the tiny ranker (its input plan builds the matrix; the
    numpy stand-in scores it)."""
    from checkout_recs.serving.bundle_layout import BundleLayout
    from checkout_recs.serving.bundle_writer import assemble_bundle
    from checkout_recs.synthetic.serving import (
        make_pairs,
        make_snapshot,
        make_users,
        train_tiny_ranker,
    )

    out, stage = workdir / "bundle", workdir / "inputs"
    labels, features, model = stage / "labels", stage / "features", BundleLayout(stage)
    for d in (labels, features, model.model_dir):
        d.mkdir(parents=True, exist_ok=True)
    pairs, co = make_pairs(0)
    pairs.to_parquet(labels / "category_pairs.parquet")
    co.to_parquet(labels / "co_purchase_items.parquet")
    snap, user_table = make_snapshot(listings, seed=0), make_users(users, seed=0)
    user_table.to_parquet(features / "user.parquet")
    train_tiny_ranker(snap, user_table, model.ranker_dir, 0)
    assemble_bundle(
        model.model_dir, labels, features, out, snapshot=snap, index_version="bench-inv"
    )
    bundle = ServingBundle.load(out)
    bundle.prepare_plan()
    return bundle


def numpy_scorer(seed: int = 0) -> Any:
    """``matrix (n, d) -> (p_click, p_purchase)``: a fixed random projection through a sigmoid."""
    rng = np.random.default_rng(seed)
    w: dict[int, np.ndarray] = {}

    def score(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = m.shape[1]
        if d not in w:
            w[d] = np.asarray(rng.normal(0, 1, d), dtype=np.float32)
        z = np.nan_to_num(m) @ w[d]
        return 0.2 / (1 + np.exp(-z)), np.full(len(m), 0.3)

    return score


def make_bodies(n: int, users: int, listing_ids: np.ndarray, seed: int) -> list[dict]:
    """``n`` v1 bodies: known users, baskets of 1-2 catalogue listings, the four regions."""
    rng = np.random.default_rng(seed)
    return [
        {
            "instances": [
                {
                    "user_id": int(rng.integers(0, users)),
                    "purchased_item_ids": [
                        int(x) for x in rng.choice(listing_ids, rng.integers(1, 3))
                    ],
                    "region": REGIONS[i % 4],
                    "device": "web",
                }
            ]
        }
        for i in range(n)
    ]


async def answer(t: CheckoutTransformer, body: dict) -> tuple[dict, float]:
    """One checkout through the transformer's three stages: (prediction, completion Unix s); an
    exception becomes ``{"error": ..., "items": []}`` (counted, never shown)."""
    try:
        job = await t.preprocess(body)
        job = await t.predict(job)
        return (await t.postprocess(job))["predictions"][0], time.time()
    except Exception as exc:  # noqa: BLE001 - a failed answer is a figure, not the end of the run
        return {
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}",
            "items": [],
            "fallback_reason": "error",
        }, time.time()


async def burst(t: CheckoutTransformer, bodies: list[dict]) -> list[tuple[dict, float]]:
    """All of ``bodies`` at once."""
    return list(await asyncio.gather(*(answer(t, b) for b in bodies)))


def adversarial_events(
    last: list[tuple[dict, float]], relist: collections.deque, k: int = 4
) -> list[InventoryEvent]:
    """sold / locked / delisted / sold on the ``k`` listings ``last`` showed most, and ``listed`` for
    those made unavailable 20 s ago or more (``relist``: (due time, listing) in order)."""
    shown = collections.Counter(i["listing_id"] for p, _ in last for i in p["items"])
    kinds = ("sold", "locked", "delisted", "sold")
    now = time.time()
    out = []
    while relist and relist[0][0] <= now:
        out.append(InventoryEvent(relist.popleft()[1], "listed", time.time_ns(), None, now))
    for j, (lid, _) in enumerate(shown.most_common(k)):
        out.append(
            InventoryEvent(
                lid, kinds[j % 4], time.time_ns(), 60 if kinds[j % 4] == "locked" else None, now
            )
        )
        relist.append((now + 20.0, lid))
    return out


# ---------------------------------------------------------------------------------- phases
def phase_latency(
    t: CheckoutTransformer,
    bodies: list[dict],
    seconds: float,
    rate: Any,
    target: float,
    lat: list[float],
    sent: Any,
) -> tuple[Answers, dict]:
    """50 checkouts/s while the publisher runs at ``target`` events/s; event → excluded figures."""
    lat.clear()
    sent0 = sent.value
    rate.value = target
    out = Answers()

    async def run() -> None:
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            arrival = time.time()
            out.add(arrival, [await answer(t, bodies[i % len(bodies)])])
            i += 1
            await asyncio.sleep(max(0.0, t0 + i / 50 - time.perf_counter()))
        out.wall_s = time.perf_counter() - t0

    asyncio.run(run())
    rate.value = 0.0
    time.sleep(0.5)
    a = np.asarray(lat) * 1e3
    figs = {
        "target_events_per_s": target,
        "events_sent": sent.value - sent0,
        "events_per_s": round((sent.value - sent0) / out.wall_s, 1),
        "events_measured": int(a.size),
        "checkouts_per_s": round(len(out.t) / out.wall_s, 1),
    }
    if a.size:
        figs.update(
            {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 90, 99)},
            max_ms=round(float(a.max()), 2),
            share_over_1s=float((a > 1000).mean()),
        )
    return out, figs


def phase_bursts(
    t: CheckoutTransformer,
    bodies: list[dict],
    r: Any,
    stream: str,
    seconds: float,
    publish: bool = True,
) -> Answers:
    """Cycles of [4 adversarial events, then 300 concurrent checkouts] for ``seconds``.

    The events are sent from a helper thread and waited for 50 ms at most: while Redis is stalled
    the burst goes ahead (its events reach the stream, and the truth, when Redis wakes up)."""
    out = Answers()
    pool = concurrent.futures.ThreadPoolExecutor(1)
    relist: collections.deque = collections.deque()

    async def run() -> None:
        last = await burst(t, bodies[:BURST])
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            if publish:
                sent = pool.submit(
                    publish_events,
                    r,
                    stream,
                    adversarial_events(last, relist),
                    maxlen=0,
                    extra={"bench_adv": "1"},
                )
                concurrent.futures.wait([sent], timeout=0.05)
            arrival = time.time()
            last = await burst(t, bodies[:BURST])
            out.add(arrival, last)
            out.bursts += 1
        out.wall_s = time.perf_counter() - t0

    asyncio.run(run())
    pool.shutdown(wait=True)
    return out


def stall_redis(url: str, stop: threading.Event, log: list[dict]) -> None:
    """``DEBUG SLEEP 0.25`` every 0.5 s, and ``DEBUG SLEEP 3`` every 20 s, until ``stop``."""
    import redis

    r = redis.Redis.from_url(url, socket_timeout=10.0)
    t0, n = time.monotonic(), 0
    while not stop.is_set():
        long = time.monotonic() - t0 > 20 * (sum(1 for x in log if x["s"] == 3.0) + 1)
        s = 3.0 if long else 0.25
        with contextlib.suppress(redis.RedisError):
            r.execute_command("DEBUG", "SLEEP", s)
            log.append({"at": round(time.monotonic() - t0, 2), "s": s})
        n += 1
        stop.wait(0.25)


def check(ans: Answers, truth: Truth, applied: dict[str, float], bound_s: float) -> dict:
    """Answers that showed a listing unavailable from their arrival to their completion (strict):
    how many, the age of the event at the request's arrival and when the replica applied it
    (relative to the arrival, ms; None: not seen applied)."""
    bad, beyond = 0, 0
    cases: collections.Counter[tuple[float, float | None, str]] = collections.Counter()
    for t, done, ids, why in zip(ans.t, ans.done, ans.ids, ans.why, strict=True):
        hit = [
            h for h in (truth.unavailable_throughout(lid, t, done) for lid in ids) if h is not None
        ]
        if hit:
            bad += 1
            at, eid = max(hit)
            beyond += int((t - at) > bound_s)
            ap = applied.get(eid)
            cases[
                (round((t - at) * 1e3, 1), None if ap is None else round((ap - t) * 1e3, 1), why)
            ] += 1
    n = len(ans.t)
    return {
        "answers": n,
        "bursts": ans.bursts,
        "wall_s": round(ans.wall_s, 1),
        "answers_per_s": round(n / ans.wall_s, 1) if ans.wall_s else None,
        "with_unavailable_shown": bad,
        "with_unavailable_shown_older_than_bound": beyond,
        "violations": [
            {
                "event_age_ms": a,
                "replica_applied_after_arrival_ms": b,
                "fallback_reason": w,
                "answers": c,
            }
            for (a, b, w), c in sorted(cases.items(), key=str)[:40]
        ],
        "fallback_reasons": dict(ans.reasons),
        "errors": dict(ans.errors),
    }


# ---------------------------------------------------------------------------------- main
def main() -> None:
    """Run the four phases and write the JSON figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listings", type=int, default=2000)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--rate", type=float, default=10_000.0, help="events/s of the latency phase")
    ap.add_argument(
        "--bg_rate", type=float, default=100.0, help="background events/s of the answer phases"
    )
    ap.add_argument("--latency_s", type=float, default=20.0)
    ap.add_argument("--healthy_s", type=float, default=180.0)
    ap.add_argument("--slow_s", type=float, default=150.0)
    ap.add_argument("--down_s", type=float, default=150.0)
    ap.add_argument("--max_lag_s", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/inventory_stream.json")
    args = ap.parse_args()
    started = time.time()
    url, proc = start_redis()
    import redis

    r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10.0)
    stream = stream_key(PREFIX)
    bundle = build_bundle(Path(tempfile.mkdtemp(prefix="bench-inv-")), args.listings, args.users)
    listing_ids = bundle.catalog.listing_id.tolist()
    lat: list[float] = []
    applied: dict[
        str, float
    ] = {}  # entry id -> when the replica applied it (adversarial events only)

    def on_applied(entries: list[tuple[str, dict[str, str]]], applied_at: float) -> None:
        lat.extend(
            applied_at - int(f["bench_pub_ns"]) / 1e9 for _, f in entries if "bench_pub_ns" in f
        )
        applied.update((eid, applied_at) for eid, f in entries if "bench_adv" in f)

    replica = ReplicaInventoryStore(
        url, prefix=PREFIX, max_lag_s=args.max_lag_s, in_play_s=900.0, on_applied=on_applied
    ).start()
    assert replica.wait_ready(30), "replica not ready"
    rec = Recommender(bundle, TableUserFeatures(bundle.users), replica)
    t = CheckoutTransformer(rec, None, numpy_scorer())
    bodies = make_bodies(BURST, args.users, np.asarray(listing_ids), seed=1)
    ctx = mp.get_context("spawn")
    rate, mode, stop, sent, pub_ready = (
        ctx.Value("d", 0.0),
        ctx.Value("i", 0),
        ctx.Event(),
        ctx.Value("q", 0),
        ctx.Event(),
    )
    pub = ctx.Process(
        target=publisher,
        args=(url, stream, listing_ids, rate, mode, stop, sent, pub_ready),
        daemon=True,
    )
    pub.start()
    assert pub_ready.wait(120), "publisher did not start"
    results: dict[str, Any] = {}
    try:
        lat_answers, results["latency"] = phase_latency(
            t, bodies, args.latency_s, rate, args.rate, lat, sent
        )
        print("latency:", results["latency"], flush=True)
        mode.value, rate.value = 1, args.bg_rate
        healthy = phase_bursts(t, bodies, r, stream, args.healthy_s)
        print("healthy:", healthy.bursts, "bursts", len(healthy.t), "answers", flush=True)
        stall_stop, stalls = threading.Event(), list[dict[str, float]]()
        staller = threading.Thread(target=stall_redis, args=(url, stall_stop, stalls), daemon=True)
        staller.start()
        slow = phase_bursts(t, bodies, r, stream, args.slow_s)
        stall_stop.set()
        staller.join(15)
        print("slow:", slow.bursts, "bursts", len(slow.t), "answers", flush=True)
        rate.value = 0.0
        stop.set()
        pub.join(10)
        last = asyncio.run(burst(t, bodies[:BURST]))
        truth = read_truth(r, stream)
        final = adversarial_events(last, collections.deque())
        publish_events(
            r, stream, final, maxlen=0, extra={"bench_adv": "1"}
        )  # sold just before the outage ...
        read_truth(r, stream, truth)
        kill_redis(proc)  # ... and Redis is gone right after
        down = phase_bursts(t, bodies, r, stream, args.down_s, publish=False)
        print("down:", down.bursts, "bursts", len(down.t), "answers", flush=True)
    finally:
        stop.set()
        kill_redis(proc)
        replica.close()
    results["latency"]["answers_check"] = check(lat_answers, truth, applied, args.max_lag_s)
    phases = {
        k: check(v, truth, applied, args.max_lag_s)
        for k, v in (("healthy", healthy), ("slow", slow), ("down", down))
    }
    phases["slow"]["redis_stalls"] = {
        "debug_sleep_0.25s": sum(1 for x in stalls if x["s"] == 0.25),
        "debug_sleep_3s": sum(1 for x in stalls if x["s"] == 3.0),
    }
    total = len(lat_answers.t) + sum(p["answers"] for p in phases.values())
    checks = [results["latency"]["answers_check"], *phases.values()]
    bad = sum(c["with_unavailable_shown"] for c in checks)
    beyond = sum(c["with_unavailable_shown_older_than_bound"] for c in checks)
    payload = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "2-core box shared with other work while this ran",
        },
        "setup": {
            "listings": args.listings,
            "users": args.users,
            "scorer": "numpy random projection (not the ranker)",
            "request_path": "CheckoutTransformer preprocess/predict/postprocess in-process, one asyncio loop",
            "inventory": f"--inventory replica, max_lag_s={args.max_lag_s}, in_play_s=900",
            "events": "latency phase random; answer phases the checkout flow (CheckoutFlow)",
            "burst": BURST,
            "bg_events_per_s": args.bg_rate,
            "truth": "strict: events in the stream before the request arrived",
        },
        "event_to_excluded": results["latency"],
        "answers": phases,
        "total_answers": total,
        "total_with_unavailable_shown": bad,
        "total_with_unavailable_shown_older_than_bound": beyond,
        "target_answers": 1_000_000,
        "replica": replica.stats(),
        "wall_s": round(time.time() - started, 1),
        "run_id": uuid.uuid4().hex[:8],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str))
    print(
        json.dumps(
            {
                k: payload[k]
                for k in (
                    "total_answers",
                    "total_with_unavailable_shown",
                    "total_with_unavailable_shown_older_than_bound",
                )
            }
        ),
        f"figures written to {args.out}",
        flush=True,
    )


if __name__ == "__main__":
    main()
