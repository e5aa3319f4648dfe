"""Parts of ``benchmarks/inventory_stream.py``: the private Redis, the publisher process, the
checkout-flow event generator, the truth read back from the stream and the answer check, the
synthetic serving inputs, and the HTML summary.

Nothing here runs the transformer; ``inventory_stream.py`` does.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import heapq
import html
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.inventory import InventoryEvent, MemoryInventoryStore
from checkout_recs.serving.inventory_stream import encode_event

PREFIX = "bench_inv"
REGIONS = ("north", "south", "east", "west")
_BG_TYPES = ("locked", "unlocked", "sold", "listed", "delisted")
_BG_WEIGHTS = (0.35, 0.25, 0.15, 0.2, 0.05)


def publisher(
    url: str,
    stream: str,
    listing_ids: list[int],
    rate: Any,
    mode: Any,
    stop: Any,
    sent: Any,
    ready: Any,
) -> None:
    """Publisher process: ``rate.value`` events/s until ``stop`` is set, paced by the wall clock
    (what a late tick owes goes with the next, in chunks of at most 2,000); ``mode.value`` 0 =
    random events, 1 = the checkout flow (``CheckoutFlow``)."""
    import hiredis

    rng = np.random.default_rng(os.getpid())
    flow = CheckoutFlow(listing_ids, rng)
    host, port = url.split("//")[1].split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)))
    reader = hiredis.Reader()
    ready.set()
    owed, last = 0.0, time.perf_counter()
    while not stop.is_set():
        now = time.perf_counter()
        owed, last = owed + rate.value * (now - last), now
        n = min(int(owed), 2000)
        if n:
            owed -= n
            events = flow.step(n) if mode.value == 1 else _random_events(rng, listing_ids, n)
            try:
                _send_raw(sock, reader, stream, events)
            except (OSError, hiredis.ProtocolError):
                return  # Redis is gone: no event can exist any more
            sent.value += len(events)
        time.sleep(0.002)


def _send_raw(sock: socket.socket, reader: Any, stream: str, events: list[InventoryEvent]) -> None:
    """``XADD`` each event, packed by hiredis, in one write; waits for every reply."""
    import hiredis

    out = []
    for ev in events:
        f = encode_event(ev)
        out.append(
            hiredis.pack_command(
                (
                    "XADD",
                    stream,
                    "*",
                    *[x for kv in f.items() for x in kv],
                    "bench_pub_ns",
                    str(time.time_ns()),
                )
            )
        )
    sock.sendall(b"".join(out))
    got = 0
    while got < len(events):
        data = sock.recv(1 << 16)
        if not data:
            raise OSError("connection closed")
        reader.feed(data)
        while reader.gets() is not False:
            got += 1


def _random_events(
    rng: np.random.Generator, listing_ids: list[int], n: int
) -> list[InventoryEvent]:
    lids: list[int] = rng.choice(listing_ids, n).tolist() if n else []
    types = rng.choice(len(_BG_TYPES), n, p=_BG_WEIGHTS)
    ttls = rng.integers(2, 31, n)
    now = time.time()
    return [
        InventoryEvent(lid, _BG_TYPES[t], time.time_ns(), ttl if t == 0 else None, now)
        for lid, t, ttl in zip(lids, types.tolist(), ttls.tolist(), strict=True)
    ]


class CheckoutFlow:
    """Events as checkouts make them: lock, then sold or unlocked; sold and delisted listings come back."""

    def __init__(self, listing_ids: list[int], rng: np.random.Generator) -> None:
        self.ids, self.rng = [int(x) for x in listing_ids], rng
        self.busy: set[int] = set()
        self.due: list[tuple[float, int, str]] = []  # (when, listing, event type), a heap

    def step(self, n: int) -> list[InventoryEvent]:
        """About ``n`` events: the follow-ups now due, then new actions for the rest."""
        now, out = time.time(), list[InventoryEvent]()
        while self.due and self.due[0][0] <= now and len(out) < n:
            _, lid, kind = heapq.heappop(self.due)
            out.append(InventoryEvent(lid, kind, time.time_ns(), None, now))
            if kind == "sold":
                heapq.heappush(self.due, (now + self.rng.uniform(5, 20), lid, "listed"))
            else:
                self.busy.discard(lid)
        for _ in range(max(0, n - len(out))):
            lid = self.ids[int(self.rng.integers(len(self.ids)))]
            if lid in self.busy:
                continue
            self.busy.add(lid)
            if self.rng.random() < 0.03:
                out.append(InventoryEvent(lid, "delisted", time.time_ns(), None, now))
                heapq.heappush(self.due, (now + self.rng.uniform(5, 20), lid, "listed"))
                continue
            out.append(
                InventoryEvent(lid, "locked", time.time_ns(), int(self.rng.integers(5, 31)), now)
            )
            kind = "sold" if self.rng.random() < 0.7 else "unlocked"
            heapq.heappush(self.due, (now + self.rng.uniform(0.5, 5.0), lid, kind))
        return out


@dataclass
class Truth:
    """Per listing, the state after each event in stream order (the store's sequence rule)."""

    times: dict[int, list[int]] = field(default_factory=dict)  # stream ms of each effective event
    entry_ids: dict[int, list[str]] = field(default_factory=dict)  # and its stream id
    states: dict[int, list[tuple[str | None, float]]] = field(
        default_factory=dict
    )  # (state, lock end, Unix s)
    last_seq: dict[int, int] = field(default_factory=dict)
    entries: int = 0
    last_id: str = "-"

    def add(self, entry_id: str, f: dict[str, str]) -> None:
        """Apply one stream entry (ignored when its sequence is not newer, like the store)."""
        self.entries += 1
        lid, seq = int(f["listing_id"]), int(f["sequence"])
        if seq <= self.last_seq.get(lid, -1):
            return
        self.last_seq[lid] = seq
        etype, ts = f["event_type"], int(f["event_ts_ms"]) / 1e3
        state = {"sold": "sold", "delisted": "delisted", "locked": "locked"}.get(etype)
        end = ts + int(f["lock_ttl_s"]) if etype == "locked" else float("inf")
        self.times.setdefault(lid, []).append(int(entry_id.split("-")[0]))
        self.entry_ids.setdefault(lid, []).append(entry_id)
        self.states.setdefault(lid, []).append((state, end))

    def unavailable_throughout(
        self, lid: int, t0: float, t1: float
    ) -> tuple[float, str, str] | None:
        """(stream time, Unix s; id; state it set) of the event that made ``lid`` unavailable before
        ``t0`` when it stayed unavailable until ``t1`` (Unix s), else None."""
        times = self.times.get(lid)
        if not times:
            return None
        i = bisect.bisect_left(times, int(t0 * 1000)) - 1  # strictly earlier milliseconds
        if i < 0:
            return None
        j = bisect.bisect_left(times, int(t1 * 1000)) - 1
        for k in range(i, j + 1):
            state, end = self.states[lid][k]
            until = times[k + 1] / 1e3 if k < j else t1
            if state is None or (state == "locked" and end <= until):
                return None
        return times[i] / 1e3, self.entry_ids[lid][i], str(self.states[lid][i][0])

    def read(self, r: Any, stream: str) -> Truth:
        """Every entry of ``stream`` after the last one read."""
        while True:
            lo = "-" if self.last_id == "-" else f"({self.last_id}"
            page = r.xrange(stream, min=lo, max="+", count=10_000)
            if not page:
                return self
            for eid, f in page:
                self.add(eid, f)
            self.last_id = page[-1][0]


def build_bundle(workdir: Path, listings: int, users: int) -> ServingBundle:
    """A catalogue-only synthetic bundle with the tiny ranker (its input plan builds the matrix; the
    numpy stand-in scores it)."""
    from checkout_recs.serving.bundle_layout import BundleLayout
    from checkout_recs.serving.bundle_writer import assemble_bundle
    from checkout_recs.synthetic.serving import (
        make_pairs,
        make_snapshot,
        make_users,
        train_tiny_ranker,
    )

    out, stage = workdir / "bundle", workdir / "inputs"
    labels, features, model = stage / "labels", stage / "features", BundleLayout(stage)
    for d in (labels, features, model.model_dir):
        d.mkdir(parents=True, exist_ok=True)
    pairs, co = make_pairs(0)
    pairs.to_parquet(labels / "category_pairs.parquet")
    co.to_parquet(labels / "co_purchase_items.parquet")
    snap, user_table = make_snapshot(listings, seed=0), make_users(users, seed=0)
    user_table.to_parquet(features / "user.parquet")
    train_tiny_ranker(snap, user_table, model.ranker_dir, 0)
    assemble_bundle(
        model.model_dir, labels, features, out, snapshot=snap, index_version="bench-inv"
    )
    bundle = ServingBundle.load(out)
    bundle.prepare_plan()
    return bundle


def numpy_scorer(seed: int = 0) -> Any:
    """``matrix (n, d) -> (p_click, p_purchase)``: a fixed random projection through a sigmoid."""
    rng = np.random.default_rng(seed)
    w: dict[int, np.ndarray] = {}

    def score(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = m.shape[1]
        if d not in w:
            w[d] = np.asarray(rng.normal(0, 1, d), dtype=np.float32)
        z = np.nan_to_num(m) @ w[d]
        return 0.2 / (1 + np.exp(-z)), np.full(len(m), 0.3)

    return score


def make_bodies(n: int, users: int, listing_ids: np.ndarray, seed: int) -> list[dict]:
    """``n`` v1 bodies: known users, baskets of 1-2 catalogue listings, the four regions."""
    rng = np.random.default_rng(seed)
    return [
        {
            "instances": [
                {
                    "user_id": int(rng.integers(0, users)),
                    "purchased_item_ids": [
                        int(x) for x in rng.choice(listing_ids, rng.integers(1, 3))
                    ],
                    "region": REGIONS[i % 4],
                    "device": "web",
                }
            ]
        }
        for i in range(n)
    ]


@dataclass
class PhaseCheck:
    """Answers of one phase, checked against the truth chunk by chunk (then dropped)."""

    bound_s: float
    answers: int = 0
    bursts: int = 0
    bad: int = 0
    beyond: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    cases: collections.Counter = field(default_factory=collections.Counter)
    pending: list[tuple[float, list[tuple[dict, float]]]] = field(default_factory=list)
    stalls: list[dict] = field(default_factory=list)  # ``stall_redis``'s log (wall times)

    def add(self, arrival: float, preds: list[tuple[dict, float]]) -> None:
        """Answers ``(prediction, completion Unix s)`` of requests that arrived at ``arrival`` (Unix s)."""
        self.pending.append((arrival, preds))

    def check(self, truth: Truth, applied: dict[str, float]) -> None:
        """Check the pending answers against ``truth`` (read up to after their completion)."""
        for t, preds in self.pending:
            for p, done in preds:
                self.answers += 1
                why = p.get("fallback_reason") or "none (ranker)"
                self.reasons[why] += 1
                if "error" in p:
                    self.errors[p["error"]] += 1
                hits = [truth.unavailable_throughout(i["listing_id"], t, done) for i in p["items"]]
                hit = [h for h in hits if h is not None]
                if hit:
                    self.bad += 1
                    at, eid, kind = max(hit)
                    self.beyond += int((t - at) > self.bound_s)
                    ap = applied.get(eid)
                    late = None if ap is None else round((ap - t) * 1e3, 1)
                    lid = next(
                        i["listing_id"]
                        for i, h in zip(p["items"], hits, strict=True)
                        if h is not None and h[1] == eid
                    )
                    key = (why, round((t - at) * 1e3, 1), kind, lid, late, self._stall(t, at))
                    self.cases[key] += 1
        self.pending.clear()

    def _stall(self, t: float, at: float) -> float | None:
        """When the request (arrived ``t``) came during a Redis stall: how long before that stall's
        ``DEBUG SLEEP`` was sent the event (stream time ``at``) was appended, ms (Unix s in)."""
        for x in self.stalls:
            if x["sent"] <= t <= x["back"]:
                return round((x["sent"] - at) * 1e3, 1)
        return None

    def figures(self, wall_s: float) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "answers": self.answers,
            "refused": self.reasons["shed"],  # 503 + Retry-After: no listing shown
            "answered": self.answers - self.reasons["shed"] - self.reasons["error"],
            "bursts": self.bursts,
            "wall_s": round(wall_s, 1),
            "answers_per_s": round(self.answers / wall_s, 1) if wall_s else None,
            "with_unavailable_shown": self.bad,
            "with_unavailable_shown_older_than_bound": self.beyond,
            "violations": [
                {
                    "fallback_reason": w,
                    "event_age_ms": a,
                    "state": k,
                    "listing_id": lid,
                    "replica_applied_after_arrival_ms": b,
                    "arrived_in_a_stall_event_ms_before_it": st,
                    "answers": c,
                }
                for (w, a, k, lid, b, st), c in sorted(
                    self.cases.items(), key=lambda kv: (kv[0][0] == "inventory_stale", str(kv))
                )[:40]
            ],
            "fallback_reasons": dict(self.reasons),
            "errors": dict(self.errors),
        }


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def compare_state(r: Any, ref: MemoryInventoryStore, listing_ids: list[int]) -> dict[str, Any]:
    """The consumer's Redis state (``<prefix>:inv:<id>`` value and remaining lock time) against
    ``ref`` (the stream applied in memory, lock ends as Unix s), listing by listing; a listing
    whose lock ends within 2 s of the comparison on either side is counted apart (the two reads
    straddle its expiry)."""
    pipe = r.pipeline(transaction=False)
    for lid in listing_ids:
        pipe.get(f"{PREFIX}:inv:{lid}")
        pipe.pttl(f"{PREFIX}:inv:{lid}")
    vals, now = pipe.execute(), time.time()
    mismatched, edge, worst = 0, 0, 0.0
    for j, lid in enumerate(listing_ids):
        value, pttl = vals[2 * j], vals[2 * j + 1]
        mine = (value, now + pttl / 1e3 if pttl >= 0 else float("inf")) if value else (None, 0.0)
        st = ref._state.get(lid)
        theirs = (st[0], st[1]) if st is not None and st[1] > now else (None, 0.0)
        ends = [e for e in (mine[1], theirs[1]) if 0 < e < float("inf")]
        if any(abs(e - now) < 2.0 for e in ends):
            edge += 1
        elif mine[0] != theirs[0]:
            mismatched += 1
        elif len(ends) == 2:
            worst = max(worst, abs(ends[0] - ends[1]))
    return {
        "state_mismatches": mismatched,
        "listings_at_lock_expiry_edge": edge,
        "max_lock_end_difference_ms": round(worst * 1e3, 1),
    }


def metric_value(text: str, name: str) -> float:
    """The value of sample ``name`` (with its labels, as printed) in a ``/metrics`` text; NaN if none."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return float("nan")


def xrange_all(r: Any, stream: str) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    lo = "-"
    while page := r.xrange(stream, min=lo, max="+", count=10_000):
        out += page
        lo = f"({page[-1][0]}"
    return out


def stall_redis(url: str, stop: threading.Event, log: list[dict]) -> None:
    """``DEBUG SLEEP 0.25`` every 0.5 s, and ``DEBUG SLEEP 3`` every 20 s, until ``stop``."""
    import redis

    r = redis.Redis.from_url(url, socket_timeout=10.0)
    t0 = time.monotonic()
    while not stop.is_set():
        long = time.monotonic() - t0 > 20 * (sum(1 for x in log if x["s"] == 3.0) + 1)
        s = 3.0 if long else 0.25
        with contextlib.suppress(redis.RedisError):
            sent = time.time()
            r.execute_command("DEBUG", "SLEEP", s)
            log.append(
                {"at": round(time.monotonic() - t0, 2), "s": s, "sent": sent, "back": time.time()}
            )
        stop.wait(0.25)


def summarize(payload: dict[str, Any]) -> None:
    """Totals over the answer checks present in ``payload`` (in place)."""
    ph = payload["phases"]
    checks = [ph[k] for k in ("healthy", "slow", "down") if k in ph]
    if "latency" in ph:
        checks.append(ph["latency"]["answers_check"])
    payload["total_answers"] = sum(c["answers"] for c in checks)
    payload["total_with_unavailable_shown"] = sum(c["with_unavailable_shown"] for c in checks)
    payload["total_with_unavailable_shown_older_than_bound"] = sum(
        c["with_unavailable_shown_older_than_bound"] for c in checks
    )


def write_html(payload: dict[str, Any], path: Path) -> None:
    """A one-page summary of the JSON: totals, one row per answer phase, the latency figures."""
    ph = payload["phases"]
    rows = "".join(
        f"<tr><td>{k}</td><td>{v['answers']:,}</td><td>{v['bursts']}</td>"
        f"<td>{v['with_unavailable_shown']}</td><td>{v['answers_per_s']}</td>"
        f"<td>{html.escape(json.dumps(v['fallback_reasons']))}</td>"
        f"<td>{v['fence']['lookups_per_read']}</td><td>{v['fence']['timed_out']}"
        f" / {v['fence']['failed']}</td></tr>"
        for k, v in ph.items()
        if k in ("healthy", "slow", "down")
    )
    lat = ph.get("latency", {})
    lat_txt = html.escape(
        json.dumps({k: v for k, v in lat.items() if k not in ("answers_check", "fence")})
    )
    cmds = "<br>".join(
        f"<code>{html.escape(c['command'])}</code> (nice {c['niceness']}, started {c['started']}, "
        f"load {c['load_avg']})"
        for c in payload.get("commands", [])
    )
    body = f"""<!doctype html><meta charset="utf-8"><title>inventory stream benchmark</title>
<style>body{{font-family:sans-serif;max-width:70em}}td,th{{border:1px solid #ccc;padding:.2em .5em}}
table{{border-collapse:collapse}}</style>
<h1>Live inventory stream: {payload.get("total_answers", 0):,} answers checked,
{payload.get("total_with_unavailable_shown", 0)} showed an unavailable listing</h1>
<p>{cmds}<br>{html.escape(payload["machine"]["note"])}</p>
<table><tr><th>phase</th><th>answers</th><th>bursts of 300</th><th>unavailable shown</th>
<th>answers/s</th><th>fallback reasons</th><th>lookups per fence read</th>
<th>fence timed out / failed</th></tr>{rows}</table>
<h2>Event → excluded</h2><pre>{lat_txt}</pre>
<h2>Consumer killed and restarted</h2><pre>{html.escape(json.dumps(ph.get("consumer"), indent=1))}</pre>
<h2>Fence cost</h2><pre>{html.escape(json.dumps(ph.get("fence_cost"), indent=1))}</pre>
"""
    path.write_text(body)
