"""Background writer of the decision log: nothing on the request path, nothing lost.

The request path calls ``DecisionLog.submit(record)``: one ``deque.append`` and a counter, no
lock, no I/O, no conversion. Everything else happens in one writer thread:

1. **convert** — every ``tick_s`` the inbox is drained in chunks of ``chunk_rows`` records into
   Arrow record batches (``DECISIONS`` schema). Conversion holds the GIL, so chunks are small
   (~1 ms each) and the thread yields between them: the event loop never waits on a whole part
   (the old writer held the GIL ~12 ms per 1,500 rows in one ``from_pylist``).
2. **rotate** — after ``rotate_rows`` rows or ``rotate_s`` seconds the batches become one
   *part* (a parquet file, one version of kind ``decisions`` in the artifact store).
3. **publish** — parts are published in order (``ArtifactStore.publish``: atomic, readers see
   whole parts). A failed publish keeps the part and retries after ``retry_s`` (doubling to
   ``retry_max_s``) under the same version name; ``FileExistsError`` on a retry means the
   failed attempt had completed, so the rows are counted once.
4. **bounded memory: spill, never drop silently** — when more than ``max_memory_rows`` rows wait
   in memory (the store is down), the oldest parts are written to ``spill_dir`` (local disk) and
   published from there once the store answers; parts left in ``spill_dir`` by an earlier process
   are published at start. Rows are dropped only if the spill itself fails, or if the inbox
   exceeds ``inbox_max`` (the writer thread cannot keep up at all); both are counted in
   ``dropped`` and logged.

Counts add up at every moment: ``accepted == written + pending + dropped`` (``stats()``), with
``pending`` = rows in the inbox, being converted, in batches, in memory parts and spilled parts.
``close()`` (the transformer's ``stop``, also on SIGTERM) converts and publishes everything; what
the store refuses until the timeout is spilled to disk, so it is still not lost.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from checkout_recs.contract import DECISIONS
from checkout_recs.storage import ArtifactStore, LocalArtifactStore, new_version

KIND = "decisions"
PART_FILE = "part-0.parquet"
log = logging.getLogger(__name__)


@dataclass
class _Part:
    """One part waiting to be published: in memory (``table``) or spilled (``path``)."""

    version: str
    rows: int
    table: pa.Table | None = None
    path: Path | None = None
    tried: bool = False


class DecisionLog:
    """Decision rows to rotating parquet parts in the artifact store (see module docstring).

    Parameters
    ----------
    store : artifact store (or a folder path for a local one).
    rotate_rows, rotate_s : cut a part after this many rows or seconds, whichever first.
    inbox_max : records waiting for conversion before ``submit`` drops (counted) — last resort.
    max_memory_rows : converted rows kept in memory before parts spill to ``spill_dir``.
    spill_dir : local folder for spilled parts (default: a fresh temporary folder); give a
        persistent one so a restarted process publishes what the previous one spilled.
    chunk_rows : records converted per GIL hold.
    tick_s : writer wake-up period (seconds).
    retry_s, retry_max_s : first and longest wait before retrying a failed publish (seconds).
    on_stats : called by the writer thread with ``stats()`` after every cycle (metrics), optional.
    """

    def __init__(self, store: ArtifactStore | str | Path, rotate_rows: int = 5000, rotate_s: float = 30.0,
                 inbox_max: int = 100_000, max_memory_rows: int = 50_000, spill_dir: str | Path | None = None,
                 chunk_rows: int = 128, tick_s: float = 0.1, retry_s: float = 1.0, retry_max_s: float = 30.0,
                 on_stats: Callable[[dict[str, int]], None] | None = None) -> None:
        self.store = store if isinstance(store, ArtifactStore) else LocalArtifactStore(store)
        self.rotate_rows, self.rotate_s, self.inbox_max = rotate_rows, rotate_s, inbox_max
        self.max_memory_rows, self.chunk_rows, self.tick_s = max_memory_rows, chunk_rows, tick_s
        self.retry_s, self.retry_max_s, self.on_stats = retry_s, retry_max_s, on_stats
        self.spill_dir = Path(spill_dir) if spill_dir else Path(tempfile.mkdtemp(prefix="decision-spill-"))
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._inbox: deque[dict[str, Any]] = deque()
        self.accepted = self._dropped_full = 0  # written by the request path only
        self.written = self._dropped_spill = self.publish_failures = self.spilled_parts = 0  # writer only
        self.parts: list[str] = []  # published versions, in order
        self._lock = threading.Lock()  # guards the rows moving between the writer's holdings
        self._converting = self._batch_rows = 0
        self._batches: list[pa.RecordBatch] = []
        self._queue: deque[_Part] = deque(self._spilled_parts())
        self._part_started = time.monotonic()
        self._retry_at, self._backoff = 0.0, retry_s
        self._flush_waiters: list[threading.Event] = []
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ request path
    def submit(self, record: dict[str, Any]) -> bool:
        """Accept one ``DECISIONS`` row without blocking (an append). False, counted in
        ``dropped``, only when ``inbox_max`` records already wait (the writer cannot keep up)."""
        self.accepted += 1
        if len(self._inbox) >= self.inbox_max:
            self._dropped_full += 1
            return False
        self._inbox.append(record)
        return True

    # ------------------------------------------------------------ counts
    @property
    def dropped(self) -> int:
        """Rows lost: inbox over ``inbox_max`` plus parts whose spill to disk failed."""
        return self._dropped_full + self._dropped_spill

    def stats(self) -> dict[str, int]:
        """``accepted``, ``written``, ``pending`` (``in_memory`` + ``spilled``), ``dropped``, ``parts``;
        ``accepted == written + pending + dropped`` (up to a row being accepted this instant)."""
        with self._lock:
            spilled = sum(p.rows for p in self._queue if p.path is not None)
            memory = len(self._inbox) + self._converting + self._batch_rows + sum(
                p.rows for p in self._queue if p.path is None)
            return {"accepted": self.accepted, "written": self.written, "pending": memory + spilled,
                    "in_memory": memory, "spilled": spilled, "dropped": self.dropped, "parts": len(self.parts),
                    "publish_failures": self.publish_failures}

    # ------------------------------------------------------------ control
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Cut a part of what is buffered, publish everything due, wait; True when the writer
        answered within ``timeout_s`` (parts the store refused stay pending)."""
        done = threading.Event()
        with self._lock:
            self._flush_waiters.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Convert and publish everything, retrying until ``timeout_s``; spill what is left to disk."""
        if not self._thread.is_alive():
            return
        self._close_deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s + 5.0)

    # ------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # noqa: BLE001 - the writer must survive anything; rows stay pending
                log.exception("decision log writer cycle failed")
        self._final()

    def _cycle(self, force: bool = False) -> None:
        with self._lock:
            waiters, self._flush_waiters = self._flush_waiters, []
        self._convert()
        age = time.monotonic() - self._part_started
        if self._batch_rows and (force or waiters or age >= self.rotate_s):
            self._cut()
        self._spill_over_limit()
        if force or waiters or time.monotonic() >= self._retry_at:
            self._publish_queue()
        if self.on_stats is not None:
            self.on_stats(self.stats())
        for w in waiters:
            w.set()

    def _final(self) -> None:
        deadline = getattr(self, "_close_deadline", time.monotonic())
        while True:
            self._cycle(force=True)
            if not self._queue or time.monotonic() >= deadline:
                break
            time.sleep(min(self._backoff, max(deadline - time.monotonic(), 0.0)))
        for part in list(self._queue):
            if part.path is None:
                self._spill(part)
        with self._lock:
            for w in self._flush_waiters:
                w.set()

    def _convert(self) -> None:
        """Inbox -> record batches, ``chunk_rows`` at a time, yielding the GIL between chunks."""
        while self._inbox:
            with self._lock:
                room = self.rotate_rows - self._batch_rows
                n = min(self.chunk_rows, len(self._inbox), room)
                chunk = [self._inbox.popleft() for _ in range(n)]
                self._converting = n
            batch = pa.RecordBatch.from_pylist(chunk, schema=DECISIONS)
            if self._batch_rows == 0:  # a part's age counts from its first row, not from the last cut
                self._part_started = time.monotonic()
            with self._lock:
                self._batches.append(batch)
                self._batch_rows += n
                self._converting = 0
            if self._batch_rows >= self.rotate_rows:
                self._cut()
            time.sleep(0)  # let the event loop take the GIL

    def _cut(self) -> None:
        with self._lock:
            table = pa.Table.from_batches(self._batches, schema=DECISIONS)
            self._queue.append(_Part(new_version("d"), self._batch_rows, table=table))
            self._batches, self._batch_rows = [], 0
        self._part_started = time.monotonic()

    def _publish_queue(self) -> None:
        while self._queue:
            part = self._queue[0]
            try:
                self._publish(part)
            except FileExistsError:
                if not part.tried:  # a name clash, not our earlier attempt: publish under a new name
                    part.version = new_version("d")
                    continue
            except Exception:  # noqa: BLE001 - store down: keep the part, retry later
                part.tried = True
                self.publish_failures += 1
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self.retry_max_s)
                log.warning("decision log: publishing %s failed; %d parts pending", part.version, len(self._queue),
                            exc_info=True)
                return
            with self._lock:
                self._queue.popleft()
                self.written += part.rows
                self.parts.append(part.version)
            if part.path is not None:
                shutil.rmtree(part.path, ignore_errors=True)
            self._backoff = self.retry_s

    def _publish(self, part: _Part) -> None:
        if part.path is not None:
            self.store.publish(KIND, part.version, part.path)
            return
        with tempfile.TemporaryDirectory(prefix="decisions-") as tmp:
            pq.write_table(part.table, Path(tmp) / PART_FILE)
            self.store.publish(KIND, part.version, Path(tmp))

    def _spill_over_limit(self) -> None:
        in_memory = [p for p in self._queue if p.path is None]
        rows = sum(p.rows for p in in_memory) + self._batch_rows
        for part in in_memory:  # oldest first
            if rows <= self.max_memory_rows:
                break
            rows -= part.rows
            self._spill(part)

    def _spill(self, part: _Part) -> None:
        """Write an in-memory part to ``spill_dir``; if even that fails, drop it with a count."""
        target = self.spill_dir / part.version
        try:
            target.mkdir(parents=True, exist_ok=True)
            pq.write_table(part.table, target / PART_FILE)
        except Exception:  # noqa: BLE001 - counted and logged, never silent
            with self._lock:
                self._queue.remove(part)
                self._dropped_spill += part.rows
            log.error("decision log: spilling %s failed; %d rows dropped", part.version, part.rows, exc_info=True)
            return
        with self._lock:
            part.path, part.table = target, None
        self.spilled_parts += 1

    def _spilled_parts(self) -> list[_Part]:
        """Parts an earlier process left in ``spill_dir`` (published first)."""
        parts = []
        for d in sorted(p for p in self.spill_dir.iterdir() if (p / PART_FILE).is_file()):
            parts.append(_Part(d.name, pq.ParquetFile(d / PART_FILE).metadata.num_rows, path=d, tried=True))
        self.accepted = sum(p.rows for p in parts)  # counted as accepted by this log
        return parts
