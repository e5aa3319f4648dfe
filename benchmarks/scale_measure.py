"""Running and measuring one step of the scale ladder (``scale_steps``) in a child process.

``run_command`` runs a command and waits for it with ``os.wait4``: wall, user + system CPU and
peak RSS of the largest process of the tree (the child and its waited-for descendants); a
sampler adds the peak of the tree's summed RSS, prints progress and, over a limit, kills the
tree. ``measure_step`` runs a step's commands and reads its rows in / out; for ``serve`` it starts
``checkout-recs serve``, answers real checkouts over v1 while it runs, then stops it (SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

from benchmarks.scale_steps import CLEAN_BEFORE, CLI, ROOT, Rung, Step, parquet_rows
from inference.launch import free_port, is_ready


class TreeSampler(threading.Thread):
    """Every ``period_s``: the summed RSS of a process and its descendants (keeps the peak), and a
    progress line every ``report_s`` seconds."""

    def __init__(
        self,
        pid: int,
        label: str,
        limit_mb: float = 0.0,
        period_s: float = 0.5,
        report_s: float = 30.0,
    ):
        super().__init__(daemon=True)
        self.pid, self.label, self.period_s, self.report_s = pid, label, period_s, report_s
        self.limit_mb, self.killed = limit_mb, False
        self.peak_mb, self.stop = 0.0, threading.Event()

    def run(self) -> None:
        t0 = last = time.monotonic()
        while not self.stop.wait(self.period_s):
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs if p.is_running())
            except psutil.Error:
                continue
            self.peak_mb = max(self.peak_mb, rss / 2**20)
            if self.limit_mb and rss / 2**20 > self.limit_mb:
                self.killed = True
                print(
                    f"    ! {self.label}: tree RSS {rss / 2**20:,.0f} MB > limit, killed",
                    flush=True,
                )
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        p.kill()
            if time.monotonic() - last >= self.report_s:
                last = time.monotonic()
                print(
                    f"    … {self.label} {last - t0:.0f} s, tree RSS {rss / 2**20:,.0f} MB",
                    flush=True,
                )


def run_command(
    argv: list[str], log: Path, label: str, stop_when: Callable | None = None, limit_mb: float = 0.0
) -> dict:
    """Run ``argv`` (stdout + stderr to ``log``), wait for it with ``os.wait4``.

    ``stop_when(proc)``, if given, runs while the command does (the serve driver), then the
    command gets SIGTERM. Returns wall_s, cpu_s (user + system of the child and its waited-for
    descendants), peak_rss_mb (largest single process), tree_rss_mb (sampled peak of the sum),
    returncode and what ``stop_when`` returned under ``extra``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        sampler = TreeSampler(proc.pid, label, limit_mb)
        sampler.start()
        extra = None
        if stop_when is not None:
            try:
                extra = stop_when(proc)
            except Exception as exc:  # noqa: BLE001 - recorded, the step is then failed
                extra = {"error": f"{type(exc).__name__}: {exc}"}
            if alive(proc):
                proc.send_signal(signal.SIGTERM)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
    return {
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "peak_rss_mb": ru.ru_maxrss / 1024,
        "tree_rss_mb": max(sampler.peak_mb, ru.ru_maxrss / 1024),
        "returncode": proc.returncode,
        "killed_over_limit": sampler.killed,
        "extra": extra,
    }


