"""Live inventory under load: event → excluded latency of the replica, the read fence's cost, the
consumer killed mid-stream, and answers that never show an unavailable listing, with Redis
healthy, slow and down.

Usage (the run of record is named in ``benchmarks/LOGBOOK.md``, *Live inventory stream*)::

    .venv/bin/python benchmarks/inventory_stream.py [--rate 10000 --latency_s 30]
        [--answers_healthy 400000 --answers_slow 300000 --answers_down 300000]
        [--phases latency,consumer,fence_cost,healthy,slow,down] [--resume]
        [--out benchmarks/results/inventory_stream.json]

What runs, all on 127.0.0.1 (Redis 6379 is never touched):

* a private ``redis-server`` on a free port (``--enable-debug-command yes`` for ``DEBUG SLEEP``);
* a **publisher process**: inventory events appended with ``XADD``, packed by hiredis and written
  raw on one socket in pipelined chunks, paced by the wall clock (a late tick sends what is owed),
  each entry stamped with its send time (``bench_pub_ns``); sequence = ``time.time_ns()``. In the
  latency phase the events are random (locked with a 2-30 s TTL, unlocked, sold, listed, delisted
  on random listings); in the answer phases they follow the checkout flow (``CheckoutFlow``);
* **this process**: the transformer in-process (``CheckoutTransformer.__call__``: kserve's
  ``Model.__call__`` → preprocess → predict → postprocess, each call stamped with its arrival as
  the REST route stamps it) with ``--inventory replica`` as the manifests run it (bound 1 s, read
  fence 500 ms), a synthetic catalogue of ``--listings`` listings and a numpy stand-in for the
  ranker's scores (the ranker input is built as in serving; the ranker's cost is not measured).

Phases (``--phases``; each one's figures are written to ``--out`` as soon as it ends, and
``--resume`` keeps the phases already there and runs the others):

1. **latency** — the publisher at ``--rate`` for ``--latency_s`` while this process answers 50
   checkouts/s (``--overload refuse`` as the manifests: admission, 1000 ms deadline); event →
   excluded = when the replica applied the entry minus its send time;
2. **consumer** — ``python -m inference.inventory_consumer`` on the stream so far, SIGKILLed a
   third of the way while it holds a batch not yet acknowledged, and restarted under another name
   (it takes that batch over): the state it leaves in Redis is compared with the stream's (last
   sequence per listing, unavailable set), nothing left pending;
3. **fence_cost** — sequential answers and bare lookups with the fence and without it (a second
   replica, ``fence_max_wait_s=0``), alternating call by call, on an idle stream (every lookup
   needs a fence read: the worst case) — wall ms and process CPU ms per call;
4. **healthy** — cycles of: 4 adversarial events published by this process (sold / locked /
   delisted / sold on the listings the previous burst showed most; listed again 20 s later), then
   at once a burst of 300 concurrent checkouts (``--overload off``: every call answered; the
   deadline of 1000 ms still bounds the fence), with background checkout-flow events at
   ``--bg_rate``; until ``--answers_healthy`` answers;
5. **slow** — the same while a thread stalls Redis (``DEBUG SLEEP 0.25`` every 0.5 s, and
   ``DEBUG SLEEP 3`` every 20 s: longer than the fence's 500 ms and the replica's 1 s bound);
6. **down** — the publisher stops, the 4 listings shown most are sold, Redis is killed right after,
   and bursts go on from the replica's memory.

Truth: the stream itself, read back every ``--check_every`` bursts (and just before Redis is
killed). An answer *shows an unavailable listing* when one of its six was sold, delisted or locked
(lock not over) from before the request arrived until its answer was complete, per the stream —
strict: an event appended a millisecond before the request counts. Answers are checked as they
come and dropped, so memory stays flat whatever the count.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inventory_stream_parts import (  # noqa: E402
    PREFIX,
    PhaseCheck,
    Truth,
    build_bundle,
    compare_state,
    load_avg,
    make_bodies,
    metric_value,
    numpy_scorer,
    publisher,
    stall_redis,
    summarize,
    write_html,
    xrange_all,
)
from benchmarks.redis_server import kill_redis_server, start_redis_server  # noqa: E402
from checkout_recs.serving.inventory import (  # noqa: E402
    InventoryEvent,
    MemoryInventoryStore,
)
from checkout_recs.serving.inventory_replica import ReplicaInventoryStore  # noqa: E402
from checkout_recs.serving.inventory_stream import (  # noqa: E402
    decode_event,
    publish_events,
    stream_key,
)
from checkout_recs.serving.recommender import Recommender, TableUserFeatures  # noqa: E402
from inference.deadline import RequestClock, Shed, reset_clock, set_clock  # noqa: E402
from inference.launch import free_port  # noqa: E402
from inference.transformer import CheckoutTransformer  # noqa: E402

GROUP = "inventory-appliers"
BURST = 300
#: The manifests' transformer: --request_deadline_ms 1000, --max_inflight 4, --max_queue_ms 50,
#: --deadline_reserve_ms 20, --inventory_max_lag_s 1, --inventory_fence_ms 500.
DEADLINE_MS, MAX_INFLIGHT, MAX_QUEUE_MS, RESERVE_MS = 1000.0, 4, 50.0, 20.0
PHASES = ("latency", "consumer", "fence_cost", "healthy", "slow", "down")


# ---------------------------------------------------------------------------------- Redis, publisher


# ---------------------------------------------------------------------------------- truth


# ---------------------------------------------------------------------------------- serving


async def answer(t: CheckoutTransformer, body: dict, arrived_pc: float) -> tuple[dict, float]:
    """One checkout through ``CheckoutTransformer.__call__``, stamped as arrived at ``arrived_pc``
    (perf_counter s, as the REST route stamps it): (prediction, completion Unix s). A refusal or
    an exception becomes ``{"error": ..., "items": []}`` (counted, never shown)."""
    token = set_clock(RequestClock(arrived_pc))
    try:
        resp, _ = await t(body)
        return resp["predictions"][0], time.time()
    except Shed as exc:
        return {"error": f"shed: {exc}"[:60], "items": [], "fallback_reason": "shed"}, time.time()
    except Exception as exc:  # noqa: BLE001 - a failed answer is a figure, not the end of the run
        return {
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}",
            "items": [],
            "fallback_reason": "error",
        }, time.time()
    finally:
        reset_clock(token)


async def burst(t: CheckoutTransformer, bodies: list[dict]) -> list[tuple[dict, float]]:
    """All of ``bodies`` at once, arrived now."""
    now = time.perf_counter()
    return list(await asyncio.gather(*(answer(t, b, now) for b in bodies)))


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


# ---------------------------------------------------------------------------------- checking


# ---------------------------------------------------------------------------------- the run
class Bench:
    """Redis, the publisher, the replica and the transformer, and the phases run on them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url, self.proc = start_redis_server(extra_args=("--enable-debug-command", "yes"))
        try:
            self._start(args)
        except BaseException:
            kill_redis_server(self.proc)  # no private redis-server left behind by a failed start
            raise

    def _start(self, args: argparse.Namespace) -> None:
        import redis

        self.r = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=10.0)
        self.stream = stream_key(PREFIX)
        workdir = Path(tempfile.mkdtemp(prefix="bench-inv-"))
        self.bundle = build_bundle(workdir, args.listings, args.users)
        self.listing_ids = self.bundle.catalog.listing_id.tolist()
        self.lat: list[float] = []
        self.measure_lat = False
        self.applied: dict[str, float] = {}  # adversarial entry id -> when the replica applied it
        self.replica = ReplicaInventoryStore(
            self.url,
            prefix=PREFIX,
            max_lag_s=args.max_lag_s,
            in_play_s=900.0,
            fence_max_wait_s=args.fence_ms / 1e3,
            on_applied=self._on_applied,
        ).start()
        assert self.replica.wait_ready(30), "replica not ready"
        rec = Recommender(
            self.bundle, TableUserFeatures(self.bundle.users), self.replica, unproven=args.unproven
        )
        self.t = CheckoutTransformer(rec, None, numpy_scorer())
        self.bodies = make_bodies(3000, args.users, np.asarray(self.listing_ids), seed=1)
        self.truth = Truth()
        ctx = mp.get_context("spawn")
        self.rate, self.mode, self.stop = ctx.Value("d", 0.0), ctx.Value("i", 0), ctx.Event()
        self.sent, ready = ctx.Value("q", 0), ctx.Event()
        self.pub = ctx.Process(
            target=publisher,
            args=(
                self.url,
                self.stream,
                self.listing_ids,
                self.rate,
                self.mode,
                self.stop,
                self.sent,
                ready,
            ),
            daemon=True,
        )
        self.pub.start()
        assert ready.wait(120), "publisher did not start"
        self.redis_alive = True

    def _on_applied(self, entries: list[tuple[str, dict[str, str]]], applied_at: float) -> None:
        if self.measure_lat:
            self.lat.extend(
                applied_at - int(f["bench_pub_ns"]) / 1e9 for _, f in entries if "bench_pub_ns" in f
            )
        if self.args.trace_applied:
            self.applied.update((eid, applied_at) for eid, _ in entries)
        else:
            self.applied.update((eid, applied_at) for eid, f in entries if "bench_adv" in f)

    def close(self) -> None:
        """Stop the publisher, Redis and the replica."""
        self.stop.set()
        kill_redis_server(self.proc)
        self.replica.close()

    def fence_delta(self, before: dict[str, Any]) -> dict[str, Any]:
        """The fence's counts since ``before`` (a ``FenceStats.as_dict()``), with wait quantiles."""
        assert self.replica.fence is not None
        now = self.replica.fence.stats.as_dict()
        out = {
            k: now[k] - before[k]
            for k in (
                "lookups",
                "proven_no_wait",
                "fenced",
                "timed_out",
                "failed",
                "reads",
                "read_errors",
            )
        }
        hist = [a - b for a, b in zip(now["wait_hist"], before["wait_hist"], strict=True)]
        edges = [*now["wait_buckets_s"], float("inf")]
        cum = np.cumsum(hist)
        for q in (0.5, 0.99, 0.999):
            k = int(np.searchsorted(cum, q * cum[-1])) if cum[-1] else -1
            out[f"wait_p{q * 100:g}_ms_at_most"] = edges[k] * 1e3 if k >= 0 else None
        out["wait_hist"] = dict(zip([f"<={e * 1e3:g}ms" for e in edges], hist, strict=True))
        waited = out["fenced"] + out["timed_out"] + out["failed"]
        out["lookups_per_read"] = round(waited / out["reads"], 2) if out["reads"] else None
        return out

    # ------------------------------------------------------------------ phase 1
    def phase_latency(self) -> dict[str, Any]:
        """50 checkouts/s (admission as the manifests) while the publisher runs at ``--rate``."""
        a = self.args
        self.t.configure_overload("refuse", DEADLINE_MS, MAX_INFLIGHT, MAX_QUEUE_MS, RESERVE_MS)
        self.lat.clear()
        self.measure_lat = True
        sent0, fence0, load0 = self.sent.value, self.replica.fence.stats.as_dict(), load_avg()
        self.mode.value, self.rate.value = 0, a.rate
        chk = PhaseCheck(a.max_lag_s)
        lat_ms: list[float] = []

        async def run() -> float:
            t0, i = time.perf_counter(), 0
            while time.perf_counter() - t0 < a.latency_s:
                arrival, pc = time.time(), time.perf_counter()
                res = await answer(self.t, self.bodies[i % len(self.bodies)], pc)
                lat_ms.append((time.perf_counter() - pc) * 1e3)
                chk.add(arrival, [res])
                i += 1
                await asyncio.sleep(max(0.0, t0 + i / 50 - time.perf_counter()))
            return time.perf_counter() - t0

        wall = asyncio.run(run())
        self.rate.value = 0.0
        time.sleep(1.0)
        self.measure_lat = False
        chk.check(self.truth.read(self.r, self.stream), self.applied)
        x = np.asarray(self.lat) * 1e3
        figs: dict[str, Any] = {
            "target_events_per_s": a.rate,
            "events_sent": self.sent.value - sent0,
            "events_per_s": round((self.sent.value - sent0) / wall, 1),
            "events_measured": int(x.size),
            "checkouts_per_s": round(chk.answers / wall, 1),
        }
        if x.size:
            figs.update(
                {f"p{q}_ms": round(float(np.percentile(x, q)), 2) for q in (50, 90, 99, 99.9)},
                max_ms=round(float(x.max()), 2),
                share_over_1s=float((x > 1000).mean()),
            )
        figs["answer_latency_ms"] = {
            f"p{q}": round(float(np.percentile(lat_ms, q)), 2) for q in (50, 99)
        } | {"max": round(max(lat_ms), 2), "deadline_ms": DEADLINE_MS}
        figs["answers_check"] = chk.figures(wall)
        figs["fence"] = self.fence_delta(fence0)
        figs["load_avg_start_end"] = [load0, load_avg()]
        return figs

    # ------------------------------------------------------------------ phase 2
    def phase_consumer(self) -> dict[str, Any]:
        """The consumer process SIGKILLed a third of the way through the stream and restarted."""
        total = int(self.r.xlen(self.stream))
        load0 = load_avg()

        def read_so_far() -> int:
            gs = self.r.xinfo_groups(self.stream)
            return next((int(g["entries-read"] or 0) for g in gs if g["name"] == GROUP), 0)

        t0 = time.time()
        first = _consumer_proc(self.url, "first", "0")
        while read_so_far() < total // 3 and time.time() - t0 < 300:
            time.sleep(0.05)
        end = time.time() + 10  # kill it holding a batch: read, maybe applied, not acknowledged
        while int(self.r.xpending(self.stream, GROUP)["pending"]) == 0 and time.time() < end:
            pass
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        killed_at = read_so_far()
        pending_at_kill = int(self.r.xpending(self.stream, GROUP)["pending"])
        port = free_port()
        second = _consumer_proc(self.url, "second", str(port), "--claim_idle_ms", "0")
        metrics, lag = "", -1.0
        while time.time() - t0 < 600:
            time.sleep(0.5)
            with contextlib.suppress(OSError):
                metrics = (
                    urllib.request.urlopen(  # noqa: S310 - loopback
                        f"http://127.0.0.1:{port}/metrics", timeout=5
                    )
                    .read()
                    .decode()
                )
                lag = metric_value(metrics, "checkout_recs_inventory_consumer_lag_entries")
                if lag == 0:
                    break
        wall = time.time() - t0
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(30)
        events = [decode_event(f) for _, f in xrange_all(self.r, self.stream)]
        ref = MemoryInventoryStore(clock=time.time)
        ref.apply_batch(events)
        seqs = {int(k): int(v) for k, v in self.r.hgetall(f"{PREFIX}:seq").items()}
        state = compare_state(self.r, ref, self.listing_ids)
        outcomes = {
            o: metric_value(metrics, f'checkout_recs_inventory_consumer_events{{outcome="{o}"}}')
            for o in ("applied", "stale", "rejected")
        }
        return {
            "stream_entries": total,
            "entries_read_when_killed": killed_at,
            "pending_when_killed": pending_at_kill,
            "second_consumer_events": outcomes,
            "lag_entries_at_end": lag,
            "pending_at_end": int(self.r.xpending(self.stream, GROUP)["pending"]),
            "last_sequence_per_listing_equal": seqs == ref._seq,
            **state,
            "listings": len(ref._seq),
            "wall_s": round(wall, 1),
            "entries_per_s": round(total / wall, 1),
            "load_avg_start_end": [load0, load_avg()],
        }

    # ------------------------------------------------------------------ phase 3
    def phase_fence_cost(self) -> dict[str, Any]:
        """Sequential answers and bare lookups, fence on (this replica) and off (a second one),
        alternating call by call, on an idle stream: every fenced lookup makes a read."""
        a = self.args
        self.rate.value = 0.0
        time.sleep(0.5)
        self.t.configure_overload("refuse", DEADLINE_MS, MAX_INFLIGHT, MAX_QUEUE_MS, RESERVE_MS)
        off = ReplicaInventoryStore(
            self.url, prefix=PREFIX, max_lag_s=a.max_lag_s, fence_max_wait_s=0
        ).start()
        assert off.wait_ready(60)
        rec_off = Recommender(self.bundle, TableUserFeatures(self.bundle.users), off)
        t_off = CheckoutTransformer(rec_off, None, numpy_scorer())
        t_off.configure_overload("refuse", DEADLINE_MS, MAX_INFLIGHT, MAX_QUEUE_MS, RESERVE_MS)
        ids = np.asarray(self.listing_ids[:450])  # about the request path's lookup size
        wall: dict[str, list[float]] = collections.defaultdict(list)
        cpu: dict[str, float] = collections.defaultdict(float)
        fence0, load0 = self.replica.fence.stats.as_dict(), load_avg()

        async def run() -> None:
            for i in range(-20, a.fence_cost_n):  # 20 of each to warm up, then measured
                pair = (("on", self.t, self.replica), ("off", t_off, off))
                for name, t, rep in pair if i % 2 else pair[::-1]:  # alternate who goes first
                    c0, pc = time.process_time(), time.perf_counter()
                    await answer(t, self.bodies[i % 3000], pc)
                    if i >= 0:
                        wall[f"answer_{name}"].append((time.perf_counter() - pc) * 1e3)
                        cpu[f"answer_{name}"] += time.process_time() - c0
                    c0, pc = time.process_time(), time.perf_counter()
                    await rep.unavailable_async(ids)
                    if i >= 0:
                        wall[f"lookup_{name}"].append((time.perf_counter() - pc) * 1e3)
                        cpu[f"lookup_{name}"] += time.process_time() - c0
                    await asyncio.sleep(0.002)  # the tails idle between calls, as between requests

        asyncio.run(run())
        off.close()
        out: dict[str, Any] = {}
        for k, v in sorted(wall.items()):
            out[k] = {
                "calls": len(v),
                "wall_p50_ms": round(float(np.percentile(v, 50)), 3),
                "wall_p99_ms": round(float(np.percentile(v, 99)), 3),
                "wall_mean_ms": round(float(np.mean(v)), 3),
                "process_cpu_ms_per_call": round(cpu[k] / len(v) * 1e3, 3),
            }
        for kind in ("answer", "lookup"):
            on, of = out[f"{kind}_on"], out[f"{kind}_off"]
            out[f"{kind}_fence_cost"] = {
                "wall_mean_ms": round(on["wall_mean_ms"] - of["wall_mean_ms"], 3),
                "wall_p50_ms": round(on["wall_p50_ms"] - of["wall_p50_ms"], 3),
                "process_cpu_ms": round(
                    on["process_cpu_ms_per_call"] - of["process_cpu_ms_per_call"], 3
                ),
            }
        out["fence"] = self.fence_delta(fence0)
        out["stream"] = "idle (no events): every fenced lookup needs its own read, the worst case"
        out["load_avg_start_end"] = [load0, load_avg()]
        return out

    # ------------------------------------------------------------------ phases 4-6
    def phase_bursts(
        self, name: str, target: int, publish: bool = True, stalls: list[dict] | None = None
    ) -> dict[str, Any]:
        """Cycles of [4 adversarial events, then 300 concurrent checkouts] until ``target`` answers.

        The events are sent from a helper thread and waited for 50 ms at most: while Redis is
        stalled the burst goes ahead (its events reach the stream, and the truth, when Redis wakes
        up). Every ``--check_every`` bursts the truth is read on and the answers checked."""
        a = self.args
        self.t.configure_overload("off", DEADLINE_MS, MAX_INFLIGHT, MAX_QUEUE_MS, RESERVE_MS)
        chk = PhaseCheck(a.max_lag_s, stalls=stalls if stalls is not None else [])
        pool = concurrent.futures.ThreadPoolExecutor(1)
        relist: collections.deque = collections.deque()
        fence0, loads = self.replica.fence.stats.as_dict(), [load_avg()]
        t0 = time.perf_counter()

        def check() -> None:
            if self.redis_alive:
                self.truth.read(self.r, self.stream)
            chk.check(self.truth, self.applied)

        async def run() -> None:
            last = await burst(self.t, self.bodies[:BURST])
            next_progress, k = time.perf_counter() + a.progress_s, 0
            while chk.answers + len(chk.pending) * BURST < target:
                if publish:
                    sent = pool.submit(
                        publish_events,
                        self.r,
                        self.stream,
                        adversarial_events(last, relist),
                        maxlen=0,
                        extra={"bench_adv": "1"},
                    )
                    concurrent.futures.wait([sent], timeout=0.05)
                k = (k + BURST) % len(self.bodies)
                arrival = time.time()
                last = await burst(self.t, self.bodies[k : k + BURST])
                chk.add(arrival, last)
                chk.bursts += 1
                if len(chk.pending) >= a.check_every:
                    check()
                if time.perf_counter() >= next_progress:
                    next_progress += a.progress_s
                    loads.append(load_avg())
                    done = chk.answers + len(chk.pending) * BURST
                    el = time.perf_counter() - t0
                    print(
                        f"  {name}: {done:,}/{target:,} answers, {done / el:.0f}/s, "
                        f"{chk.bad} shown unavailable, reasons {dict(chk.reasons)}, "
                        f"load {loads[-1]}",
                        flush=True,
                    )

        asyncio.run(run())
        pool.shutdown(wait=True)
        check()
        out = chk.figures(time.perf_counter() - t0)
        out["fence"] = self.fence_delta(fence0)
        out["load_avg_samples"] = loads + [load_avg()]
        return out

    def phase_slow(self) -> dict[str, Any]:
        """Bursts while a thread stalls Redis."""
        self.mode.value, self.rate.value = 1, self.args.bg_rate
        stall_stop, stalls = threading.Event(), list[dict[str, float]]()
        staller = threading.Thread(
            target=stall_redis, args=(self.url, stall_stop, stalls), daemon=True
        )
        staller.start()
        out = self.phase_bursts("slow", self.args.answers_slow, stalls=stalls)
        stall_stop.set()
        staller.join(15)
        out["redis_stalls"] = {
            "debug_sleep_0.25s": sum(1 for x in stalls if x["s"] == 0.25),
            "debug_sleep_3s": sum(1 for x in stalls if x["s"] == 3.0),
        }
        return out

    def phase_down(self) -> dict[str, Any]:
        """The 4 listings shown most sold, Redis killed right after; bursts from memory."""
        self.rate.value = 0.0
        self.stop.set()
        self.pub.join(10)
        self.t.configure_overload("off", DEADLINE_MS, MAX_INFLIGHT, MAX_QUEUE_MS, RESERVE_MS)
        last = asyncio.run(burst(self.t, self.bodies[:BURST]))
        final = adversarial_events(last, collections.deque())
        publish_events(self.r, self.stream, final, maxlen=0, extra={"bench_adv": "1"})
        self.truth.read(self.r, self.stream)  # sold just before the outage ...
        kill_redis_server(self.proc)  # ... and Redis is gone right after
        self.redis_alive = False
        out = self.phase_bursts("down", self.args.answers_down, publish=False)
        out["sold_right_before_the_kill"] = [e.listing_id for e in final]
        return out


