"""How much a short idle costs on this host: the same small operation hot and after an idle gap.

On the shared 2-vCPU VM the serving benchmark runs on, the servers sit idle between requests at
50 requests/s, and work resumed after an idle gap runs slower than the same work done back to
back (cold caches and TLBs: the host runs other work on the core meanwhile). How much slower
changes with the host's load through the day, and it moves the benchmark's latencies with it, so
the benchmark records this probe at its start and end beside its figures.

The operation is fixed and tiny: the sum of 5,000 float32 with numpy (20 KB of data, numpy's
reduction code). ``hot`` times it back to back; ``after_idle`` times it right after sleeping
``idle_ms``; the sleep itself is never inside the timed window.
"""

from __future__ import annotations

import time

import numpy as np


def cold_penalty(n: int = 200, idle_ms: float = 15.0) -> dict[str, float]:
    """Time the probe operation ``n`` times hot and ``n`` times after ``idle_ms`` of sleep.

    Returns
    -------
    ``hot_us_p50``, ``after_idle_us_p50``, ``after_idle_us_p95`` (microseconds), ``idle_ms``,
    ``ratio`` (after-idle p50 / hot p50).
    """
    data = np.random.default_rng(0).random(5_000, dtype=np.float32)
    hot, cold = np.empty(n), np.empty(n)
    data.sum()  # first call: numpy's lazy set-up, not the host
    for i in range(n):
        t = time.perf_counter()
        data.sum()
        hot[i] = time.perf_counter() - t
    for i in range(n):
        time.sleep(idle_ms / 1e3)
        t = time.perf_counter()
        data.sum()
        cold[i] = time.perf_counter() - t
    hot_p50, cold_p50 = (
        round(float(np.median(hot)) * 1e6, 1),
        round(float(np.median(cold)) * 1e6, 1),
    )
    return {
        "hot_us_p50": hot_p50,
        "after_idle_us_p50": cold_p50,
        "after_idle_us_p95": round(float(np.percentile(cold, 95)) * 1e6, 1),
        "idle_ms": idle_ms,
        "ratio": round(cold_p50 / max(hot_p50, 1e-3), 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(cold_penalty()))
