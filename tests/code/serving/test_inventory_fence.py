"""The replica's read fence without Redis: a lookup rides only a read that started after its
arrival, concurrent lookups share one read, a failed or late read answers False at once or at the
bound, and the bounds follow the call's window."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from checkout_recs.serving.inventory_fence import (
    ReadFence,
    current_window,
    reset_window,
    set_window,
)


class FakeStream:
    """A fence read that proves the replica current at its send time, optionally held or failing."""

    def __init__(self) -> None:
        self.proven = float("-inf")
        self.reads: list[float] = []  # perf_counter send time of each read
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail = False

    def read(self) -> float:
        sent = time.perf_counter()
        self.reads.append(sent)
        self.started.set()
        assert self.hold.wait(10)
        if self.fail:
            raise ConnectionError("redis down")
        self.proven = max(self.proven, sent)
        return sent


@pytest.fixture
def stream() -> FakeStream:
    return FakeStream()


@pytest.fixture
def fence(stream):  # noqa: ANN201
    f = ReadFence(stream.read, lambda: stream.proven, max_wait_s=2.0).start()
    yield f
    stream.hold.set()
    f.close()


def test_a_burst_of_300_that_arrived_together_shares_one_read(fence, stream):
    async def burst() -> list[bool]:
        arrived = time.perf_counter()
        return list(await asyncio.gather(*(fence.wait(arrived, arrived + 2.0) for _ in range(300))))

    assert all(asyncio.run(burst()))
    assert len(stream.reads) <= 2  # one read, or one more for waiters registered after it started
    st = fence.stats
    assert st.lookups == 300 and st.fenced + st.proven == 300 and st.timed_out == st.failed == 0


def test_a_lookup_never_rides_a_read_that_started_before_it_arrived(fence, stream):
    async def scenario() -> tuple[bool, bool, int]:
        stream.hold.clear()
        early = asyncio.ensure_future(fence.wait(time.perf_counter(), time.perf_counter() + 2))
        await asyncio.to_thread(stream.started.wait, 5)  # the read for ``early`` is now out
        late_arrival = time.perf_counter()
        assert late_arrival > stream.reads[0]
        late = asyncio.ensure_future(fence.wait(late_arrival, late_arrival + 2))
        await asyncio.sleep(0.05)
        stream.hold.set()  # the first read returns: ``early`` rides it, ``late`` needs its own
        ok_early, ok_late = await early, await late
        return ok_early, ok_late, len(stream.reads)

    ok_early, ok_late, reads = asyncio.run(scenario())
    assert ok_early and ok_late and reads == 2
    assert stream.reads[1] >= stream.reads[0]


def test_already_proven_after_arrival_means_no_read_and_no_wait(fence, stream):
    stream.proven = time.perf_counter()
    coro = fence.wait(stream.proven - 0.001, stream.proven + 1.0)
    with pytest.raises(StopIteration) as done:  # finishes on its first step: nothing awaited
        coro.send(None)
    assert done.value.value is True and stream.reads == [] and fence.stats.proven == 1


def test_a_failed_read_answers_false_at_once(fence, stream):
    stream.fail = True
    t0 = time.perf_counter()
    assert asyncio.run(fence.wait(t0, t0 + 2.0)) is False
    assert time.perf_counter() - t0 < 1.0 and fence.stats.failed == 1
    assert fence.stats.read_errors >= 1


def test_a_late_read_answers_false_at_the_bound_and_proves_later_arrivals(fence, stream):
    stream.hold.clear()
    t0 = time.perf_counter()
    assert asyncio.run(fence.wait(t0, t0 + 0.1)) is False
    assert 0.09 <= time.perf_counter() - t0 < 1.0 and fence.stats.timed_out == 1
    stream.hold.set()  # the read comes back: it was sent after t0, so t0's arrival is proven now
    assert _eventually(lambda: stream.proven >= t0)
    assert asyncio.run(fence.wait(t0, t0 + 2.0)) is True and fence.stats.proven == 1


def test_bounds_follow_the_calls_window():
    f = ReadFence(lambda: 0.0, lambda: 0.0, max_wait_s=0.5, reserve_s=0.02)
    now = time.perf_counter()
    since, until = f.bounds()  # no window: arrival is now, the fence's own bound
    assert now <= since <= time.perf_counter() and until == pytest.approx(since + 0.5, abs=0.01)
    token = set_window(now - 1.0, now + 0.1)
    try:
        assert current_window() is not None
        since, until = f.bounds()
        assert since == now - 1.0 and until == pytest.approx(now + 0.08)  # deadline less reserve
    finally:
        reset_window(token)
    assert current_window() is None


def _eventually(cond, timeout_s: float = 5.0) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())
