"""Background writer of the decision log: nothing on the request path, nothing lost.

The request path calls ``DecisionLog.submit(record)``: one ``deque.append`` and a counter, no
lock, no I/O, no conversion. Everything else happens in one writer thread:

1. **convert** — every ``tick_s`` the inbox is drained in chunks of ``chunk_rows`` records into
   Arrow record batches (``DECISIONS`` schema). Conversion holds the GIL, so chunks are small
   (~1 ms each) and the thread yields between them: the event loop never waits on a whole part
   (the old writer held the GIL ~12 ms per 1,500 rows in one ``from_pylist``).
2. **quarantine** — a row that does not fit the contract (cannot be converted: an int out of
   range, a wrong type; a null in a non-nullable column; a value outside the range
   ``docs/data-contract.md`` gives, e.g. a NaN propensity) is set aside *alone* with its reason
   as one JSON line; the rest of its chunk is written. A chunk is converted whole and checked
   column-wise (``to_batches``); only when that fails is it bisected to find the bad rows. Quarantined lines become parts of kind ``decisions_quarantine`` (file
   ``rows.jsonl``) in the same store, published, retried and spilled like decision parts.
3. **rotate** — after ``rotate_rows`` rows or ``rotate_s`` seconds the batches become one
   *part* (a parquet file, one version of kind ``decisions`` in the artifact store).
4. **publish** — parts are published in order (``ArtifactStore.publish``: atomic, readers see
   whole parts). A failed publish keeps the part and retries after ``retry_s`` (doubling to
   ``retry_max_s``) under the same version name; ``FileExistsError`` on a retry means the
   failed attempt had completed, so the rows are counted once.
5. **bounded memory: spill, never drop silently** — when more than ``max_memory_rows`` rows wait
   in memory (the store is down), the oldest parts are written to ``spill_dir`` (local disk) and
   published from there once the store answers; parts left in ``spill_dir`` by an earlier process
   are published at start. Rows are dropped only if the spill itself fails, or if the inbox
   exceeds ``inbox_max`` (the writer thread cannot keep up at all); both are counted in
   ``dropped`` and logged.

Counts add up at every moment: ``accepted == written + pending + dropped + quarantined``
(``stats()``), with ``pending`` = rows in the inbox, being converted, in batches, awaiting
quarantine, in memory parts and spilled parts. ``close()`` (the transformer's ``stop``, also on
SIGTERM) converts and publishes everything; what the store refuses until the timeout is spilled
to disk, so it is still not lost.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from checkout_recs.contract import DECISIONS, RANGES, Range
from checkout_recs.storage import ArtifactStore, LocalArtifactStore, new_version

KIND = "decisions"
QUARANTINE_KIND = "decisions_quarantine"
PART_FILE = "part-0.parquet"
QUARANTINE_FILE = "rows.jsonl"
_PREFIX = {KIND: "d", QUARANTINE_KIND: "q"}  # version-name prefix per kind
log = logging.getLogger(__name__)

#: Ranges the contract gives ``DECISIONS`` columns beyond their Arrow type (the propensity rule is
#: the raw tables' ``RANGES["propensity"]``); elements of list columns are checked one by one.
DECISION_RANGES: dict[str, Range] = {
    "propensities": RANGES["propensity"],
    "exploration_cost": Range(0),
}
_REQUIRED = [i for i, field in enumerate(DECISIONS) if not field.nullable]  # non-nullable columns

Bad = tuple[Any, str]  # a row that does not fit ``DECISIONS``, and why


# ------------------------------------------------------------ row validation
def to_batches(chunk: list[Any]) -> tuple[list[pa.RecordBatch], list[Bad]]:
    """``chunk`` (n rows) -> (``DECISIONS`` batches of the k rows that fit, in order: one batch on
    the good path, none when k == 0; the n - k others with their reasons, in order). Good path:
    one ``from_pylist`` and one column-wise check (``_problem``); a failing chunk is bisected, so
    b bad rows cost O(b log n) conversions."""
    if len(chunk) == 1:
        one, reason = _one(chunk[0])
        return ([one], []) if one is not None else ([], [(chunk[0], reason)])
    try:
        batch = pa.RecordBatch.from_pylist(chunk, schema=DECISIONS)
        if _problem(batch) is None:
            return [batch], []
    except Exception:  # noqa: BLE001 - some row cannot be converted: find which, half by half
        pass
    mid = len(chunk) // 2
    good_a, bad_a = to_batches(chunk[:mid])
    good_b, bad_b = to_batches(chunk[mid:])
    return good_a + good_b, bad_a + bad_b


def _one(row: Any) -> tuple[pa.RecordBatch | None, str]:
    """One row -> (its 1-row batch, "") when it fits ``DECISIONS``, else (None, why not)."""
    if not isinstance(row, Mapping):
        return None, f"not a mapping: {type(row).__name__}"
    try:
        one = pa.RecordBatch.from_pylist([row], schema=DECISIONS)
    except Exception as err:  # noqa: BLE001 - any conversion error is this row's reason
        return None, _diagnose(row, err)
    reason = _problem(one)
    return (None, reason) if reason else (one, "")


def _diagnose(row: Mapping[str, Any], err: Exception) -> str:
    """The first column of ``row`` that cannot be converted, as ``"column: Error: message"``."""
    for field in DECISIONS:
        try:
            pa.array([row.get(field.name)], type=field.type)
        except Exception as col_err:  # noqa: BLE001 - reported, not raised
            return f"{field.name}: {type(col_err).__name__}: {col_err}"
    return f"{type(err).__name__}: {err}"


def _problem(batch: pa.RecordBatch) -> str | None:
    """Why a converted ``DECISIONS`` batch breaks the contract (a null in a non-nullable column,
    a value outside ``DECISION_RANGES``), or None. ~30 µs per 128 rows when it holds (null counts
    are precomputed; each range is one numpy pass)."""
    for i in _REQUIRED:
        if batch.column(i).null_count:
            return f"{DECISIONS.field(i).name}: null in a non-nullable column"
    for name, rule in DECISION_RANGES.items():
        col = batch.column(name)
        values = col.flatten() if pa.types.is_list(col.type) else col
        if not _within(values.to_numpy(zero_copy_only=False), rule).all():  # nulls become NaN
            return rule.describe(name)
    return None


def _within(v: np.ndarray, rule: Range) -> np.ndarray:
    """Element-wise: ``v`` inside ``rule`` (open or closed ends); NaN and ±inf never are."""
    lo = v > rule.lo if rule.lo_open else v >= rule.lo
    hi = v < rule.hi if rule.hi_open else v <= rule.hi
    return lo & hi & np.isfinite(v)


def quarantine_line(row: Any, reason: str, at: dt.datetime) -> str:
    """One quarantine record as a JSON line (no newline): ``request_id`` (str or null),
    ``reason``, ``quarantined_at`` (ISO 8601, UTC) and ``row`` (JSON-safe: see ``_json_safe``)."""
    rid = row.get("request_id") if isinstance(row, Mapping) else None
    try:
        safe = _json_safe(row)
    except Exception as err:  # noqa: BLE001 - e.g. a cyclic row: keep the reason and say why
        safe = f"<row not representable: {type(err).__name__}>"
    return json.dumps(
        {
            "request_id": rid if isinstance(rid, str) else None,
            "reason": reason,
            "quarantined_at": at.isoformat(),
            "row": safe,
        },
        allow_nan=False,
    )


def _json_safe(value: Any) -> Any:
    """``value`` in JSON's types: mappings -> objects, sequences and arrays -> lists, ints kept
    exact (any size), non-finite floats -> ``"nan"``/``"inf"``, dates -> ISO text, else ``repr``."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _json_safe(value.tolist())
    return repr(value)


