"""User features for the transformer: one row from Feast's online store per request.

``FeastUserFeatures`` reads the ``user`` feature view through Feast's *online store* API
(``OnlineStore.online_read`` / ``online_read_async`` with the store's ``RepoConfig`` and the
registered ``FeatureView``), not through ``FeatureStore.get_online_features``: the SDK façade
re-resolves feature references, entity rows and response protos on every call and is
synchronous, so it had to run in a worker thread, and the thread hand-off (GIL convoy with the
event loop) cost more than the read. Still Feast, still the same tables and values:

* Redis (production): ``online_read_async`` — one pipelined ``HMGET`` on Feast's async client;
  nothing blocks the event loop;
* SQLite (embedded default): ``online_read`` inline — one indexed ``SELECT`` on a local file,
  ~0.05 ms, cheaper than any hand-off to a thread;
* any other online store: ``online_read`` in a worker thread.

A user with no online row is unknown (None). ``tests/code/inference/test_user_features.py`` checks
the rows equal the SDK's ``get_online_features`` answer.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

USER_VIEW = "user"
USER_KEY = "user_id"


class FeastUserFeatures:
    """``UserFeatureSource`` over a Feast feature store adapter.

    Parameters
    ----------
    adapter : ``feature_repo.store.FeatureStoreAdapter`` (embedded SQLite or production Redis).
    timeout_s : longest wait for Feast (seconds); past it the read raises ``TimeoutError``.
    """

    def __init__(self, adapter: Any, timeout_s: float = 0.05) -> None:
        from feast.infra.online_stores.online_store import (
            OnlineStore,  # lazy: feast costs seconds to import (and imports torch); only the feature-store paths need it
        )
        from feast.infra.online_stores.sqlite import (
            SqliteOnlineStore,  # lazy: feast costs seconds to import (and imports torch); only the feature-store paths need it
        )

        self.adapter = adapter
        self.timeout_s = timeout_s
        store = adapter.store
        self._config = store.config
        self._view = store.get_feature_view(USER_VIEW)
        self._names = [f.name for f in self._view.features]
        self._online = store._get_provider().online_store
        if isinstance(self._online, SqliteOnlineStore):
            self.mode = "inline"
        elif type(self._online).online_read_async is not OnlineStore.online_read_async:
            self.mode = "async"
        else:
            self.mode = "thread"

    def _key(self, user_id: int) -> Any:
        from feast.protos.feast.types.EntityKey_pb2 import (
            EntityKey,  # lazy: feast costs seconds to import (and imports torch); only the feature-store paths need it
        )
        from feast.protos.feast.types.Value_pb2 import (
            Value,  # lazy: feast costs seconds to import (and imports torch); only the feature-store paths need it
        )

        return EntityKey(join_keys=[USER_KEY], entity_values=[Value(int64_val=int(user_id))])

    def _row(
        self, user_id: int, read: list[tuple[Any, dict[str, Any] | None]]
    ) -> dict[str, Any] | None:
        from feast.type_map import (
            feast_value_type_to_python_type,  # lazy: feast costs seconds to import (and imports torch); only the feature-store paths need it
        )

        values = read[0][1] if read else None
        if not values:
            return None
        row: dict[str, Any] = {USER_KEY: int(user_id)}
        for n in self._names:
            row[n] = feast_value_type_to_python_type(values[n]) if n in values else None
        if all(v is None for k, v in row.items() if k != USER_KEY):
            return None
        return row

    def read_sync(self, user_id: int) -> dict[str, Any] | None:
        """One user's features by a blocking online read (start-up warm-up, tests)."""
        # a fresh list per read: Feast's Redis store appends its timestamp field to the one it is given
        return self._row(
            user_id,
            self._online.online_read(
                self._config, self._view, [self._key(user_id)], list(self._names)
            ),
        )

    async def get(self, user_id: int) -> dict[str, Any] | None:
        """One user's features (``contract.USER_FEATURES`` names), None when Feast has no row.

        Raises ``TimeoutError`` past ``timeout_s`` and whatever the store raises when it cannot
        answer (the caller degrades to the fallback)."""
        if self.mode == "inline":
            return self.read_sync(user_id)
        if self.mode == "async":
            read = await asyncio.wait_for(
                self._online.online_read_async(
                    self._config, self._view, [self._key(user_id)], list(self._names)
                ),
                timeout=self.timeout_s,
            )
            return self._row(user_id, read)
        return await asyncio.wait_for(
            asyncio.to_thread(self.read_sync, user_id), timeout=self.timeout_s
        )


def _import_feast_without_torch() -> None:
    """Import Feast without it importing torch, unless this process already has torch.

    ``feast.torch_wrapper`` imports torch eagerly (for ``OnlineResponse.to_tensor``, which serving
    never calls) and catches any failure of that import. The transformer scores remotely and
    otherwise never needs torch (~185 MiB resident), so torch is hidden while Feast is imported;
    a later ``import torch`` (in-process scoring) works as usual, and only Feast's ``to_tensor``
    stays unavailable in this process.
    """

    if "torch" in sys.modules or "feast" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes ``import torch`` raise ImportError
    try:
        import feast.online_response  # noqa: F401  (imports feast.torch_wrapper)
    finally:
        del sys.modules["torch"]


def open_feast_users(
    features_uri: str,
    work_dir: str,
    env: str = "embedded",
    timeout_s: float = 0.05,
    project: str | None = None,
    redis_url: str | None = None,
    registry_url: str | None = None,
) -> FeastUserFeatures:
    """A Feast-backed user source (imports Feast; call at server start only).

    ``env`` names ``feature_repo/environments/<env>.yaml``; ``redis_url`` (password included) and
    ``registry_url`` are the production store's (None: ``feature_repo.store``'s environment defaults).
    """

    _import_feast_without_torch()
    from feature_repo.store import open_store  # lazy: keeps feast out of this module's import

    kwargs: dict[str, Any] = {"project": project} if project else {}
    kwargs.update(
        {k: v for k, v in (("redis_url", redis_url), ("registry_url", registry_url)) if v}
    )
    adapter = open_store(env, features_uri, Path(work_dir), **kwargs)
    users = FeastUserFeatures(adapter, timeout_s=timeout_s)
    # Feast opens its connection and the view's table lazily; pay that here, at start-up, so the
    # first checkout does not miss its deadline and fall back.
    users.read_sync(0)
    return users
