"""User features for the transformer: Feast online (one row per request) or the bundle's table.

``FeastUserFeatures`` wraps ``feature_repo.store.FeatureStoreAdapter.online_user_features``;
Feast's Python SDK is synchronous, so the read runs in a worker thread (``asyncio.to_thread``)
and never blocks the event loop. A user with no online row is unknown (None).
"""

from __future__ import annotations

import asyncio
from typing import Any


class FeastUserFeatures:
    """``UserFeatureSource`` over a Feast feature store adapter.

    Parameters
    ----------
    adapter : ``feature_repo.store.FeatureStoreAdapter`` (embedded SQLite or production Redis).
    timeout_s : longest wait for Feast; past it the read raises ``TimeoutError``.
    """

    def __init__(self, adapter: Any, timeout_s: float = 0.05) -> None:
        self.adapter = adapter
        self.timeout_s = timeout_s

    async def get(self, user_id: int) -> dict[str, Any] | None:
        """One user's features, None when Feast has no row for the user."""
        cols = await asyncio.wait_for(asyncio.to_thread(self.adapter.online_user_features, [int(user_id)]),
                                      timeout=self.timeout_s)
        row = {k: v[0] for k, v in cols.items() if v}
        if all(v is None for k, v in row.items() if k != "user_id"):
            return None
        return row


def open_feast_users(features_uri: str, work_dir: str, env: str = "embedded", timeout_s: float = 0.05,
                     project: str | None = None) -> FeastUserFeatures:
    """A Feast-backed user source (imports Feast; call at server start only)."""
    from pathlib import Path

    from feature_repo.store import open_store

    kwargs = {"project": project} if project else {}
    adapter = open_store(env, features_uri, Path(work_dir), **kwargs)
    # Feast builds its online-read machinery lazily on the first call (seconds); pay it here, at
    # start-up, so the first checkout does not miss its deadline and fall back.
    adapter.online_user_features([0])
    return FeastUserFeatures(adapter, timeout_s=timeout_s)
