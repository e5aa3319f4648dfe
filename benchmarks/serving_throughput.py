"""Throughput of the shipped serving path: the highest open-loop rate answered at p99 <= 25 ms.

The ``throughput`` scenario of ``benchmarks/serving.py`` (issue #21 part 6): the design path as the
local overlay configures the pods (``serving.transformer_flags``: replica inventory with its read
fence, decision log, policy ConfigMap, Feast user features, binary REST hop to the predictor),
driven at each of ``--throughput_rates`` for ``--throughput_duration`` s by a load generator in
a process of its own (``serving_load.open_loop_process``, no spin-wait: its CPU is taken from the
same two cores). Per rate: latency percentiles from the scheduled send, errors, the ranker's
share of the answers, CPU ms per request of each server process and of the generator (and its
share of one core), RSS per process, per-stage wall means and the load average.

    .venv/bin/python benchmarks/serving.py --scenarios throughput --throughput_rates 150,200,250,300

With ``wrk`` on the PATH (Debian's ``wrk`` package; ``--wrk_connections``), a closed-loop run
follows: ``wrk`` (C, one thread, ``benchmarks/wrk_checkout.lua`` cycling the same bodies) keeps N
requests in flight, which finds the servers' saturation throughput with a client that costs
almost nothing. Its latencies are closed-loop (a slow answer delays the next send: coordinated
omission), so only the open-loop runs count for the p99 bar.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks import serving_load

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_checkout.lua"
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}

#: The target of issue #21 part 6: p99 at or under this (ms), no errors, every answer the ranker's.
P99_TARGET_MS = 25.0


def throughput_runs(
    s: Any,
    bodies: list[dict],
    rates: list[float],
    duration_s: float,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Open-loop runs at each rate (requests/s, ascending) against the running servers ``s``
    (``inference.launch.ServerHandles``); stops after the first rate whose p99 passes twice the
    target or that had errors.

    Returns ``runs`` (one dict per rate: ``serving_load.open_loop``'s figures plus
    ``cpu_ms_per_request`` per server process, ``generator`` CPU, ``rss_mb``, ``stage_wall_ms_mean``,
    ``load_avg``) and ``max_rate_p99_le_25ms`` (requests/s, None when no rate met it).
    """
    metrics_url = f"{s.transformer_url}/metrics"
    # warm-up: caches, connections, the replica's first reads (not measured)
    serving_load.open_loop_process(s.v1_url, bodies, min(rates), 5.0)
    runs = []
    for rate in rates:
        pids = s.pids()
        cpu0 = serving_load.cpu_of(pids)
        st0 = serving_load.stage_totals(metrics_url)
        r = serving_load.open_loop_process(s.v1_url, bodies, rate, duration_s)
        r["cpu_ms_per_request"] = serving_load.cpu_ms_per_request(pids, cpu0, r["sent"])
        r["stage_wall_ms_mean"] = serving_load.stage_means_ms(
            st0, serving_load.stage_totals(metrics_url)
        )
        r["rss_mb"] = {k: serving_load.rss_mb(p) for k, p in pids.items()}
        r["load_avg"] = os.getloadavg()
        r["met"] = meets_target(r)
        runs.append(r)
        g = r["generator"]
        say(
            f"throughput {rate:.0f} rps: served {r['throughput_rps']:.1f}, p50 {r['p50_ms']:.1f} / "
            f"p95 {r['p95_ms']:.1f} / p99 {r['p99_ms']:.1f} ms, errors {r['errors']}, ranker "
            f"{r['ranker_share']:.3f}; CPU ms/request "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_request"].items())
            + f", generator {g['cpu_ms_per_request']:.2f} ({g['core_share']:.0%} of a core); "
            f"load {r['load_avg'][0]:.1f}"
        )
        if r["errors"] or r["p99_ms"] > 2 * P99_TARGET_MS:
            break
    met = [r["rate_rps"] for r in runs if r["met"]]
    return {
        "duration_s": duration_s,
        "p99_target_ms": P99_TARGET_MS,
        "runs": runs,
        "max_rate_p99_le_25ms": max(met) if met else None,
    }


def meets_target(r: dict[str, Any]) -> bool:
    """Whether an open-loop run met part 6's bar: p99 <= 25 ms, no errors, every answer the ranker's,
    and the rate actually served (>= 98% of the offered rate)."""
    return bool(
        r["p99_ms"] <= P99_TARGET_MS
        and r["errors"] == 0
        and r["ranker_share"] == 1.0
        and r["throughput_rps"] >= 0.98 * r["rate_rps"]
    )


