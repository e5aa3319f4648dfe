"""User features read through Feast's online store API equal the Feast SDK's answer (SQLite
inline, Redis through ``online_read_async``)."""

from __future__ import annotations

import asyncio

import pytest

from inference.user_features import FeastUserFeatures
from tests.fixtures_serving import make_feast_user_store, make_users


@pytest.fixture(scope="module")
def feast_users(tmp_path_factory):
    users = make_users(60, seed=3)
    users["recent_category_ids"] = [
        [] if i == 5 else c for i, c in enumerate(users["recent_category_ids"])
    ]
    return make_feast_user_store(tmp_path_factory.mktemp("feast_users"), users), users


def test_online_store_read_equals_the_sdk_row_for_every_user(feast_users):
    adapter, users = feast_users
    src = FeastUserFeatures(adapter, timeout_s=1.0)
    assert src.mode == "inline"  # SQLite: one local indexed read, no thread hand-off
    for uid in users["user_id"].tolist():
        sdk = {k: v[0] for k, v in adapter.online_user_features([uid]).items()}
        row = asyncio.run(src.get(uid))
        assert row is not None and row == sdk
        assert row["n_purchases"] == users.loc[uid, "n_purchases"]
    five = asyncio.run(src.get(5))
    assert five is not None and five["recent_category_ids"] == []


def test_unknown_user_is_none_like_the_sdk(feast_users):
    adapter, _ = feast_users
    src = FeastUserFeatures(adapter, timeout_s=1.0)
    sdk = adapter.online_user_features([10**9])
    assert all(v[0] is None for k, v in sdk.items() if k != "user_id")
    assert asyncio.run(src.get(10**9)) is None


def test_thread_mode_answers_the_same(feast_users):
    adapter, users = feast_users
    src = FeastUserFeatures(adapter, timeout_s=1.0)
    src.mode = "thread"  # the path for online stores without an async read
    assert asyncio.run(src.get(7)) == {
        k: v[0] for k, v in adapter.online_user_features([7]).items()
    }


def test_redis_online_store_is_read_async_and_equals_the_sdk(tmp_path):
    adapter = make_feast_user_store(tmp_path, make_users(12, seed=4), env="production")
    try:
        src = FeastUserFeatures(adapter, timeout_s=2.0)
        assert src.mode == "async"  # Feast's async Redis client: nothing blocks the event loop

        async def read_all() -> list:
            return [await src.get(u) for u in (0, 5, 11, 10**9)]

        rows = asyncio.run(read_all())
        for uid, row in zip((0, 5, 11), rows, strict=False):
            assert row == {k: v[0] for k, v in adapter.online_user_features([uid]).items()}
        assert rows[-1] is None
    finally:
        adapter.teardown()