def _consumer_proc(url: str, name: str, port: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inference.inventory_consumer",
            "--redis_url",
            url,
            "--redis_prefix",
            PREFIX,
            "--consumer",
            name,
            "--batch",
            "500",
            "--block_ms",
            "100",
            "--progress_every_s",
            "5",
            "--metrics_port",
            port,
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


# ---------------------------------------------------------------------------------- output


def main() -> None:
    """Run the phases and write the JSON (after each phase) and the HTML summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listings", type=int, default=2000)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--rate", type=float, default=10_000.0, help="events/s of the latency phase")
    ap.add_argument("--bg_rate", type=float, default=100.0, help="events/s of the answer phases")
    ap.add_argument("--latency_s", type=float, default=30.0)
    ap.add_argument("--answers_healthy", type=int, default=30_000)
    ap.add_argument("--answers_slow", type=int, default=30_000)
    ap.add_argument("--answers_down", type=int, default=30_000)
    ap.add_argument("--fence_cost_n", type=int, default=1000, help="calls per kind and mode")
    ap.add_argument("--check_every", type=int, default=20, help="bursts between truth reads")
    ap.add_argument(
        "--trace_applied",
        action="store_true",
        help="remember when the replica applied every entry, not only the adversarial ones "
        "(violations then say it for background events too; memory grows with the stream)",
    )
    ap.add_argument("--progress_s", type=float, default=30.0)
    ap.add_argument("--max_lag_s", type=float, default=1.0)
    ap.add_argument("--fence_ms", type=float, default=500.0)
    ap.add_argument(
        "--unproven",
        default="known",
        choices=["known", "refuse"],
        help="the transformer's --inventory_unproven: answer stale lookups from the known state, "
        "or refuse them (503); refused calls count in 'answers' and 'refused', never as shown",
    )
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--resume", action="store_true", help="keep the phases already in --out")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/inventory_stream.json")
    args = ap.parse_args()
    wanted = [p for p in PHASES if p in args.phases.split(",")]
    payload: dict[str, Any] = {"phases": {}}
    if args.resume and args.out.exists():
        payload = json.loads(args.out.read_text())
        wanted = [p for p in wanted if p not in payload["phases"]]
    this = " ".join([".venv/bin/python", *sys.argv])
    payload.setdefault("commands", []).append(
        {
            "command": this,
            "phases": wanted,
            "niceness": os.nice(0),
            "started": time.ctime(),
            "load_avg": load_avg(),
        }
    )
    payload.update(
        command=payload.get("command") or this,
        machine={
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "2-core box shared with other work; load averages per phase",
        },
        setup={
            "listings": args.listings,
            "users": args.users,
            "scorer": "numpy random projection (not the ranker)",
            "request_path": "CheckoutTransformer.__call__ in-process (kserve Model.__call__ -> "
            "preprocess/predict/postprocess), one asyncio loop, arrival stamped as the REST route does",
            "inventory": f"--inventory replica, max_lag_s={args.max_lag_s}, in_play_s=900, "
            f"fence {args.fence_ms:g} ms, --inventory_unproven {args.unproven}",
            "admission": "latency and fence_cost phases: --overload refuse (the manifests'); burst "
            "phases: --overload off (every call answered), deadline 1000 ms bounding the fence",
            "events": "latency phase random; answer phases the checkout flow (CheckoutFlow)",
            "burst": BURST,
            "bg_events_per_s": args.bg_rate,
            "truth": "strict: events in the stream before the request arrived",
        },
        target_answers=1_000_000,
    )
    started = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops Redis and the rest
    bench = Bench(args)
    steps = {
        "latency": bench.phase_latency,
        "consumer": bench.phase_consumer,
        "fence_cost": bench.phase_fence_cost,
        "healthy": lambda: bench.phase_bursts("healthy", args.answers_healthy),
        "slow": bench.phase_slow,
        "down": bench.phase_down,
    }
    try:
        for name in wanted:
            if name == "healthy":
                bench.mode.value, bench.rate.value = 1, args.bg_rate
            print(f"{name} ... (load {load_avg()})", flush=True)
            t0 = time.time()
            payload["phases"][name] = steps[name]()
            payload["phases"][name]["phase_wall_s"] = round(time.time() - t0, 1)
            summarize(payload)
            payload["replica"] = bench.replica.stats()
            payload["wall_s"] = round(payload.get("wall_s", 0) + time.time() - t0, 1)
            payload["complete"] = all(p in payload["phases"] for p in PHASES)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(payload, indent=2, default=str))
            write_html(payload, args.out.with_suffix(".html"))
            brief = {
                k: v for k, v in payload["phases"][name].items() if not isinstance(v, dict | list)
            }
            print(f"{name}: {brief}", flush=True)
    finally:
        bench.close()
    print(
        json.dumps(
            {
                k: payload.get(k)
                for k in (
                    "total_answers",
                    "total_with_unavailable_shown",
                    "total_with_unavailable_shown_older_than_bound",
                )
            }
        ),
        f"wall {time.time() - started:.0f} s; figures written to {args.out}",
        flush=True,
    )


if __name__ == "__main__":
    main()