def _ms(text: str) -> float:
    """A wrk duration (``850.00us``, ``46.74ms``, ``1.02s``) in milliseconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Figures of a ``wrk --latency`` run with ``wrk_checkout.lua``: ``requests``, ``rps``,
    ``p50_ms`` / ``p75_ms`` / ``p90_ms`` / ``p99_ms``, ``non_2xx``, ``socket_errors`` and
    ``status`` ({HTTP code: answers})."""
    res: dict[str, Any] = {"status": {}, "non_2xx": 0, "socket_errors": 0}
    for line in out.splitlines():
        line = line.strip()
        if m := re.match(r"(50|75|90|99)%\s+(\S+)$", line):
            res[f"p{m.group(1)}_ms"] = _ms(m.group(2))
        elif m := re.match(r"(\d+) requests in", line):
            res["requests"] = int(m.group(1))
        elif m := re.match(r"Requests/sec:\s+([0-9.]+)", line):
            res["rps"] = float(m.group(1))
        elif m := re.match(r"Non-2xx or 3xx responses:\s+(\d+)", line):
            res["non_2xx"] = int(m.group(1))
        elif line.startswith("Socket errors:"):
            res["socket_errors"] = sum(int(n) for n in re.findall(r"\d+", line))
        elif m := re.match(r"status (\d+) (\d+)$", line):
            res["status"][int(m.group(1))] = int(m.group(2))
    return res


def closed_loop_wrk(
    s: Any, bodies: list[dict], connections: int, duration_s: float
) -> dict[str, Any] | None:
    """``wrk`` with ``connections`` requests in flight for ``duration_s`` s against the running
    servers: ``parse_wrk``'s figures plus CPU ms per request of each server process and of wrk
    (and its share of one core); None when ``wrk`` is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "bodies.jsonl"
        body_file.write_bytes(b"\n".join(orjson.dumps(b) for b in bodies) + b"\n")
        pids = s.pids()
        cpu0 = serving_load.cpu_of(pids)
        child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{int(duration_s)}s", "--latency", "-s"]
        cmd += [str(WRK_SCRIPT), s.v1_url, "--", str(body_file)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = parse_wrk(out)
    n = max(r.get("requests", 0), 1)
    wrk_cpu = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    r["connections"] = connections
    r["duration_s"] = duration_s
    r["cpu_ms_per_request"] = serving_load.cpu_ms_per_request(pids, cpu0, n)
    r["wrk_cpu_ms_per_request"] = wrk_cpu * 1e3 / n
    r["wrk_core_share"] = wrk_cpu / duration_s
    r["rss_mb"] = {k: serving_load.rss_mb(p) for k, p in pids.items()}
    r["load_avg"] = os.getloadavg()
    return r


def wrk_sweep(
    s: Any,
    bodies: list[dict],
    connections: list[int],
    duration_s: float,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``closed_loop_wrk`` at each number of requests in flight (ascending, 0s skipped) for
    ``duration_s`` s each.

    With one in flight the transformer never waits for work between requests (no idle gaps in
    which a shared host's caches go cold) and never queues: its CPU ms per request there is the
    path's cost when busy. More in flight finds the saturation throughput.

    Returns ``wrk_runs`` (one ``closed_loop_wrk`` dict per count; empty when ``wrk`` is not
    installed), ``wrk`` (the run that answered the most per second, None without runs) and
    ``wrk_saturation_rps`` (its answers/s, None without runs).
    """
    runs = []
    for c in sorted(c for c in connections if c > 0):
        r = closed_loop_wrk(s, bodies, c, duration_s)
        if r is None:
            say("wrk not installed: no closed-loop run")
            break
        runs.append(r)
        say(
            f"wrk, {c} in flight: {r.get('rps', 0):.1f} answers/s, p50 {r.get('p50_ms', 0):.1f} / "
            f"p99 {r.get('p99_ms', 0):.1f} ms, non-2xx {r['non_2xx']}; CPU ms/request "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_request"].items())
        )
    best = max(runs, key=lambda r: r.get("rps", 0.0)) if runs else None
    return {
        "wrk_runs": runs,
        "wrk": best,
        "wrk_saturation_rps": best.get("rps") if best else None,
    }
