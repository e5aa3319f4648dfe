"""Decision log: every answer, written off the request path to rotating parquet in the artifact store.

The request path only builds a small dict (``decision_record``) and hands it to
``DecisionLog.submit`` — a non-blocking ``put_nowait`` on a bounded queue (a full queue drops
the record and counts it; the answer is never delayed). A background thread batches records and,
every ``rotate_rows`` records or ``rotate_s`` seconds, writes one parquet part and publishes it
as a new version of kind ``decisions`` in the artifact store (atomic: readers see whole parts).

``find_decision(store, request_id)`` returns the snapshot behind a ranking dispute; the CLI
``checkout-recs explain REQUEST_ID`` prints it.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from checkout_recs.contract import DECISIONS
from checkout_recs.storage import ArtifactStore, LocalArtifactStore, new_version

if TYPE_CHECKING:
    from checkout_recs.recommend import Decision

KIND = "decisions"


def decision_record(decision: Decision) -> dict[str, Any]:
    """The log row of one answer (``DECISIONS`` columns); cheap, no I/O."""
    p, r = decision.prepared, decision.response
    snap_ids, snap_scores = decision.snapshot
    return {
        "request_id": r.request_id,
        "event_timestamp": p.request.timestamp or dt.datetime.now(dt.UTC),
        "user_id": p.request.user_id, "region": p.request.region, "device": p.request.device,
        "basket_ids": list(p.request.purchased_item_ids), "policy": r.policy,
        "fallback_reason": r.fallback_reason, "session_class": p.session_class,
        "model_version": r.model_version, "index_version": r.index_version,
        "item_ids": [i.listing_id for i in r.items], "scores": [i.score for i in r.items],
        "propensities": [i.propensity for i in r.items], "sources": [i.source for i in r.items],
        "reasons": [i.reason for i in r.items], "explored": bool(decision.slate.explored),
        "exploration_cost": float(decision.slate.exploration_cost), "n_candidates": int(len(p.cand_rows)),
        "n_filtered_out": int(p.filtered_out), "snapshot_ids": snap_ids, "snapshot_scores": snap_scores,
        "latency_ms": r.latency_ms, "timings_json": json.dumps({k: round(v, 3) for k, v in p.timings.items()}),
    }


class DecisionLog:
    """Background writer of decision records (see module docstring).

    Parameters
    ----------
    store : artifact store (or a folder path for a local one).
    rotate_rows, rotate_s : publish a part after this many records or seconds, whichever first.
    queue_max : records buffered before new ones are dropped (and counted in ``dropped``).
    """

    def __init__(self, store: ArtifactStore | str | Path, rotate_rows: int = 5000, rotate_s: float = 30.0,
                 queue_max: int = 20000) -> None:
        self.store = store if isinstance(store, ArtifactStore) else LocalArtifactStore(store)
        self.rotate_rows, self.rotate_s = rotate_rows, rotate_s
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_max)
        self.dropped = 0
        self.written = 0
        self.parts: list[str] = []
        self._flush_now = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue one record without blocking; False (and ``dropped`` + 1) when the queue is full."""
        try:
            self._q.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def flush(self, timeout_s: float = 10.0) -> None:
        """Publish what is buffered now and wait until it is written."""
        done = threading.Event()
        self._q.put({"__flush__": done})
        done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and stop the writer thread."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout_s)

    def _run(self) -> None:
        buf: list[dict[str, Any]] = []
        last = time.monotonic()
        while True:
            try:
                item = self._q.get(timeout=max(0.05, self.rotate_s / 4))
            except queue.Empty:
                item = {}
            if item is None:
                self._publish(buf)
                return
            if "__flush__" in item:
                self._publish(buf)
                buf, last = [], time.monotonic()
                item["__flush__"].set()
                continue
            if item:
                buf.append(item)
            if len(buf) >= self.rotate_rows or (buf and time.monotonic() - last >= self.rotate_s):
                self._publish(buf)
                buf, last = [], time.monotonic()

    def _publish(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            table = pa.Table.from_pylist(rows, schema=DECISIONS)
            with tempfile.TemporaryDirectory(prefix="decisions-") as tmp:
                pq.write_table(table, Path(tmp) / "part-0.parquet")
                version = new_version("d")
                self.store.publish(KIND, version, Path(tmp))
            self.parts.append(version)
            self.written += len(rows)
        except Exception:  # noqa: BLE001 - the log must never take the server down
            self.dropped += len(rows)


def find_decision(store: ArtifactStore | str | Path, request_id: str, scratch: Path | None = None) -> dict | None:
    """The logged decision of ``request_id`` (newest parts first), or None when not logged."""
    store = store if isinstance(store, ArtifactStore) else LocalArtifactStore(store)
    for version in reversed(store.versions(KIND)):
        if isinstance(store, LocalArtifactStore):
            part_dir = store.path(KIND, version)
        else:
            part_dir = Path(tempfile.mkdtemp(dir=scratch)) / version
            store.fetch(KIND, version, part_dir)
        table = pq.read_table(part_dir, filters=[("request_id", "=", request_id)])
        if table.num_rows:
            return table.slice(table.num_rows - 1).to_pylist()[0]
    return None
