"""KServe transformer: checkout -> six recommendations, in visible, timed, non-blocking stages.

``preprocess``  parse (v1 JSON or v2 tensors; bad input -> 400 / INVALID_ARGUMENT with a reason)
                then ``Recommender.prepare``: switches, user features, candidates, inventory,
                ranker matrix;
``predict``     the predictor hop (v2 REST binary / JSON or gRPC) under a deadline, or the
                student in-process (``--scoring inprocess``), overlapped with the inventory
                lookup (unavailable rows and their scores dropped when it answers, before the
                policy); failure -> fallback reason;
``postprocess`` ``Recommender.decide`` (policy: six, propensities, reasons), metrics, decision
                log (queued, written off the request path), v1/v2 encoding.

Deadlines (``inference.deadline``): every call's deadline is its arrival plus
``--request_deadline_ms``, tightened by the client's ``X-Request-Deadline-Ms`` or gRPC deadline.
At most ``--max_inflight`` calls are in the stages at once; a call that cannot start in time is
refused (``--overload refuse``, the default: 503 + ``Retry-After`` / UNAVAILABLE) or answered by the
cheap path (``--overload fallback``: the deterministic fallback, reason ``overload``). A call whose
deadline passes, or whose client leaves, before the policy stage is refused without computing its
answer (no exposure, no exploration spend, no decision row).

Entry point: ``python -m inference.transformer --bundle DIR --predictor_url http://127.0.0.1:P``.
Where its inputs and outputs are (user-feature source, decision log, policy ConfigMap, Redis) is
``checkout_recs.serving.settings.ServingSettings``: ``CHECKOUT_RECS_*`` environment variables (what
the manifests set) overridden by the flags of the same name (local runs). KServe's injected
``--model_name`` (the InferenceService's name: the model answers under it), ``--predictor_host``
and ``--http_port`` are accepted; ``--workers`` must be 1 (one process, one event loop: the
manifests pin it, else KServe would pass the container concurrency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kserve import Model
from kserve.errors import InvalidInput
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferRequest

from checkout_recs.log_format import (
    Throttle,
    add_log_format_argument,
    configure_logging,
    set_bundle_version,
    set_request_id,
)
from checkout_recs.policy.config import PolicyConfig
from checkout_recs.serving.bundle import ServingBundle
from checkout_recs.serving.bundle_layout import BundleLayout
from checkout_recs.serving.decisions import DecisionLog, decision_record
from checkout_recs.serving.inventory import open_inventory
from checkout_recs.serving.inventory_fence import reset_window as reset_fence_window
from checkout_recs.serving.inventory_fence import set_window as set_fence_window
from checkout_recs.serving.inventory_replica import ReplicaInventoryStore
from checkout_recs.serving.policy_source import PolicyDir, PolicyReloader, parse_policy
from checkout_recs.serving.recommender import (
    UNPROVEN_ANSWERS,
    Decision,
    InventoryUnproven,
    Prepared,
    Recommender,
    TableUserFeatures,
    TooFewInStock,
)
from checkout_recs.serving.settings import DEFAULT_MODEL_NAME, ServingSettings
from checkout_recs.serving.switches import Switches
from checkout_recs.storage import open_store
from inference import codec, metrics
from inference.deadline import Admission, LoopLag, RequestClock, ServiceTime, Shed, current_clock
from inference.huge_pages import collapse_large_mappings
from inference.naive import NaiveItemFeatures
from inference.policy_reload import observe_status, watch_policy
from inference.predictor_client import PredictorClient, PredictorError, PredictorTimeout
from inference.server import LoopbackModelServer
from inference.user_features import open_feast_users

#: The name the transformer answers under: the InferenceService's (KServe passes it as --model_name).
TRANSFORMER_NAME = DEFAULT_MODEL_NAME
#: Environment variables the transformer reads (the manifest contract test checks the pods set no other).
ENV_VARS = ServingSettings.env_names()


log = logging.getLogger("inference.transformer")  # not __main__ under `python -m`
_HOP_FAILURES = Throttle(every_s=1.0)  # a predictor outage logs once a second, not once per request


def _log_hop_failure(failure: str, detail: str) -> None:
    """One WARNING line (throttled) for a failed predictor hop; carries the request id of the call."""
    held = _HOP_FAILURES.allow(failure)
    if held is not None:
        log.warning(
            "predictor hop failed (%s), answered by the fallback: %s",
            failure,
            detail,
            extra={"failure": failure, "held_back": held},
        )


@dataclass
class _Job:
    """One HTTP/gRPC call: its requests, their prepared state and scores."""

    v2: bool
    binary: bool
    prepared: list[Prepared]
    scores: list[Any] = field(default_factory=list)
    failures: list[str | None] = field(default_factory=list)
    rank_ms: list[float] = field(default_factory=list)


@dataclass
class _Call:
    """One call's deadline and its place in the admission queue (``CheckoutTransformer.__call__``)."""

    clock: RequestClock
    deadline: float  # perf_counter seconds by which the answer must be out
    admitted_at: float | None = None  # perf_counter seconds it got a slot; None: it holds none
    cheap_since: float | None = None  # perf_counter seconds it took the cheap path


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "checkout_recs_call", default=None
)
#: Cheap-path calls in flight at most, per admission slot (above: refused).
CHEAP_PER_SLOT = 2


