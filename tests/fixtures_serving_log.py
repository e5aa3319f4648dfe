"""Fixtures for the decision-log tests: a valid ``DECISIONS`` row, and artifact stores that fail."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from checkout_recs.storage import LocalArtifactStore


def decision_row(i: int) -> dict[str, Any]:
    """A complete ``contract.DECISIONS`` row with request id ``req-<i>`` (a top-30 snapshot, like serving)."""
    return {
        "request_id": f"req-{i}", "event_timestamp": dt.datetime(2026, 11, 22, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
        "user_id": i % 97, "region": "north", "device": "web", "basket_ids": [5, 6], "policy": "ranker",
        "fallback_reason": None, "session_class": "returning", "model_version": "m1", "index_version": "i1",
        "item_ids": list(range(i, i + 6)), "scores": [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        "propensities": [1.0, 1.0, 1.0, 1.0, 1.0, 0.9], "sources": ["ann"] * 6, "reasons": ["new seller"] * 6,
        "explored": i % 10 == 0, "exploration_cost": 0.01, "n_candidates": 250, "n_filtered_out": 3,
        "snapshot_ids": list(range(30)), "snapshot_scores": [0.5] * 30, "latency_ms": 4.2,
        "timings_json": '{"features": 0.2, "policy": 0.5}',
    }


class FlakyStore(LocalArtifactStore):
    """A local store whose ``publish`` fails while ``down`` is set; with ``fail_after_publish`` the
    failure comes *after* the version was published (a lost acknowledgement)."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.down = False
        self.fail_after_publish = 0  # how many publishes still succeed but then raise
        self.calls = 0

    def publish(self, kind: str, version: str, local_dir: Path) -> str:
        """``LocalArtifactStore.publish``, failing as configured (ConnectionError)."""
        self.calls += 1
        if self.down:
            raise ConnectionError("store down")
        uri = super().publish(kind, version, local_dir)
        if self.fail_after_publish > 0:
            self.fail_after_publish -= 1
            raise ConnectionError("acknowledgement lost")
        return uri
