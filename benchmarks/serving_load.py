"""Load generation and measurement for the serving benchmark (``benchmarks/serving.py``).

* ``open_loop`` — requests at a fixed rate whatever the answers (no coordinated omission):
  latency is measured from each request's *scheduled* send time;
* ``sequential`` — one request at a time: latency without queueing, and CPU ms per request of
  each server process (the load-insensitive figure);
* ``stage_totals`` — the transformer's per-stage Prometheus histograms (``_sum``/``_count``),
  so a scenario's per-stage mean wall ms is the difference of two scrapes;
* ``rss_mb`` / ``cpu_s`` — memory and CPU of a process tree (psutil).

The client is aiohttp (one keep-alive pool): it shares the two cores with the servers, and
costs 0.17 ms CPU per request against httpx's 0.63 ms (same bodies, a trivial kserve model).
Bodies are JSON-encoded once, before the clock starts, as a load generator sends prepared requests;
the generator runs on uvloop (``run``) and reads answers with orjson, so that less of the client's
own CPU lands inside the measured latency.

Sends are on time: asyncio's timers wake up to ~1 ms late (the selector's timeout is rounded up
to whole milliseconds) and the lateness is charged to the server, since latency counts from the
scheduled time. ``open_loop`` sleeps until ``SPIN_S`` before each send and then yields to the
loop until the send is due (p50 lateness 1.0 -> 0.07 ms, p95 2.2 -> 0.15 ms on this machine); the
lateness it still has is reported (``send_late_p50_ms`` / ``send_late_p95_ms``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

#: Before each scheduled send the generator stops sleeping this early and yields until due (s).
SPIN_S = 0.0015
_JSON = {"content-type": "application/json"}

ROOT = Path(__file__).resolve().parents[1]

STAGES = ("features", "retrieval", "inventory", "rank_input", "rank", "policy", "total")


def _pct(ms: np.ndarray) -> dict[str, float]:
    if not ms.size:
        return {
            "p50_ms": float("nan"),
            "p95_ms": float("nan"),
            "p99_ms": float("nan"),
            "max_ms": float("nan"),
        }
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


async def open_loop(
    url: str,
    bodies: list[dict],
    rate: float,
    duration: float,
    on_tick: Callable[[float], None] | None = None,
    timeout_s: float = 10.0,
    spin_s: float = SPIN_S,
) -> dict[str, Any]:
    """Send ``rate`` requests/s for ``duration`` s to a v1 URL regardless of answers.

    ``spin_s``: how long before each send the generator stops sleeping and yields until due
    (``_until``); the spinning costs the generator about that much CPU per request, so a
    throughput run, where the generator's CPU is taken from the servers, uses 0 (sends up to ~1 ms
    late, charged to the server's latency: conservative).

    Returns sent / ok / errors / http_5xx counts, throughput (answers/s), p50/p95/p99/max latency
    in ms from the scheduled send time (answered requests only), the share answered by the
    ranker, the fallback reasons seen and ``over_50ms``: up to 50 (unix time of the scheduled
    send, latency ms) pairs of answers slower than 50 ms (to line them up with server events). ``on_tick(elapsed_s)`` runs before each send.
    """
    import aiohttp

    n = int(rate * duration)
    payloads = encode_bodies(bodies)
    lat, status, late = np.full(n, np.nan), np.zeros(n, int), np.zeros(n)
    policies: list[str | None] = [None] * n
    reasons: list[str | None] = [None] * n
    conn = aiohttp.TCPConnector(limit=512, force_close=False)
    async with aiohttp.ClientSession(
        connector=conn, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as client:
        t0 = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            sched = t0 + i / rate
            late[i] = time.perf_counter() - sched
            try:
                async with client.post(url, data=payloads[i % len(payloads)], headers=_JSON) as r:
                    status[i] = r.status
                    if r.status == 200:
                        pred = orjson.loads(await r.read())["predictions"][0]
                        policies[i], reasons[i] = pred["policy"], pred["fallback_reason"]
                    else:
                        await r.read()
            except (aiohttp.ClientError, TimeoutError):
                status[i] = -1
            lat[i] = time.perf_counter() - sched

        tasks = []
        for i in range(n):
            await _until(t0 + i / rate, spin_s)
            if on_tick is not None:
                on_tick(i / rate)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        start_unix = time.time() - (time.perf_counter() - t0)
    ok = status == 200
    slow = np.flatnonzero(
        ok & (lat > 0.05)
    )  # answers over 50 ms: when (unix s of the scheduled send), how long
    outliers = [(round(start_unix + i / rate, 3), round(float(lat[i] * 1e3), 1)) for i in slow[:50]]
    fb = pd.Series([r for r in reasons if r], dtype=object).value_counts().to_dict()
    return {
        "rate_rps": rate,
        "duration_s": duration,
        "sent": n,
        "ok": int(ok.sum()),
        "errors": int((~ok).sum()),
        "http_5xx": int((status >= 500).sum()),
        "throughput_rps": float(ok.sum() / wall),
        **_pct(lat[ok] * 1e3),
        "ranker_share": float(np.mean([p == "ranker" for p in policies])),
        "fallback_reasons": fb,
        "over_50ms": outliers,
        "send_late_p50_ms": float(np.percentile(late, 50) * 1e3),
        "send_late_p95_ms": float(np.percentile(late, 95) * 1e3),
    }


def run(coro: Any) -> Any:
    """Run a load coroutine to completion on uvloop (asyncio's loop when uvloop is missing)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def encode_bodies(bodies: list[dict]) -> list[bytes]:
    """The request bodies as JSON bytes (encoded once, outside the timed sends)."""
    import json

    return [json.dumps(b).encode() for b in bodies]


async def _until(when: float, spin_s: float = SPIN_S) -> None:
    """Return at ``when`` (``time.perf_counter`` seconds): sleep until ``spin_s`` before, then yield
    to the loop (other sends and answers run) until due."""
    delay = when - time.perf_counter() - spin_s
    if delay > 0:
        await asyncio.sleep(delay)
    while time.perf_counter() < when:
        await asyncio.sleep(0)


async def sequential(
    url: str, bodies: list[dict], n: int, pids: dict[str, int], gap_s: float = 0.002
) -> dict[str, Any]:
    """``n`` requests one after another, ``gap_s`` seconds apart: latency percentiles (ms) and CPU
    ms/request per process. With the open loop's idle time between requests (``gap_s`` ~ 12 ms at
    50 rps) it shows what idleness alone costs on the machine (no request ever waits for another)."""
    import aiohttp

    payloads = encode_bodies(bodies)
    async with aiohttp.ClientSession() as client:
        for b in payloads[:20]:  # warm connections
            async with client.post(url, data=b, headers=_JSON) as r:
                await r.read()
        cpu0 = cpu_of(pids)
        ms = []
        for i in range(n):
            t = time.perf_counter()
            async with client.post(url, data=payloads[i % len(payloads)], headers=_JSON) as r:
                await r.read()
            ms.append((time.perf_counter() - t) * 1e3)
            await asyncio.sleep(gap_s)
        cpu = cpu_ms_per_request(pids, cpu0, n)
    return {"requests": n, **_pct(np.asarray(ms)), "cpu_ms_per_request": cpu}


def _families(metrics_url: str) -> list[Any]:
    """The metric families on ``/metrics`` ([] when the server does not answer within 30 s)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(metrics_url, timeout=30.0) as r:  # noqa: S310 - loopback only
            text = r.read().decode()
    except OSError:  # a saturated server may not answer in time: no figures then
        return []
    return list(text_string_to_metric_families(text))


def decision_log_rows(metrics_url: str) -> dict[str, float]:
    """The transformer's decision-log row counts by state (accepted, written, pending, spilled, dropped)."""
    return {
        s.labels["state"]: s.value
        for fam in _families(metrics_url)
        if fam.name == "checkout_recs_decision_log_rows"
        for s in fam.samples
    }


def stage_totals(metrics_url: str) -> dict[str, tuple[float, float]]:
    """Per stage (sum of seconds, count) of ``checkout_recs_stage_seconds`` on ``/metrics``
    ({} when the server does not answer within 30 s)."""
    out: dict[str, list[float]] = {}
    for fam in _families(metrics_url):
        if fam.name != "checkout_recs_stage_seconds":
            continue
        for s in fam.samples:
            stage = s.labels.get("stage")
            if stage and s.name.endswith("_sum"):
                out.setdefault(stage, [0.0, 0.0])[0] = s.value
            elif stage and s.name.endswith("_count"):
                out.setdefault(stage, [0.0, 0.0])[1] = s.value
    return {k: (v[0], v[1]) for k, v in out.items()}


def stage_means_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Mean wall ms per stage between two ``stage_totals`` scrapes."""
    out = {}
    for k in STAGES:
        s1, c1 = after.get(k, (0.0, 0.0))
        s0, c0 = before.get(k, (0.0, 0.0))
        if c1 > c0:
            out[k] = (s1 - s0) / (c1 - c0) * 1e3
    return out


def hop_bench(rest_url: str, grpc_target: str, d: int, n_rows: int = 300, calls: int = 200) -> dict:
    """The transformer->predictor hop alone: p50/p95 ms per protocol for an FP32 [n_rows, d] matrix."""
    from inference.predictor_client import PredictorClient

    x = np.random.default_rng(0).normal(size=(n_rows, d)).astype(np.float32)

    async def run(proto: str) -> dict:
        c = PredictorClient(rest_url, grpc_target, protocol=proto)
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


def rss_mb(pid: int) -> float:
    """RSS of a process and its children, MiB."""
    import psutil

    p = psutil.Process(pid)
    return (
        p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
    ) / 2**20


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children."""
    import psutil

    p = psutil.Process(pid)
    return sum(sum(q.cpu_times()[:2]) for q in [p, *p.children(recursive=True)])


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree (``cpu_s``)."""
    return {k: cpu_s(p) for k, p in pids.items()}


def cpu_ms_per_request(pids: dict[str, int], before: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per request of each named process tree since ``before`` (``cpu_of``), over ``n``
    requests (at least 1)."""
    return {k: (cpu_s(p) - before[k]) * 1e3 / max(n, 1) for k, p in pids.items()}


def open_loop_process(
    url: str,
    bodies: list[dict],
    rate: float,
    duration: float,
    spin_s: float = 0.0,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """``open_loop`` run by a process of its own (``python -m benchmarks.serving_load``), so the
    generator's CPU is measured apart from the caller's and the servers'.

    Returns ``open_loop``'s dict plus ``generator``: its CPU seconds during the sends and answers,
    CPU ms per request sent, and its share of one core (CPU s / wall s).
    """
    with tempfile.TemporaryDirectory() as tmp:
        body_file, out = Path(tmp) / "bodies.json", Path(tmp) / "result.json"
        body_file.write_bytes(orjson.dumps(bodies))
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.serving_load",
            "--url",
            url,
            "--bodies",
            str(body_file),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--spin_ms",
            str(spin_s * 1e3),
            "--timeout_s",
            str(timeout_s),
            "--out",
            str(out),
        ]
        subprocess.run(cmd, check=True, cwd=ROOT)
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def _cpu_self_s() -> float:
    """CPU seconds (user + system) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``open_loop_process``: one open-loop run, its result (with the generator's own
    CPU) written as JSON to ``--out``."""
    ap = argparse.ArgumentParser(description="open-loop load from a process of its own")
    ap.add_argument("--url", required=True)
    ap.add_argument("--bodies", type=Path, required=True, help="JSON list of v1 request bodies")
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--spin_ms", type=float, default=0.0)
    ap.add_argument("--timeout_s", type=float, default=10.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    bodies = orjson.loads(args.bodies.read_bytes())
    c0, t0 = _cpu_self_s(), time.perf_counter()
    res = run(
        open_loop(
            args.url,
            bodies,
            args.rate,
            args.duration,
            timeout_s=args.timeout_s,
            spin_s=args.spin_ms / 1e3,
        )
    )
    cpu, wall = _cpu_self_s() - c0, time.perf_counter() - t0
    res["generator"] = {
        "pid": os.getpid(),
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_request": cpu * 1e3 / max(res["sent"], 1),
        "core_share": cpu / wall,
        "spin_ms": args.spin_ms,
    }
    args.out.write_text(json.dumps(res, default=float))


if __name__ == "__main__":
    main()
