"""Fixtures for the decision-log tests: a valid ``DECISIONS`` row (``checkout_recs.synthetic``), and
artifact stores that fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checkout_recs.storage import LocalArtifactStore
from checkout_recs.synthetic.serving import decision_row

__all__ = ["FlakyStore", "decision_row", "poisoned_row"]


def poisoned_row(i: int, column: str) -> dict[str, Any]:
    """``decision_row(i)`` broken in ``column``: ``user_id`` out of int64 (2**64 - 1), a NaN last
    ``propensities`` (outside the contract's (0, 1]), a NaN ``exploration_cost`` (outside >= 0),
    or, for any other column, the column missing (a null in a non-nullable column)."""
    row = decision_row(i)
    if column == "user_id":
        row["user_id"] = 2**64 - 1
    elif column == "propensities":
        row["propensities"] = [*row["propensities"][:-1], float("nan")]
    elif column == "exploration_cost":
        row["exploration_cost"] = float("nan")
    else:
        del row[column]
    return row


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