class CheckoutTransformer(Model):
    """The request path as a ``kserve.Model`` (see module docstring).

    Parameters
    ----------
    recommender : request-path core.
    predictor : remote ranker client, or None with ``scorer`` for in-process scoring.
    scorer : in-process ``matrix -> (p_click, p_purchase)`` (the student), optional.
    decision_log : background decision writer, optional.
    deadline_ms : predictor deadline (milliseconds).
    """

    def __init__(
        self,
        recommender: Recommender,
        predictor: PredictorClient | None = None,
        scorer: Any = None,
        decision_log: DecisionLog | None = None,
        deadline_ms: float = 40.0,
        name: str = TRANSFORMER_NAME,
    ) -> None:
        super().__init__(name)
        self.recommender, self.predictor, self.scorer = recommender, predictor, scorer
        self.decision_log = decision_log
        self.deadline_s = deadline_ms / 1e3
        self.naive: Any = None  # inference.naive.NaiveItemFeatures in the benchmark's naive mode
        self.policy_reloader: PolicyReloader | None = (
            None  # the mounted policy ConfigMap, when given
        )
        self.policy_poll_s = 5.0
        self.request_deadline_s = 0.0  # server-side budget of every call (``configure_overload``)
        self.deadline_reserve_s = 0.0  # kept back from every deadline for writing the answer out
        self.overload = "off"  # fallback | refuse | off
        self.admission: Admission | None = None
        self.cheap = ServiceTime(0.005)  # how long a cheap-path call takes, seconds
        self.loop_lag = LoopLag()  # measured on the serving loop (``run_background``)
        self._cheap_inflight = 0
        self.ready = True

    def configure_overload(
        self,
        overload: str,
        request_deadline_ms: float,
        max_inflight: int,
        max_queue_ms: float = 50.0,
        reserve_ms: float = 20.0,
    ) -> None:
        """Deadlines and shedding (module docstring): ``overload`` ``fallback`` | ``refuse`` | ``off``
        (no deadline, no admission: every call computed, as before), the server's budget of a call
        (ms, <= 0: the client's only), the calls in the stages at once, the longest wait for a slot
        (ms) and the part of every deadline kept back for writing the answer out (ms)."""
        if overload not in ("fallback", "refuse", "off"):
            raise ValueError(f"overload must be fallback, refuse or off, got {overload!r}")
        self.overload, self.request_deadline_s = overload, request_deadline_ms / 1e3
        self.deadline_reserve_s = reserve_ms / 1e3
        self.admission = (
            Admission(max_inflight, max_wait_s=max_queue_ms / 1e3) if overload != "off" else None
        )

    async def __call__(
        self,
        body: Any,
        headers: dict[str, str] | None = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> Any:
        """kserve's preprocess -> predict -> postprocess under the call's deadline; the admission slot
        (or cheap-path place) is given back however the call ends."""
        clock = current_clock() or RequestClock(time.perf_counter())
        deadline = clock.deadline(self.request_deadline_s, self.deadline_reserve_s)
        # the inventory replica's read fence: every event in the stream at arrival is applied before
        # the lookup, waiting no longer than the deadline (serving/inventory_fence.py)
        window = set_fence_window(clock.received, deadline)
        if self.admission is None:
            try:
                return await super().__call__(body, headers=headers, verb=verb)
            finally:
                reset_fence_window(window)
        call = _Call(clock, deadline)
        token = _CALL.set(call)
        try:
            return await super().__call__(body, headers=headers, verb=verb)
        finally:
            _CALL.reset(token)
            reset_fence_window(window)
            now = time.perf_counter()
            if call.admitted_at is not None:
                self.admission.leave()
                self.admission.observe(now - call.admitted_at)
            if call.cheap_since is not None:
                self._cheap_inflight -= 1
                self.cheap.observe(now - call.cheap_since)

    async def _admit(self) -> str | None:
        """Enter the stages: None for the full path (a slot held), ``"overload"`` for the cheap path;
        ``Shed`` when the call can be answered neither way in time."""
        call, adm = _CALL.get(), self.admission
        if call is None or adm is None:
            return None
        lag = self.loop_lag.recent_s
        if time.perf_counter() + lag < call.deadline and await adm.enter(call.deadline - lag):
            call.admitted_at = time.perf_counter()
            return None
        now = time.perf_counter()
        if (
            self.overload == "fallback"
            and now + self.cheap.budget_s() + lag < call.deadline
            and self._cheap_inflight < CHEAP_PER_SLOT * adm.limit
        ):
            self._cheap_inflight += 1
            call.cheap_since = now
            metrics.observe_shed("admission", "fallback")
            return "overload"
        metrics.observe_shed("admission", "refused")
        if now + lag >= call.deadline:
            raise Shed(
                self.name,
                "the call's deadline had passed when it reached the request path; retry after a while",
            )
        raise Shed(
            self.name,
            f"over capacity: the call could not start within its deadline; retry after a while "
            f"({adm.inflight} in the stages, {adm.waiting} waiting)",
        )

    def _check_deadline(self, point: str, job: _Job) -> None:
        """``Shed`` (nothing more computed) when the client left or the deadline passed (or will have,
        by the time the loop gets the answer out: its recent lag); in-flight inventory lookups are
        cancelled."""
        call = _CALL.get()
        if call is None:
            return
        gone = call.clock.gone()
        if not gone and time.perf_counter() + self.loop_lag.recent_s < call.deadline:
            return
        for p in job.prepared:
            if p.pending is not None:
                p.pending.cancel()
        point = "disconnected" if gone else point
        metrics.observe_shed(point, "refused")
        raise Shed(
            self.name,
            "the client left before the answer was computed"
            if gone
            else "the call's deadline passed before its answer was computed; retry after a while",
        )

    def _hop_deadline_s(self) -> float:
        """The predictor hop's deadline, seconds: ``--deadline_ms``, or what is left of the call's if less."""
        call = _CALL.get()
        if call is None:
            return self.deadline_s
        return max(0.0, min(self.deadline_s, call.deadline - time.perf_counter()))

    async def run_background(self) -> None:
        """On the serving loop: measure its lag (deadlines allow for it) and watch the policy ConfigMap
        (``inference.policy_reload``), if one is mounted."""
        tasks = [self.loop_lag.run()] if self.admission is not None else []
        if self.policy_reloader is not None:
            tasks.append(watch_policy(self.policy_reloader, self.policy_poll_s))
        await asyncio.gather(*tasks)

    async def healthy(self) -> bool:
        """Ready once loaded and the inventory can answer (the replica: bootstrapped and current once)."""
        return self.ready and self.recommender.inventory.ready()

    def validate(self, payload: Any) -> Any:
        """Parsing happens in ``preprocess``; nothing to check here."""
        return payload

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> _Job:
        """Parse and prepare every request of the call."""
        if isinstance(payload, InferRequest):
            reqs = [codec.parse_v2(payload)]
            job = _Job(
                v2=True, binary=bool(getattr(payload, "use_binary_outputs", False)), prepared=[]
            )
        else:
            reqs = codec.parse_v1(payload)
            job = _Job(v2=False, binary=False, prepared=[])
        if len({r.request_id for r in reqs if r.request_id}) < sum(1 for r in reqs if r.request_id):
            raise InvalidInput("request_id values must be distinct within one call")
        # ids resolved here, so every log line of the call carries the ids its answers carry
        reqs = [
            r if r.request_id else r.model_copy(update={"request_id": r.resolved_request_id()})
            for r in reqs
        ]
        set_request_id(",".join(str(r.request_id) for r in reqs))
        degrade = await self._admit()
        job.prepared = list(
            await asyncio.gather(
                *(self.recommender.prepare(r, defer_inventory=True, degrade=degrade) for r in reqs)
            )
        )
        if self.naive is not None:  # benchmark baseline only: Feast reads of every candidate
            for p in job.prepared:
                if p.matrix is not None:
                    t0 = time.perf_counter()
                    p.matrix = await asyncio.to_thread(self.naive.matrix, p)
                    p.timings["rank_input"] = (time.perf_counter() - t0) * 1e3
        return job

    async def predict(
        self,
        job: _Job,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> _Job:
        """Score each prepared request (remote or in-process); failures become fallback reasons.
        ``Shed`` when an inventory lookup could not be proven current and the recommender refuses
        then (``--inventory_unproven refuse``): the whole call, nothing logged."""
        self._check_deadline("before_predict", job)
        results = await asyncio.gather(
            *(self._score(p) for p in job.prepared), return_exceptions=True
        )
        unproven = next((r for r in results if isinstance(r, InventoryUnproven)), None)
        if unproven is not None:
            for p in job.prepared:
                if p.pending is not None:
                    p.pending.cancel()
            metrics.observe_shed("inventory_unproven", "refused")
            raise Shed(self.name, str(unproven)) from unproven
        scored: list[tuple[Any, str | None, float]] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            scored.append(r)
        job.scores = [r[0] for r in scored]
        job.failures = [r[1] for r in scored]
        job.rank_ms = [r[2] for r in scored]
        return job

    async def _score(self, prep: Prepared) -> tuple[Any, str | None, float]:
        """Score ``prep`` while its inventory lookup is still in flight, then drop the scores of what
        the lookup found unavailable: (scores aligned with the settled candidates or None, failure
        reason or None, wall ms of the scoring call)."""
        if prep.fallback_reason is not None or prep.matrix is None:
            await self.recommender.settle_inventory(prep)  # the fallback pool is filtered too
            return None, None, 0.0
        # the unfiltered matrix goes with the call: an inventory that answers at once (memory, replica)
        # settles, and filters ``prep.matrix``, before the call task has started
        call = asyncio.ensure_future(self._call(prep, prep.matrix))
        try:
            keep = await self.recommender.settle_inventory(prep)
        except BaseException:
            call.cancel()  # refused (``InventoryUnproven``) or cancelled: no score is wanted
            raise
        if (
            prep.fallback_reason is not None
        ):  # inventory down or nothing left: the answer is the fallback
            call.cancel()
            return None, None, 0.0
        scores, failure, wall_ms = await call
        if scores is not None:
            if any(len(s) != len(keep) for s in scores):
                return None, "predictor_error", wall_ms
            scores = (np.asarray(scores[0])[keep], np.asarray(scores[1])[keep])
        return scores, failure, wall_ms

    async def _call(self, prep: Prepared, matrix: np.ndarray) -> tuple[Any, str | None, float]:
        """The scorer on ``matrix``, the unfiltered ranker input float32 (n, d): remote (deadline-bound)
        or in-process."""
        t0, c0 = time.perf_counter(), time.thread_time()
        scores, failure = None, None
        try:
            if self.scorer is not None:
                scores = self.scorer(matrix)
                prep.predictor_version = (
                    self.recommender.bundle.index_version
                )  # this bundle's own model
            elif self.predictor is not None:
                scored = await self.predictor.score_versioned(matrix, self._hop_deadline_s())
                scores, prep.predictor_version = (
                    (scored.p_click, scored.p_purchase),
                    scored.bundle_version,
                )
            else:
                failure = "predictor_error"
        except PredictorTimeout:
            failure = "predictor_timeout"
        except (PredictorError, ValueError, RuntimeError) as exc:
            failure = "predictor_error"
            _log_hop_failure(failure, f"{type(exc).__name__}: {exc}")
        prep.cpu_ms["rank"] = (time.thread_time() - c0) * 1e3
        return scores, failure, (time.perf_counter() - t0) * 1e3

    async def postprocess(
        self,
        job: _Job,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """Policy, metrics, decision log, encoding (none of it when the deadline passed: ``Shed``)."""
        self._check_deadline("before_decide", job)
        try:
            decisions = [
                self.recommender.decide(p, s, f)
                for p, s, f in zip(job.prepared, job.scores, job.failures, strict=True)
            ]
        except (
            TooFewInStock
        ) as exc:  # the six-item promise cannot be kept: refuse, never a short list
            raise Shed(self.name, str(exc)) from exc
        for d, rank_ms in zip(decisions, job.rank_ms, strict=True):
            self._account(d, rank_ms)
        if job.v2:
            return codec.encode_v2(decisions[0].response, self.name, binary=job.binary)
        return codec.encode_v1([d.response for d in decisions])

    def _account(self, d: Decision, rank_ms: float) -> None:
        p = d.prepared
        timings = dict(p.timings, rank=rank_ms, total=(time.perf_counter() - p.started) * 1e3)
        g = self.recommender.gauges()
        metrics.observe(
            timings,
            d.response.policy,
            d.response.fallback_reason,
            d.slate.exploration_cost,
            g.exploration_budget,
            g.new_seller_share,
            self.decision_log.dropped if self.decision_log else 0,
        )
        if self.decision_log is not None:
            p.timings.update(rank=rank_ms)
            self.decision_log.submit(decision_record(d))

    def stop(self) -> None:
        """On shutdown (SIGTERM too): publish the decision log's buffer (spilled to disk if the store
        refuses) and give the exploration ledger's unspent lease back."""
        if self.decision_log is not None:
            self.decision_log.close()
        self.recommender.close()
        self.recommender.inventory.close()


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags of the transformer process."""
    p = argparse.ArgumentParser(description="Checkout recs transformer (KServe)")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--http_port", type=int, default=8080)
    p.add_argument("--grpc_port", type=int, default=8090)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--predictor_url",
        default=None,
        help="predictor base URL (default http://127.0.0.1:8081, or http://<--predictor_host>)",
    )
    p.add_argument("--predictor_host", default=None, help="KServe's injected predictor host[:port]")
    p.add_argument(
        "--model_name",
        default=None,
        help=f"name to answer under (KServe: the InferenceService's; default {DEFAULT_MODEL_NAME})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        choices=[1],
        help="KServe's worker count: one process (one event loop) only",
    )
    p.add_argument(
        "--deployment",
        default=None,
        choices=["local", "cluster"],
        help="'cluster' refuses to start without the settings a pod needs (ServingSettings.missing)",
    )
    p.add_argument("--predictor_grpc", default="127.0.0.1:8091")
    p.add_argument(
        "--ranker_protocol",
        default="rest-binary",
        choices=["rest-json", "rest-binary", "grpc"],
        help="the hop to the predictor: v2 binary tensors over REST (its fast route, the cheapest), "
        "JSON tensors, or v2 gRPC",
    )
    p.add_argument("--scoring", default="remote", choices=["remote", "inprocess"])
    p.add_argument("--deadline_ms", type=float, default=40.0)
    p.add_argument(
        "--request_deadline_ms",
        type=float,
        default=1000.0,
        help="server-side deadline of every call, ms from its arrival; a client's X-Request-Deadline-Ms "
        "header (REST) or gRPC deadline tightens it; <= 0: the client's only",
    )
    p.add_argument(
        "--overload",
        default="refuse",
        choices=["refuse", "fallback", "off"],
        help="a call that cannot start within its deadline: answered by the deterministic fallback "
        "(reason 'overload'), refused with 503 + Retry-After (gRPC UNAVAILABLE), or off: no "
        "deadline and no admission control (every call computed)",
    )
    p.add_argument(
        "--max_inflight",
        type=int,
        default=4,
        help="calls in the request path's stages at once; the others wait while they can make their "
        "deadline",
    )
    p.add_argument(
        "--max_queue_ms",
        type=float,
        default=50.0,
        help="longest wait for a place in the stages, ms; a call predicted to wait longer is shed at "
        "once (a longer queue adds latency, not throughput)",
    )
    p.add_argument(
        "--deadline_reserve_ms",
        type=float,
        default=20.0,
        help="kept back from every call's deadline for what follows the server's work: writing the "
        "answer, the network, the wait before the server read the request, ms",
    )
    p.add_argument(
        "--inventory",
        default=None,
        choices=["memory", "redis", "replica"],
        help="memory (this process), redis (one MGET per request), or replica: the whole unavailable "
        "set in memory, bootstrapped from Redis and tailed from the inventory stream; lookups "
        "read memory once it holds every event there when the request arrived (a read fence, "
        "--inventory_fence_ms; serving/inventory_replica.py)",
    )
    p.add_argument(
        "--inventory_max_lag_s",
        type=float,
        default=1.0,
        help="replica: not proven current for this long -> answers fall back with 'inventory_stale'",
    )
    p.add_argument(
        "--inventory_in_play_s",
        type=float,
        default=900.0,
        help="replica, while stale: listings with an inventory event this recent are not shown",
    )
    p.add_argument(
        "--inventory_fence_ms",
        type=float,
        default=500.0,
        help="replica: longest a lookup waits for its read fence (every stream entry there when the "
        "request arrived applied first), ms, never past the call's deadline; not read in time -> "
        "'inventory_stale' (known state only); 0: no fence",
    )
    p.add_argument(
        "--inventory_unproven",
        default=None,
        choices=list(UNPROVEN_ANSWERS),
        help="when a lookup cannot be proven current (replica stale or fence unread, redis backend "
        "down): known (default) = answer from the last known state with that fallback reason (the "
        "stale rule, docs/serving.md), refuse = 503 + Retry-After (gRPC UNAVAILABLE), never an "
        "unproven listing; env CHECKOUT_RECS_INVENTORY_UNPROVEN",
    )
    p.add_argument(
        "--inventory_group",
        default="inventory-appliers",
        help="replica: consumer group of the inventory consumer (its bootstrap position)",
    )
    p.add_argument(
        "--redis_url",
        default=None,
        help="default: CHECKOUT_RECS_REDIS_URL, else the loopback Redis; "
        "the password comes from CHECKOUT_RECS_REDIS_PASSWORD only",
    )
    p.add_argument("--redis_prefix", default="checkout_recs")
    p.add_argument("--switches", default="redis", choices=["redis", "none"])
    p.add_argument("--kill_key", default="checkout_recs:kill_switch")
    p.add_argument("--drift_key", default="checkout_recs:drift_flag")
    p.add_argument(
        "--users",
        default=None,
        choices=["bundle", "table", "feast"],
        help="user features: Feast online store, the bundle's table, or --user_table",
    )
    p.add_argument(
        "--feature_env",
        default=None,
        choices=["embedded", "production"],
        help="Feast environment of --users feast (feature_repo/environments)",
    )
    p.add_argument(
        "--user_table", default=None, help="parquet of user features (contract.USER_FEATURES)"
    )
    p.add_argument("--candidates", default="auto", choices=["auto", "builtin"])
    p.add_argument("--feast_features", default=None)
    p.add_argument(
        "--feast_work_dir",
        default=None,
        help="writable Feast work folder (default artifacts/feast)",
    )
    p.add_argument("--feast_timeout_ms", type=float, default=50.0)
    p.add_argument(
        "--feast_project", default=None, help="Feast project (default: the feature repo's)"
    )
    p.add_argument(
        "--policy_config", type=Path, default=None, help="JSON file of PolicyConfig (read once)"
    )
    p.add_argument(
        "--policy_dir",
        type=Path,
        default=None,
        help="mounted policy ConfigMap (policy.json, kill_switch), re-read on change; wins over "
        "--policy_config",
    )
    p.add_argument(
        "--policy_poll_s", type=float, default=None, help="seconds between checks of --policy_dir"
    )
    p.add_argument("--decision_log", default=None, help="artifact store root for the decision log")
    p.add_argument(
        "--naive", action="store_true", help="benchmark baseline: candidate features from Feast"
    )
    p.add_argument("--decision_log_rotate_s", type=float, default=30.0)
    p.add_argument(
        "--ledger_renewal",
        default=None,
        choices=["background", "inline"],
        help="shared exploration ledger: lease renewed by a background thread (the request path "
        "never waits on Redis) or inline in the policy stage (the earlier way; benchmarks); "
        "sets the policy config's exploration.ledger.renewal (default: the --policy_config "
        "file's value if it sets one, else background)",
    )
    p.add_argument(
        "--decision_log_spill_dir",
        default=None,
        help="local folder for decision parts the store could not take (default: a temporary "
        "folder); parts left there by an earlier process are published at start",
    )
    p.add_argument(
        "--decision_log_max_memory_rows",
        type=int,
        default=50_000,
        help="decision rows kept in memory while the store fails before parts spill to disk",
    )
    p.add_argument("--max_body_bytes", type=int, default=64 * 1024)
    p.add_argument(
        "--no_fast_route",
        action="store_true",
        help="serve v1 predict through kserve's FastAPI route too (A/B of inference.fast_route)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--huge_pages",
        default="collapse",
        choices=["collapse", "off"],
        help="after loading, back large memory with 2 MiB pages (inference.huge_pages): fewer TLB "
        "misses on the scattered reads of the request path",
    )
    p.add_argument(
        "--max_snapshot_age_h",
        type=float,
        default=0.0,
        help="staleness SLA of the listing snapshot, hours, checked at the checkout's time "
        "(stale: fallback 'stale_features'); 0 = not checked. Production sets 48 (features.sla).",
    )
    add_log_format_argument(p)
    return p


def resolve_settings(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ServingSettings:
    """``ServingSettings`` from the flags and the environment (``os.environ`` by default). The
    resolved values are written back into ``args`` so every stage reads the one answer
    (``args.redis_url`` then carries the password, in this process only). ``ValueError`` when a
    value is invalid or a secret comes as a flag."""
    s = ServingSettings.from_sources(vars(args), os.environ if environ is None else environ)
    for name in (
        "model_name",
        "users",
        "user_table",
        "feature_env",
        "feast_features",
        "feast_work_dir",
        "feast_project",
        "inventory",
        "inventory_unproven",
        "decision_log",
        "policy_dir",
        "policy_config",
        "policy_poll_s",
        "predictor_url",
        "deployment",
    ):
        setattr(args, name, getattr(s, name))
    args.redis_url = s.redis_dsn()
    return s


def missing_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    """What a cluster deployment of these flags and this environment lacks (``ServingSettings.missing``)."""
    return ServingSettings.from_sources(vars(args), environ).missing()


def serving_policy(cfg: PolicyConfig, args: argparse.Namespace) -> PolicyConfig:
    """A copy of ``cfg`` with the serving ledger filled in: replicas share the exploration budget in
    the inventory's Redis, and the lease is renewed in the background (``--ledger_renewal``)."""
    cfg = cfg.model_copy(deep=True)
    led = cfg.exploration.ledger
    if args.inventory in ("redis", "replica") and led.url is None:
        led.url = args.redis_url
        led.prefix = (
            led.prefix if "prefix" in led.model_fields_set else f"{args.redis_prefix}:explore"
        )
    if args.ledger_renewal or "renewal" not in led.model_fields_set:
        led.renewal = (
            args.ledger_renewal or "background"
        )  # serving: the request path never waits on Redis
    return cfg


def build_transformer(args: argparse.Namespace) -> CheckoutTransformer:
    """Load the bundle and wire the stores, the predictor client and the decision log."""

    settings = resolve_settings(args)
    bundle = ServingBundle.load(args.bundle, candidates=args.candidates)
    source = PolicyDir(settings.policy_dir) if settings.policy_dir else None
    first = source.read() if source is not None else None
    if first is not None:
        cfg = (
            first.config or PolicyConfig()
        )  # a bad file at start: the code's defaults (and valid=0)
    else:
        cfg = parse_policy(args.policy_config.read_text()) if args.policy_config else PolicyConfig()
    cfg = serving_policy(cfg, args)
    if args.users == "feast":
        registry = (
            settings.feast_registry_url.get_secret_value() if settings.feast_registry_url else None
        )
        users: Any = open_feast_users(
            args.feast_features or str(BundleLayout(args.bundle).features_dir),
            args.feast_work_dir,
            env=settings.feature_env,
            timeout_s=args.feast_timeout_ms / 1e3,
            project=args.feast_project,
            redis_url=args.redis_url,
            registry_url=registry,
        )
    elif args.users == "table" or args.user_table:
        users = TableUserFeatures(pd.read_parquet(args.user_table))
    else:
        users = TableUserFeatures(bundle.users)
    switches = Switches(
        args.redis_url if args.switches == "redis" else None,
        ttl_s=cfg.switch_cache_ttl_s,
        kill_key=args.kill_key,
        drift_key=args.drift_key,
    )
    if args.inventory == "replica":
        inventory: Any = ReplicaInventoryStore(
            args.redis_url,
            prefix=args.redis_prefix,
            group=args.inventory_group,
            max_lag_s=args.inventory_max_lag_s,
            in_play_s=args.inventory_in_play_s,
            fence_max_wait_s=args.inventory_fence_ms / 1e3,
        ).start()
        metrics.watch_inventory_replica(inventory)
    else:
        inventory = open_inventory(args.inventory, args.redis_url, prefix=args.redis_prefix)
    max_age = dt.timedelta(hours=args.max_snapshot_age_h) if args.max_snapshot_age_h > 0 else None
    rec = Recommender(
        bundle,
        users,
        inventory,
        cfg,
        switches,
        seed=args.seed,
        max_snapshot_age=max_age,
        unproven=args.inventory_unproven,
    )
    scorer, client = None, None
    if args.scoring == "inprocess":
        import torch  # lazy: torch is optional on the serving path (the transformer and numpy predictor run without it)

        from checkout_recs.models.ranker import (
            RankerModel,
        )  # lazy: keeps torch out of this module's import

        torch.set_num_threads(1)
        scorer = RankerModel.load(bundle.model_dir).predict if bundle.model_dir else None
    else:
        client = PredictorClient(
            args.predictor_url, args.predictor_grpc, protocol=args.ranker_protocol
        )
    log = None
    if args.decision_log:
        log = DecisionLog(
            open_store(args.decision_log),
            rotate_s=args.decision_log_rotate_s,
            spill_dir=args.decision_log_spill_dir,
            max_memory_rows=args.decision_log_max_memory_rows,
            on_stats=metrics.observe_decision_log,
        )
    t = CheckoutTransformer(
        rec,
        client,
        scorer,
        log,
        deadline_ms=args.deadline_ms or cfg.predictor_deadline_ms,
        name=settings.model_name,
    )
    t.configure_overload(
        args.overload,
        args.request_deadline_ms,
        args.max_inflight,
        args.max_queue_ms,
        args.deadline_reserve_ms,
    )
    if source is not None and first is not None:
        t.policy_reloader = PolicyReloader(
            source, rec, prepare=lambda c: serving_policy(c, args), on_status=observe_status
        )
        t.policy_reloader.apply(first)
        t.policy_poll_s = settings.policy_poll_s
    if args.naive:
        t.naive = NaiveItemFeatures(users.adapter, bundle)
    else:
        bundle.prepare_plan()  # precompute the item block now, not on the first request
    return t


def main(argv: list[str] | None = None) -> None:
    """Start the transformer server."""

    args = build_parser().parse_args(
        argv
    )  # strict: a flag the manifests give that nothing reads is an error
    configure_logging(args.log_format)
    try:
        missing = resolve_settings(args).missing()
    except ValueError as exc:
        sys.exit(f"transformer settings: {exc}")
    if missing:
        sys.exit("transformer settings: a cluster deployment needs\n  " + "\n  ".join(missing))
    model = build_transformer(args)
    set_bundle_version(model.recommender.bundle.index_version)
    if args.huge_pages == "collapse":
        log.info("huge pages: %s", collapse_large_mappings())
    server = LoopbackModelServer(
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        max_body_bytes=args.max_body_bytes,
        enable_latency_logging=False,
        fast_route=not args.no_fast_route,
    )
    _gate_server_readiness(server, model)
    server.start([model])


def _gate_server_readiness(server: Any, model: CheckoutTransformer) -> None:
    """Make the server's readiness (``/v2/health/ready``, gRPC ``ServerReady``) wait for
    ``model.healthy()``: kserve's data plane answers ready as soon as the server is up, before the
    inventory replica has caught up."""
    plane_ready = server.dataplane.ready

    async def ready() -> bool:
        return await model.healthy() and await plane_ready()

    server.dataplane.ready = ready


if __name__ == "__main__":
    main()
