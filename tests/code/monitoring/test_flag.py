"""The drift flag: set/clear/read round trip, history, a hand-set payload, Redis down."""

from __future__ import annotations

import pytest

from monitoring.flag import (
    DriftFlagUnavailable,
    clear_drift_flag,
    flag_history,
    read_drift_flag,
    redis_client,
    set_drift_flag,
)
from tests.fixtures_measure import redis_flag_fixture  # noqa: F401  (pytest fixture)


def test_set_read_clear_and_history(redis_flag) -> None:
    client, key = redis_flag
    assert read_drift_flag(client, key) is None
    flag = set_drift_flag(
        client, who="monitoring-job", why="price drifted", report="/r/drift_report.html", key=key
    )
    got = read_drift_flag(client, key)
    assert got == flag and got.report == "/r/drift_report.html"
    assert clear_drift_flag(client, who="alice", why="retrained", key=key) == flag
    assert read_drift_flag(client, key) is None
    assert clear_drift_flag(client, who="alice", why="again", key=key) is None
    events = flag_history(client, key)
    assert [e.action for e in events] == ["clear", "clear", "set"]
    assert events[-1].who == "monitoring-job"


def test_hand_set_garbage_still_counts_as_set(redis_flag) -> None:
    client, key = redis_flag
    client.set(key, "on")
    flag = read_drift_flag(client, key)
    assert flag is not None and flag.who == "unknown" and "on" in flag.why


def test_redis_down_raises_a_clear_error() -> None:
    client = redis_client("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(DriftFlagUnavailable, match="cannot read"):
        read_drift_flag(client)
    with pytest.raises(DriftFlagUnavailable, match="cannot write"):
        set_drift_flag(client, who="x", why="y")