@dataclass
class _Part:
    """One part waiting to be published: in memory (``table`` for decisions, ``lines`` for
    quarantine) or spilled (``path``)."""

    version: str
    rows: int
    table: pa.Table | None = None
    path: Path | None = None
    tried: bool = False
    kind: str = KIND
    lines: list[str] | None = None


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

    def __init__(
        self,
        store: ArtifactStore | str | Path,
        rotate_rows: int = 5000,
        rotate_s: float = 30.0,
        inbox_max: int = 100_000,
        max_memory_rows: int = 50_000,
        spill_dir: str | Path | None = None,
        chunk_rows: int = 128,
        tick_s: float = 0.1,
        retry_s: float = 1.0,
        retry_max_s: float = 30.0,
        on_stats: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.store = store if isinstance(store, ArtifactStore) else LocalArtifactStore(store)
        self.rotate_rows, self.rotate_s, self.inbox_max = rotate_rows, rotate_s, inbox_max
        self.max_memory_rows, self.chunk_rows, self.tick_s = max_memory_rows, chunk_rows, tick_s
        self.retry_s, self.retry_max_s, self.on_stats = retry_s, retry_max_s, on_stats
        self.spill_dir = (
            Path(spill_dir) if spill_dir else Path(tempfile.mkdtemp(prefix="decision-spill-"))
        )
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._inbox: deque[dict[str, Any]] = deque()
        self.accepted = self._dropped_full = 0  # written by the request path only
        self.written = self._dropped_spill = self.publish_failures = self.spilled_parts = (
            0  # writer only
        )
        self.quarantined = 0  # rows published to the quarantine (writer only)
        self.parts: list[str] = []  # published decision versions, in order
        self.quarantine_parts: list[str] = []  # published quarantine versions, in order
        self._lock = threading.Lock()  # guards the rows moving between the writer's holdings
        self._converting = self._batch_rows = 0
        self._batches: list[pa.RecordBatch] = []
        self._bad_lines: list[str] = []  # quarantine lines not yet cut into a part
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
        """Row counts ``accepted``, ``written``, ``pending`` (``in_memory`` + ``spilled``), ``dropped``,
        ``quarantined``, and ``parts``, ``publish_failures``; ``accepted == written + pending +
        dropped + quarantined`` (up to a row being accepted this instant)."""
        with self._lock:
            spilled = sum(p.rows for p in self._queue if p.path is not None)
            memory = (
                len(self._inbox)
                + self._converting
                + self._buffered
                + sum(p.rows for p in self._queue if p.path is None)
            )
            return {
                "accepted": self.accepted,
                "written": self.written,
                "pending": memory + spilled,
                "in_memory": memory,
                "spilled": spilled,
                "dropped": self.dropped,
                "quarantined": self.quarantined,
                "parts": len(self.parts),
                "publish_failures": self.publish_failures,
            }

    @property
    def _buffered(self) -> int:
        """Rows converted but not yet cut into a part: batch rows plus quarantine lines."""
        return self._batch_rows + len(self._bad_lines)

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
        if self._buffered and (force or waiters or age >= self.rotate_s):
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
        """Inbox -> record batches and quarantine lines, ``chunk_rows`` at a time, yielding the
        GIL between chunks; every popped row ends in exactly one of the two."""
        while self._inbox:
            with self._lock:
                n = min(self.chunk_rows, len(self._inbox), self.rotate_rows - self._buffered)
                chunk = [self._inbox.popleft() for _ in range(n)]
                self._converting = n
            batches, lines = self._checked(chunk)
            if self._buffered == 0:  # a part's age counts from its first row, not from the last cut
                self._part_started = time.monotonic()
            with self._lock:
                self._batches += batches
                self._batch_rows += sum(b.num_rows for b in batches)
                self._bad_lines += lines
                self._converting = 0
            if self._buffered >= self.rotate_rows:
                self._cut()
            time.sleep(0)  # let the event loop take the GIL

    @staticmethod
    def _checked(chunk: list[Any]) -> tuple[list[pa.RecordBatch], list[str]]:
        """``to_batches`` plus the quarantine lines of the rows that do not fit; if the check itself
        fails (a writer bug), the whole chunk is quarantined with that error, never lost."""
        try:
            batches, bad = to_batches(chunk)
        except Exception as err:  # noqa: BLE001 - counted in quarantine rather than nowhere
            log.exception(
                "decision log: checking a chunk failed; quarantining its %d rows", len(chunk)
            )
            batches, bad = (
                [],
                [(row, f"writer error: {type(err).__name__}: {err}") for row in chunk],
            )
        if not bad:
            return batches, []
        log.warning(
            "decision log: %d of %d rows quarantined (first: %s)", len(bad), len(chunk), bad[0][1]
        )
        now = dt.datetime.now(dt.UTC)
        return batches, [quarantine_line(row, reason, now) for row, reason in bad]

    def _cut(self) -> None:
        """Buffered batches -> one decisions part, buffered quarantine lines -> one quarantine part."""
        with self._lock:
            if self._batch_rows:
                table = pa.Table.from_batches(self._batches, schema=DECISIONS)
                self._queue.append(_Part(new_version(_PREFIX[KIND]), self._batch_rows, table=table))
            if self._bad_lines:
                self._queue.append(
                    _Part(
                        new_version(_PREFIX[QUARANTINE_KIND]),
                        len(self._bad_lines),
                        kind=QUARANTINE_KIND,
                        lines=self._bad_lines,
                    )
                )
            self._batches, self._batch_rows, self._bad_lines = [], 0, []
        self._part_started = time.monotonic()

    def _publish_queue(self) -> None:
        while self._queue:
            part = self._queue[0]
            try:
                self._publish(part)
            except FileExistsError:
                if (
                    not part.tried
                ):  # a name clash, not our earlier attempt: publish under a new name
                    part.version = new_version(_PREFIX[part.kind])
                    continue
            except Exception:  # noqa: BLE001 - store down: keep the part, retry later
                part.tried = True
                self.publish_failures += 1
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self.retry_max_s)
                log.warning(
                    "decision log: publishing %s failed; %d parts pending",
                    part.version,
                    len(self._queue),
                    exc_info=True,
                )
                return
            self._published(part)
            self._backoff = self.retry_s

    def _published(self, part: _Part) -> None:
        """Move a published part's rows from pending to ``written`` (or ``quarantined``)."""
        with self._lock:
            self._queue.popleft()
            if part.kind == QUARANTINE_KIND:
                self.quarantined += part.rows
                self.quarantine_parts.append(part.version)
            else:
                self.written += part.rows
                self.parts.append(part.version)
        if part.path is not None:
            shutil.rmtree(part.path, ignore_errors=True)

    def _publish(self, part: _Part) -> None:
        if part.path is not None:
            self.store.publish(part.kind, part.version, part.path)
            return
        with tempfile.TemporaryDirectory(prefix="decisions-") as tmp:
            _write_part(part, Path(tmp))
            self.store.publish(part.kind, part.version, Path(tmp))

    def _spill_over_limit(self) -> None:
        in_memory = [p for p in self._queue if p.path is None]
        rows = sum(p.rows for p in in_memory) + self._buffered
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
            _write_part(part, target)
        except Exception:  # noqa: BLE001 - counted and logged, never silent
            with self._lock:
                self._queue.remove(part)
                self._dropped_spill += part.rows
            log.error(
                "decision log: spilling %s failed; %d rows dropped",
                part.version,
                part.rows,
                exc_info=True,
            )
            return
        with self._lock:
            part.path, part.table, part.lines = target, None, None
        self.spilled_parts += 1

    def _spilled_parts(self) -> list[_Part]:
        """Parts an earlier process left in ``spill_dir`` (published first), decisions and quarantine."""
        parts = [p for d in sorted(self.spill_dir.iterdir()) if (p := _spilled_part(d)) is not None]
        self.accepted = sum(p.rows for p in parts)  # counted as accepted by this log
        return parts


def _write_part(part: _Part, folder: Path) -> None:
    """The part's file into ``folder``: ``PART_FILE`` (parquet) or ``QUARANTINE_FILE`` (JSON lines)."""
    if part.table is not None:
        pq.write_table(part.table, folder / PART_FILE)
    else:
        (folder / QUARANTINE_FILE).write_text("".join(line + "\n" for line in part.lines or []))


def _spilled_part(folder: Path) -> _Part | None:
    """The spilled part in ``folder`` (its rows counted from the file), or None if there is none."""
    if (folder / PART_FILE).is_file():
        return _Part(
            folder.name,
            pq.ParquetFile(folder / PART_FILE).metadata.num_rows,
            path=folder,
            tried=True,
        )
    if (folder / QUARANTINE_FILE).is_file():
        rows = sum(1 for line in (folder / QUARANTINE_FILE).read_text().splitlines() if line)
        return _Part(folder.name, rows, path=folder, tried=True, kind=QUARANTINE_KIND)
    return None
