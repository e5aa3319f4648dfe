"""Live inventory end to end with a real Redis: the stream, the consumer process, the replica in
the transformer.

* the burst race: four listings sold through the stream, then at once 300 concurrent checkouts
  through the transformer's stages (preprocess → predict → postprocess) on an event loop kept
  saturated — not one answer shows a sold listing; and again through ``CheckoutTransformer.__call__``
  (arrival stamped as the REST route does) with the replica's tail slowed by 300 ms a read (the
  issue's propagation delay, made certain), so that only the read fence keeps the sales out:
  none shown, the ranker answers, a fence read or two for the burst;
* the fence unavailable: Redis stopped (SIGSTOP) — the answer comes at the fence's bound, says
  ``inventory_stale`` and shows only listings of known state, and the ranker answers again once
  Redis resumes; Redis killed — the same, without waiting for the bound;
* the consumer process killed (SIGKILL) mid-stream and restarted under another name: every event
  applied, the state equals the events' last sequence per listing, nothing left pending, lag 0 on
  its ``/metrics``;
* the replica past its lag bound (Redis killed): the answer says ``inventory_stale`` and shows
  only listings whose state is known; the fallback path filtered by the same replica;
* the transformer server is not ready until its replica is, and exports the replica's age.

Redis isolation: DB 13 with a private prefix (deleted at teardown), or a throw-away redis-server.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from checkout_recs import contract
from checkout_recs.models.ranker import RankerModel
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.inventory import MemoryInventoryStore, RedisInventoryStore
from checkout_recs.serving.inventory_replica import ReplicaInventoryStore
from checkout_recs.serving.inventory_stream import (
    InventoryConsumer,
    RedisStreamSource,
    publish_events,
    stream_key,
)
from checkout_recs.serving.recommender import Recommender, TableUserFeatures
from inference.deadline import RequestClock, reset_clock, set_clock
from inference.launch import free_port, running_servers
from inference.transformer import CheckoutTransformer
from tests.fixtures_inventory import (
    REDIS_URL,
    ev,
    inv_prefix,
    kill_redis,
    private_redis,
    wait_for,
)
from tests.fixtures_inventory import interleaved_history as _history
from tests.fixtures_serving import make_serving_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
BASKET = [1000, 1003]
UNKNOWN_USER = 999_999


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_serving_bundle(tmp_path_factory.mktemp("inv") / "bundle", n_listings=1500)


@pytest.fixture(scope="module")
def bundle(bundle_dir) -> ServingBundle:
    return ServingBundle.load(bundle_dir)


def _transformer(bundle: ServingBundle, inventory) -> CheckoutTransformer:
    rec = Recommender(bundle, TableUserFeatures(bundle.users), inventory)
    t = CheckoutTransformer(rec, None, RankerModel.load(bundle.model_dir).predict)
    return t


def _body(user: int, basket=BASKET) -> dict:
    return {
        "instances": [
            {"user_id": user, "purchased_item_ids": basket, "region": "north", "device": "web"}
        ]
    }


async def _answer(t: CheckoutTransformer, body: dict) -> dict:
    job = await t.preprocess(body)
    job = await t.predict(job)
    return (await t.postprocess(job))["predictions"][0]


async def _call(t: CheckoutTransformer, body: dict, arrived: float) -> dict:
    """Through ``CheckoutTransformer.__call__`` (kserve's ``Model.__call__``), arrived at ``arrived``
    (perf_counter s) as the REST route stamps it."""
    token = set_clock(RequestClock(arrived))
    try:
        resp, _ = await t(body)
        return resp["predictions"][0]
    finally:
        reset_clock(token)


def _ids(pred: dict) -> list[int]:
    return [i["listing_id"] for i in pred["items"]]


class LiveInventory:
    """Stream + consumer thread + replica on one prefix."""

    def __init__(self, url: str, prefix: str, **replica_kw) -> None:
        self.r = redis.Redis.from_url(url)
        self.stream = stream_key(prefix)
        src = RedisStreamSource(url, self.stream, consumer="test", claim_idle_ms=0)
        self.consumer = InventoryConsumer(
            src, RedisInventoryStore(url, prefix=prefix, timeout_s=2.0), block_ms=50
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self.consumer.run, args=(self.stop,), kwargs={"retry_s": 0.1}, daemon=True
        )
        self.thread.start()
        self.replica = ReplicaInventoryStore(url, prefix=prefix, block_ms=50, **replica_kw).start()
        assert self.replica.wait_ready(20)

    def publish(self, events) -> None:
        publish_events(self.r, self.stream, events)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.replica.close()


async def _saturate(stop: asyncio.Event) -> None:
    """Keep the loop busy: 3 ms of CPU between yields until ``stop``."""
    while not stop.is_set():
        end = time.perf_counter() + 0.003
        while time.perf_counter() < end:
            pass
        await asyncio.sleep(0)


def test_burst_of_300_right_after_four_sales_shows_none_of_them(bundle, inv_prefix):  # noqa: F811
    live = LiveInventory(REDIS_URL, inv_prefix)
    try:
        t = _transformer(bundle, live.replica)
        users = list(range(10))
        before = asyncio.run(_gather(t, users))
        shown = collections.Counter(lid for p in before for lid in _ids(p))
        sold = [lid for lid, _ in shown.most_common(4)]
        assert sum(shown[x] for x in sold) >= 10  # they were being shown to this burst's buyers

        async def burst() -> list[dict]:
            live.publish([ev(lid, "sold", 10) for lid in sold])  # then at once:
            stop = asyncio.Event()
            hogs = [asyncio.ensure_future(_saturate(stop)) for _ in range(4)]
            out = await asyncio.gather(*(_answer(t, _body(users[i % 10])) for i in range(300)))
            stop.set()
            await asyncio.gather(*hogs)
            return list(out)

        answers = asyncio.run(burst())
        assert len(answers) == 300 and all(len(set(_ids(p))) == 6 for p in answers)
        assert sum(bool(set(sold) & set(_ids(p))) for p in answers) == 0
        assert {p["policy"] for p in answers} == {
            "ranker"
        }  # known buyers, current replica: the ranker answers
    finally:
        live.close()


def test_burst_right_after_sales_is_fenced_even_with_a_slow_tail(bundle, inv_prefix):  # noqa: F811
    live = LiveInventory(REDIS_URL, inv_prefix, max_lag_s=30.0)
    try:
        t = _transformer(bundle, live.replica)
        users = list(range(10))
        before = asyncio.run(_gather(t, users))
        shown = collections.Counter(lid for p in before for lid in _ids(p))
        sold = [lid for lid, _ in shown.most_common(4)]
        real = live.replica._r.xread

        def slow_xread(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            time.sleep(0.3)  # every tail read is sent 300 ms late: the sales reach memory late
            return real(*args, **kwargs)

        live.replica._r.xread = slow_xread
        time.sleep(0.4)
        reads0, lookups0 = live.replica.fence.stats.reads, live.replica.fence.stats.lookups

        async def burst() -> list[dict]:
            live.publish([ev(lid, "sold", 10) for lid in sold])  # then at once:
            arrived = time.perf_counter()
            stop = asyncio.Event()
            hogs = [asyncio.ensure_future(_saturate(stop)) for _ in range(4)]
            out = await asyncio.gather(
                *(_call(t, _body(users[i % 10]), arrived) for i in range(300))
            )
            stop.set()
            await asyncio.gather(*hogs)
            return list(out)

        answers = asyncio.run(burst())
        assert len(answers) == 300 and all(len(set(_ids(p))) == 6 for p in answers)
        assert sum(bool(set(sold) & set(_ids(p))) for p in answers) == 0
        assert {p["policy"] for p in answers} == {"ranker"}  # fenced, not the stale fallback
        st = live.replica.fence.stats
        # coalesced: a read or two for the burst (none when a slow tail read happened to be sent
        # after the arrival and proved it first, as on a loaded box)
        assert st.reads - reads0 <= 2 and st.lookups - lookups0 == 300
        assert live.replica.unavailable(np.array(sold)).all()
    finally:
        live.close()


def test_fence_unavailable_answers_from_known_state_then_recovers(bundle):
    with private_redis() as (url, proc):
        live = LiveInventory(url, "cr", max_lag_s=30.0, in_play_s=60.0, fence_max_wait_s=0.2)
        try:
            t = _transformer(bundle, live.replica)
            assert asyncio.run(_answer(t, _body(3)))["policy"] == "ranker"
            os.kill(proc.pid, signal.SIGSTOP)  # Redis stalls: the fence read cannot come back
            try:
                t0 = time.perf_counter()
                pred = asyncio.run(_answer(t, _body(3)))
                waited = time.perf_counter() - t0
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            assert pred["policy"] == "fallback" and pred["fallback_reason"] == "inventory_stale"
            assert 0.19 <= waited < 2.0  # the fence's bound, then the lag rule at once
            assert len(set(_ids(pred))) == 6
            assert not live.replica.last_known_unavailable(np.array(_ids(pred))).any()
            assert live.replica.fence.stats.timed_out == 1 and not live.replica.stale()
            assert wait_for(
                lambda: asyncio.run(_answer(t, _body(3)))["policy"] == "ranker", 10, 0.1
            )  # Redis resumed: fenced again
            kill_redis(proc)  # Redis gone: the fence read fails (refused, no retry)
            st = live.replica.fence.stats
            errors = st.read_errors
            pred = asyncio.run(_answer(t, _body(UNKNOWN_USER)))
            assert pred["fallback_reason"] == "inventory_stale" and len(set(_ids(pred))) == 6
            assert st.read_errors > errors
        finally:
            live.close()


async def _gather(t: CheckoutTransformer, users: list[int]) -> list[dict]:
    return list(await asyncio.gather(*(_answer(t, _body(u)) for u in users)))


def _consumer_proc(prefix: str, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inference.inventory_consumer",
            "--redis_url",
            REDIS_URL,
            "--redis_prefix",
            prefix,
            "--consumer",
            name,
            "--batch",
            "100",
            "--block_ms",
            "100",
            "--progress_every_s",
            "0.5",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_consumer_killed_mid_stream_loses_nothing_and_applies_nothing_twice(inv_prefix):  # noqa: F811
    events = _history(1000, 20, seed=5)
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    publish_events(r, stream_key(inv_prefix), events)
    group = "inventory-appliers"

    def entries_read() -> int:
        gs = r.xinfo_groups(stream_key(inv_prefix)) if r.exists(stream_key(inv_prefix)) else []
        return next((int(g["entries-read"] or 0) for g in gs if g["name"] == group), 0)

    first = _consumer_proc(inv_prefix, "first", "--metrics_port", "0")
    try:
        assert wait_for(lambda: entries_read() >= 4000, 60)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    done_before = entries_read()
    assert 0 < done_before < len(events)  # killed mid-stream
    port = free_port()
    second = _consumer_proc(
        inv_prefix, "second", "--claim_idle_ms", "0", "--metrics_port", str(port)
    )
    src = RedisStreamSource(REDIS_URL, stream_key(inv_prefix), consumer="observer")
    try:
        assert wait_for(lambda: src.lag().entries == 0, 120, every_s=0.2)
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        )  # noqa: S310
        assert "checkout_recs_inventory_consumer_lag_entries 0.0" in metrics
        assert _alert_metrics("consumer") <= _sample_names(metrics)  # what its alerts read
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        assert second.wait(20) == 0
    ref = MemoryInventoryStore(clock=time.time)
    ref.apply_batch(events)
    assert {
        int(k): int(v) for k, v in r.hgetall(f"{inv_prefix}:seq").items()
    } == ref._seq  # last sequence each
    ids = np.arange(1, 1001)
    store = RedisInventoryStore(REDIS_URL, prefix=inv_prefix, timeout_s=2.0)
    np.testing.assert_array_equal(store.unavailable(ids), ref.unavailable(ids))
    assert r.xpending(stream_key(inv_prefix), group)["pending"] == 0


def test_fallback_answers_are_filtered_by_the_replica(bundle, inv_prefix):  # noqa: F811
    live = LiveInventory(REDIS_URL, inv_prefix)
    try:
        t = _transformer(bundle, live.replica)
        first = asyncio.run(_answer(t, _body(UNKNOWN_USER)))
        assert first["fallback_reason"] == "unknown_user"
        live.publish([ev(lid, "sold", 1) for lid in _ids(first)])
        assert wait_for(lambda: live.replica.unavailable(np.array(_ids(first))).all(), 5)
        again = asyncio.run(_answer(t, _body(UNKNOWN_USER)))
        assert again["fallback_reason"] == "unknown_user" and len(set(_ids(again))) == 6
        assert not set(_ids(first)) & set(_ids(again))
    finally:
        live.close()


def test_stale_replica_says_so_and_shows_only_known_state(bundle):
    with private_redis() as (url, proc):
        live = LiveInventory(url, "cr", max_lag_s=0.5, in_play_s=60.0)
        try:
            t = _transformer(bundle, live.replica)
            fb = _ids(
                asyncio.run(_answer(t, _body(UNKNOWN_USER)))
            )  # what the fallback shows this basket
            live.publish(
                [
                    ev(fb[0], "sold", 1),
                    ev(fb[1], "locked", 1, ttl=600),
                    ev(fb[1], "unlocked", 2),
                    ev(fb[2], "listed", 1),
                    ev(fb[3], "locked", 1, ttl=1),
                ]
            )
            assert wait_for(lambda: live.replica.report.read >= 5, 5)
            kill_redis(proc)
            assert wait_for(live.replica.stale, 5)
            time.sleep(1.0)  # fb[3]'s lock has expired by its clock; stale, its outcome is unknown
            for user in (3, UNKNOWN_USER):
                pred = asyncio.run(_answer(t, _body(user)))
                assert pred["policy"] == "fallback" and pred["fallback_reason"] == "inventory_stale"
                assert len(set(_ids(pred))) == 6 and not set(fb[:4]) & set(_ids(pred))
                assert not live.replica.last_known_unavailable(np.array(_ids(pred))).any()
        finally:
            live.close()
    assert "inventory_stale" in contract.FallbackReason.__args__  # type: ignore[attr-defined]


def test_server_is_ready_only_with_a_current_replica(bundle_dir, inv_prefix):  # noqa: F811
    args = [
        "--inventory",
        "replica",
        "--redis_prefix",
        inv_prefix,
        "--switches",
        "none",
        "--scoring",
        "inprocess",
        "--huge_pages",
        "off",
    ]
    with (
        pytest.raises(RuntimeError, match="not ready"),
        running_servers(
            bundle_dir,
            transformer_args=[*args, "--redis_url", "redis://127.0.0.1:1/0"],
            start_predictor=False,
            ready_timeout_s=8,
        ),
    ):
        pass
    with running_servers(
        bundle_dir, transformer_args=[*args, "--redis_url", REDIS_URL], start_predictor=False
    ) as s:
        base = s.transformer_url
        assert urllib.request.urlopen(f"{base}/v2/health/ready", timeout=5).status == 200  # noqa: S310
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()  # noqa: S310
        assert "checkout_recs_inventory_replica_age_seconds" in metrics
        assert "checkout_recs_inventory_replica_stale 0.0" in metrics
        assert _alert_metrics("replica", "fence") <= _sample_names(metrics)  # what the alerts read


def _alert_metrics(*kinds: str) -> set[str]:
    """Metric names the inventory alerts (``monitoring/alerts/prometheus-rules.yaml``) read, of
    ``checkout_recs_inventory_<kind>_*``."""
    doc = yaml.safe_load((ROOT / "monitoring" / "alerts" / "prometheus-rules.yaml").read_text())
    exprs = " ".join(r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r)
    names = set(re.findall(r"checkout_recs_inventory_[a-z_]+", exprs))
    assert names, "no inventory alert found"
    return {n for n in names if any(n.startswith(f"checkout_recs_inventory_{k}_") for k in kinds)}


def _sample_names(metrics_text: str) -> set[str]:
    return {s.name for fam in text_string_to_metric_families(metrics_text) for s in fam.samples}


def _post(url: str, body: dict) -> tuple[int, Any, dict]:
    """(status, headers (case-insensitive), JSON body) of a v1 call."""
    req = urllib.request.Request(  # noqa: S310 - loopback
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


def test_served_with_unproven_refuse_a_stalled_redis_gets_503_never_a_guess(bundle_dir):
    """``checkout-recs serve --inventory replica --inventory_unproven refuse`` (the served process):
    Redis stalled (SIGSTOP) → the fence is unread → 503 with ``Retry-After`` and a reason, counted
    on ``/metrics``; the ranker answers again once Redis resumes; Redis killed → 503 again."""
    with private_redis() as (url, proc):
        args = [
            *("--inventory", "replica", "--redis_url", url, "--redis_prefix", "cr"),
            *("--inventory_unproven", "refuse", "--inventory_fence_ms", "200"),
            *("--switches", "none", "--scoring", "inprocess", "--huge_pages", "off"),
        ]
        with running_servers(bundle_dir, transformer_args=args, start_predictor=False) as s:
            code, _, out = _post(s.v1_url, _body(3))
            assert code == 200 and out["predictions"][0]["policy"] == "ranker"
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                code, headers, out = _post(s.v1_url, _body(3))
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            assert code == 503 and "inventory_stale" in out["error"]
            assert int(headers.get("Retry-After")) >= 1
            metrics = urllib.request.urlopen(f"{s.transformer_url}/metrics", timeout=5).read()  # noqa: S310
            refused = [
                smp.value
                for fam in text_string_to_metric_families(metrics.decode())
                for smp in fam.samples
                if smp.name == "checkout_recs_shed_total"
                and smp.labels.get("point") == "inventory_unproven"
            ]
            assert refused == [1.0]
            assert wait_for(
                lambda: (
                    _post(s.v1_url, _body(3))[2].get("predictions", [{}])[0].get("policy")
                    == "ranker"
                ),
                10,
                0.2,
            )
            kill_redis(proc)
            code, _, out = _post(s.v1_url, _body(UNKNOWN_USER))
            assert code == 503 and "inventory_stale" in out["error"]