def alive(proc: subprocess.Popen) -> bool:
    """Whether ``proc`` still runs, without reaping it (``os.wait4`` must get its rusage)."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def serve_driver(rung: Rung, n_requests: int, ports: tuple[int, int], timeout_s: float) -> Callable:
    """What runs while ``checkout-recs serve`` does: wait until ready, send ``n_requests`` real
    checkouts (``cli.demo.sample_checkouts``, at the bundle's serving clock) one at a time over
    v1, return requests, errors, seconds to ready, latency p50/p95 ms and the policies seen."""
    from cli.demo import sample_checkouts

    url = f"http://127.0.0.1:{ports[0]}"

    def drive(proc: subprocess.Popen) -> dict:
        t0 = time.perf_counter()
        ready = f"{url}/v1/models/checkout-recs"
        while not is_ready(ready):
            if not alive(proc) or time.perf_counter() - t0 > timeout_s:
                raise RuntimeError(f"serve not ready after {time.perf_counter() - t0:.0f} s")
            time.sleep(0.3)
        ready_s = time.perf_counter() - t0
        reqs = sample_checkouts(rung.p("raw"), n_requests, 7, bundle=rung.p("bundle"))
        ms, errors, policies = [], 0, {}
        for c in reqs[:n_requests]:
            body = json.dumps({"instances": [{k: v for k, v in c.items() if k != "note"}]})
            t = time.perf_counter()
            try:
                pred = _post(f"{url}/v1/models/checkout-recs:predict", body)["predictions"][0]
                policies[pred["policy"]] = policies.get(pred["policy"], 0) + 1
            except (OSError, KeyError, ValueError):
                errors += 1
            ms.append((time.perf_counter() - t) * 1e3)
        ms.sort()
        return {
            "requests": len(ms),
            "errors": errors,
            "ready_s": ready_s,
            "p50_ms": ms[len(ms) // 2] if ms else math.nan,
            "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else math.nan,
            "policies": policies,
        }

    return drive


def _post(url: str, body: str) -> dict:
    req = urllib.request.Request(
        url, data=body.encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30.0) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def measure_step(step: Step, rung: Rung, n_requests: int = 200, limit_mb: float = 0.0) -> dict:
    """Run every command of ``step`` on ``rung``; the step's figures (summed wall and CPU, the
    largest RSS), rows in / out and rows/s. Raises ``StepFailed`` on a non-zero exit."""
    logs = rung.p("logs")
    for folder in CLEAN_BEFORE.get(step.name, ()):
        shutil.rmtree(rung.p(folder), ignore_errors=True)
    runs = []
    if step.name == "serve":
        ports = (free_port(), free_port())
        argv = [CLI, "serve", "--bundle", str(rung.p("bundle"))]
        argv += ["--transformer-port", str(ports[0]), "--predictor-port", str(ports[1])]
        drive = serve_driver(rung, n_requests, ports, timeout_s=900)
        runs.append(run_command(argv, logs / "serve.log", f"{rung.name} serve", drive, limit_mb))
    else:
        for i, argv in enumerate(step.commands(rung)):
            log = logs / f"{step.name}{'' if i == 0 else f'-{i}'}.log"
            res = run_command(argv, log, f"{rung.name} {step.name}", limit_mb=limit_mb)
            runs.append(res)
            if res["returncode"] != 0:
                why = (
                    f"killed: tree RSS over {limit_mb:,.0f} MB" if res["killed_over_limit"] else ""
                )
                raise StepFailed(step.name, res["returncode"], log, why, res)
    extra = runs[-1]["extra"] or {}
    rows_in = parquet_rows(step.inputs(rung))
    rows_out = (
        extra.get("requests", 0) if step.name == "serve" else parquet_rows(step.outputs(rung))
    )
    wall = sum(r["wall_s"] for r in runs)
    fig = {
        "wall_s": round(wall, 3),
        "cpu_s": round(sum(r["cpu_s"] for r in runs), 3),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "tree_rss_mb": round(max(r["tree_rss_mb"] for r in runs), 1),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_per_s": round((rows_in or rows_out) / wall, 1) if wall > 0 else 0.0,
        "commands": [" ".join(["checkout-recs", *a[1:]]) for a in step.commands(rung)]
        or ["checkout-recs serve --bundle … (+ v1 requests)"],
    }
    if step.name == "serve":
        fig["serve"] = extra
        if extra.get("errors") or extra.get("error"):
            why = extra.get("error") or f"{extra['errors']} request errors"
            raise StepFailed(step.name, 1, logs / "serve.log", why, runs[-1])
    return fig


class StepFailed(RuntimeError):
    """A step's command exited non-zero (or serve answered with errors)."""

    def __init__(
        self, step: str, returncode: int, log: Path, why: str = "", figures: dict | None = None
    ) -> None:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
        super().__init__(f"{step} failed (exit {returncode}) {why}\n{tail}")
        self.step, self.returncode, self.log, self.tail = step, returncode, log, tail
        self.why, self.figures = why, figures or {}
