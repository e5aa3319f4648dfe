"""Worker processes, progress bar and stage clock of ``evaluate-offline``.

The protocol's fits are independent (grid points, seeds), so they run as tasks on a pool of
``workers`` processes (spawned: no forked OpenMP state), each with ``threads`` compute threads.
On a 2-core machine two one-thread workers do ~1.8× the work of one two-thread process: the
models are small and their operations do not scale over threads. ``workers=1`` runs every task
in this process.

A task is ``fn(split, *args)``, ``fn`` a module-level function; it may call ``tick(n)`` to
advance the progress bar (a fit, an epoch). Every task's result comes back with its wall and
CPU seconds (``time.process_time`` of the process that ran it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import resource
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from checkout_recs.evaluation.next_item.protocol import Split

_SPLIT: Split | None = None
_TICK: Callable[[int], Any] | None = None

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def tick(n: int = 1) -> None:
    """Advance the progress bar by ``n`` units (no-op when there is none)."""
    if _TICK is not None and n > 0:
        _TICK(n)


def _init_worker(split: Split, threads: int, ticks: Any) -> None:
    global _SPLIT, _TICK
    import torch

    torch.set_num_threads(threads)
    _SPLIT, _TICK = split, ticks.put


def _timed(fn: Callable[..., Any], args: tuple) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    assert _SPLIT is not None
    out = fn(_SPLIT, *args)
    return out, time.perf_counter() - w, time.process_time() - c


@dataclass
class TaskResult:
    """One task's return value and cost."""

    value: Any
    wall_s: float
    cpu_s: float


@dataclass
class StageClock:
    """Wall and CPU seconds of each stage: ``cpu_s`` = this process + the tasks it ran."""

    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, **info: Any) -> Iterator[dict[str, Any]]:
        """Time the ``with`` body as stage ``name``; the yielded dict collects task CPU (``task_cpu_s``)."""
        rec: dict[str, Any] = {"task_cpu_s": 0.0, **info}
        w, c = time.perf_counter(), time.process_time()
        try:
            yield rec
        finally:
            rec["wall_s"] = time.perf_counter() - w
            main_cpu = time.process_time() - c
            rec["cpu_s"] = main_cpu + (rec["task_cpu_s"] if rec.get("in_workers") else 0.0)
            self.stages[name] = rec


class Runner:
    """Runs tasks on ``workers`` processes (or in this process when ``workers == 1``)."""

    def __init__(
        self, split: Split, workers: int = 1, threads: int = 1, progress: bool = True
    ) -> None:
        self.split, self.workers, self.threads, self.progress = (
            split,
            max(1, workers),
            max(1, threads),
            progress,
        )
        self._pool: ProcessPoolExecutor | None = None
        self._ticks: Any = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def in_workers(self) -> bool:
        """Whether tasks run in other processes."""
        return self.workers > 1

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = mp.get_context("spawn")
            self._ticks = ctx.Queue()
            saved = {k: os.environ.get(k) for k in _THREAD_VARS}
            os.environ.update(
                {k: str(self.threads) for k in _THREAD_VARS}
            )  # inherited by the workers
            try:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=ctx,
                    initializer=_init_worker,
                    initargs=(self.split, self.threads, self._ticks),
                )
                for f in [self._pool.submit(time.sleep, 0) for _ in range(self.workers)]:
                    f.result()  # start every worker now, with the environment above
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return self._pool

    def run(
        self, tasks: list[tuple[Callable[..., Any], tuple]], units: int, desc: str
    ) -> list[TaskResult]:
        """Run ``tasks`` (longest first is best), showing a bar of ``units`` ticks; results in task order."""
        from tqdm.auto import tqdm

        global _SPLIT, _TICK
        bar = tqdm(
            total=units, desc=desc, disable=not self.progress, dynamic_ncols=True, leave=True
        )
        try:
            if not self.in_workers:
                import torch

                _SPLIT, _TICK, saved = self.split, bar.update, torch.get_num_threads()
                torch.set_num_threads(self.threads)
                try:
                    return [TaskResult(*_timed(fn, args)) for fn, args in tasks]
                finally:
                    _SPLIT, _TICK = None, None
                    torch.set_num_threads(saved)
            pool = self._ensure_pool()
            futures: list[Future] = [pool.submit(_timed, fn, args) for fn, args in tasks]
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                self._drain(bar)
            self._drain(bar)
            return [TaskResult(*f.result()) for f in futures]
        finally:
            bar.close()

    def _drain(self, bar: Any) -> None:
        while True:
            try:
                bar.update(self._ticks.get_nowait())
            except queue.Empty:
                return

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def children_cpu_s() -> float:
    """CPU seconds of this process's finished child processes (the workers, once closed)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_count() -> int:
    """CPUs this process may run on."""
    return max(
        1,
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
    )


def default_workers(workers: int | None = None, n_cpus: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker): by default one worker per CPU up to 5 (the protocol's
    seeds), the CPUs shared out as threads."""
    n = n_cpus or cpu_count()
    w = workers or min(5, n)
    return w, max(1, n // w)
