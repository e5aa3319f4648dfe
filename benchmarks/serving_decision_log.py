"""How long the decision-log writer stalls the event loop: the current writer vs one whole-part write.

An asyncio loop ticks every millisecond (a stand-in for the request path) and records how late
each tick wakes while a part of ``--rows`` decision rows is converted and published:

* ``none``  — no writer work (the noise floor of this machine);
* ``whole`` — the earlier writer's way: one ``pa.Table.from_pylist`` over the whole part and the
  parquet write in a background thread (it held the GIL ~12 ms per 1,500 rows);
* ``chunked`` — ``DecisionLog`` as shipped: rows appended by the loop, converted by the writer
  thread in ``chunk_rows`` chunks with the GIL yielded between them, then published.

Modes alternate ``--repeats`` times so machine load hits all alike. Reports, per mode, the tick
lateness p50 / p99 / max (ms) and the request-path ``submit`` cost (µs per row), and the load average.

``convert_us_per_chunk`` is the writer thread's cost of one ``chunk_rows`` chunk (median µs over
``--convert_repeats`` interleaved tries): ``from_pylist`` alone (the writer before quarantine),
``to_batches`` on a good chunk (conversion + the contract check: the good path) and ``to_batches`` on
a chunk with one poisoned row (the bisecting fallback).

Usage: ``python -m benchmarks.serving_decision_log [--rows 1500 --repeats 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from checkout_recs.contract import DECISIONS
from checkout_recs.serving.decision_writer import to_batches
from checkout_recs.serving.decisions import KIND, DecisionLog
from checkout_recs.storage import LocalArtifactStore, new_version
from checkout_recs.synthetic.serving import decision_row


def _whole_part(rows: list[dict], store: LocalArtifactStore) -> None:
    """The earlier writer: the whole part converted in one call, then written and published."""
    table = pa.Table.from_pylist(rows, schema=DECISIONS)
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(table, Path(tmp) / "part-0.parquet")
        store.publish(KIND, new_version("d"), Path(tmp))


async def _ticks(window_s: float, start_work: threading.Event | None) -> np.ndarray:
    """Tick every 1 ms for ``window_s``; lateness of each wake-up (ms). Work starts after 50 ms."""
    late, t_end = [], time.perf_counter() + window_s
    started = False
    while (now := time.perf_counter()) < t_end:
        if not started and start_work is not None and now > t_end - window_s + 0.05:
            start_work.set()
            started = True
        target = time.perf_counter() + 0.001
        await asyncio.sleep(0.001)
        late.append((time.perf_counter() - target) * 1e3)
    return np.asarray(late)


def one_round(mode: str, rows: list[dict], root: Path, window_s: float) -> tuple[np.ndarray, float]:
    """One measurement window; returns (tick lateness ms, submit µs per row or nan)."""
    store = LocalArtifactStore(root / mode)
    go = threading.Event()
    submit_us = float("nan")
    if mode == "whole":

        def whole() -> None:
            go.wait()
            _whole_part(rows, store)

        worker = threading.Thread(target=whole)
        worker.start()
        late = asyncio.run(_ticks(window_s, go))
        worker.join()
    elif mode == "chunked":
        log = DecisionLog(
            store, rotate_rows=len(rows), rotate_s=3600, tick_s=0.01, spill_dir=root / "spill"
        )

        async def run() -> np.ndarray:
            task = asyncio.ensure_future(_ticks(window_s, None))
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            for r in rows:  # what the request path does, all at once (worst case for the writer)
                log.submit(r)
            nonlocal submit_us
            submit_us = (time.perf_counter() - t0) * 1e6 / len(rows)
            return await task

        late = asyncio.run(run())
        log.close()
        assert log.stats()["written"] == len(rows)
    else:
        late = asyncio.run(_ticks(window_s, None))
    return late, submit_us


def convert_cost(rows: list[dict], chunk_rows: int, repeats: int) -> dict[str, float]:
    """Median µs per ``chunk_rows`` chunk: bare ``from_pylist``, ``to_batches`` (good, one bad row)."""
    good = rows[:chunk_rows]
    poisoned = [*good[:-1], dict(good[-1], user_id=2**64 - 1)]
    ways: dict[str, Callable[[], object]] = {
        "from_pylist": lambda: pa.RecordBatch.from_pylist(good, schema=DECISIONS),
        "to_batches_good": lambda: to_batches(good),
        "to_batches_one_bad": lambda: to_batches(poisoned),
    }
    took: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            t0 = time.perf_counter()
            way()
            took[name].append((time.perf_counter() - t0) * 1e6)
    return {k: round(float(np.median(v)), 1) for k, v in took.items()}


def main() -> None:
    """Command line: print the figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1500)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--window_s", type=float, default=0.6)
    p.add_argument("--chunk_rows", type=int, default=128)
    p.add_argument("--convert_repeats", type=int, default=200)
    args = p.parse_args()
    rows = [decision_row(i) for i in range(args.rows)]
    modes = ("none", "whole", "chunked")
    late: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    submit: list[float] = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for m in modes[k % 3 :] + modes[: k % 3]:
                lat, us = one_round(m, rows, Path(tmp) / str(k), args.window_s)
                late[m].append(lat)
                if m == "chunked":
                    submit.append(us)
            print(f"  round {k + 1}/{args.repeats}", flush=True)
    loads.append(os.getloadavg()[0])
    out: dict[str, object] = {
        "rows_per_part": args.rows,
        "repeats": args.repeats,
        "load_avg": loads,
    }
    for m in modes:
        a = np.concatenate(late[m])
        per_round_max = [float(x.max()) for x in late[m]]
        out[m] = {
            "tick_late_p50_ms": round(float(np.percentile(a, 50)), 3),
            "tick_late_p99_ms": round(float(np.percentile(a, 99)), 3),
            "tick_late_max_ms_median_over_rounds": round(float(np.median(per_round_max)), 3),
            "tick_late_max_ms": round(float(a.max()), 3),
        }
    out["submit_us_per_row_median"] = round(float(np.median(submit)), 3)
    out["convert_us_per_chunk"] = {
        "chunk_rows": args.chunk_rows,
        **convert_cost(rows, args.chunk_rows, args.convert_repeats),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
