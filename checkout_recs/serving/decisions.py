"""Decision log: every answer, written off the request path to rotating parquet in the artifact store.

The request path only builds a small dict (``decision_record``) and hands it to
``DecisionLog.submit`` (an append to an in-memory inbox: no lock, no I/O). The writer thread of
``checkout_recs.serving.decision_writer`` converts, rotates and publishes parquet parts of kind
``decisions`` in the artifact store (atomic: readers see whole parts), retries a failing store,
spills to local disk rather than grow without bound, and flushes on shutdown. A row that does not
fit the ``DECISIONS`` contract is quarantined alone, with its reason, as a JSON line in parts of
kind ``decisions_quarantine``; the counts add up (``accepted == written + pending + dropped +
quarantined``).

``find_decision(store, request_id)`` returns the snapshot behind a ranking dispute; the CLI
``checkout-recs explain REQUEST_ID`` prints it. ``find_quarantined(store, request_id)`` returns
the quarantine record of a row that could not be logged.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from checkout_recs.serving.decision_writer import (
    KIND,
    QUARANTINE_FILE,
    QUARANTINE_KIND,
    DecisionLog,
)
from checkout_recs.storage import ArtifactStore, LocalArtifactStore

if TYPE_CHECKING:
    from checkout_recs.serving.recommender import Decision

__all__ = [
    "KIND",
    "QUARANTINE_KIND",
    "DecisionLog",
    "decision_record",
    "find_decision",
    "find_quarantined",
]


def decision_record(decision: Decision) -> dict[str, Any]:
    """The log row of one answer (``DECISIONS`` columns); cheap, no I/O."""
    p, r = decision.prepared, decision.response
    snap_ids, snap_scores = decision.snapshot
    return {
        "request_id": r.request_id,
        "event_timestamp": p.request.timestamp or dt.datetime.now(dt.UTC),
        "user_id": p.request.user_id,
        "region": p.request.region,
        "device": p.request.device,
        "basket_ids": list(p.request.purchased_item_ids),
        "policy": r.policy,
        "fallback_reason": r.fallback_reason,
        "session_class": p.session_class,
        "model_version": r.model_version,
        "index_version": r.index_version,
        "predictor_version": p.predictor_version
        if r.policy == "ranker"
        else None,  # the ranker whose scores ranked it
        "item_ids": [i.listing_id for i in r.items],
        "scores": [i.score for i in r.items],
        "propensities": [i.propensity for i in r.items],
        "sources": [i.source for i in r.items],
        "reasons": [i.reason for i in r.items],
        "explored": bool(decision.slate.explored),
        "exploration_cost": float(decision.slate.exploration_cost),
        "n_candidates": int(len(p.cand_rows)),
        "n_filtered_out": int(p.filtered_out),
        "snapshot_ids": snap_ids,
        "snapshot_scores": snap_scores,
        "latency_ms": r.latency_ms,
        "timings_json": json.dumps({k: round(v, 3) for k, v in p.timings.items()}),
    }


def find_decision(
    store: ArtifactStore | str | Path, request_id: str, scratch: Path | None = None
) -> dict | None:
    """The logged decision of ``request_id`` (newest parts first), or None when not logged."""
    store = store if isinstance(store, ArtifactStore) else LocalArtifactStore(store)
    for version in reversed(store.versions(KIND)):
        table = pq.read_table(
            _part_dir(store, KIND, version, scratch), filters=[("request_id", "=", request_id)]
        )
        if table.num_rows:
            return table.slice(table.num_rows - 1).to_pylist()[0]
    return None


def find_quarantined(
    store: ArtifactStore | str | Path, request_id: str, scratch: Path | None = None
) -> dict | None:
    """The quarantine record of ``request_id`` (newest parts first): ``{"request_id", "reason",
    "quarantined_at" (ISO UTC), "row" (JSON-safe)}``, or None when none was quarantined."""
    store = store if isinstance(store, ArtifactStore) else LocalArtifactStore(store)
    for version in reversed(store.versions(QUARANTINE_KIND)):
        text = (_part_dir(store, QUARANTINE_KIND, version, scratch) / QUARANTINE_FILE).read_text()
        hits = [
            rec
            for line in text.splitlines()
            if line and (rec := json.loads(line))["request_id"] == request_id
        ]
        if hits:
            return hits[-1]
    return None


def _part_dir(store: ArtifactStore, kind: str, version: str, scratch: Path | None) -> Path:
    """A local folder holding ``kind/version``: the store's own for a local store, else a fetched copy."""
    if isinstance(store, LocalArtifactStore):
        return store.path(kind, version)
    return store.fetch(kind, version, Path(tempfile.mkdtemp(dir=scratch)) / version)
