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

Entry point: ``python -m inference.transformer --bundle DIR --predictor_url http://127.0.0.1:P``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from checkout_recs.serving.decisions import DecisionLog, decision_record
from checkout_recs.serving.recommender import Decision, Prepared, Recommender
from inference import codec, metrics
from inference.predictor_client import PredictorClient, PredictorError, PredictorTimeout

TRANSFORMER_NAME = "recommender"


@dataclass
class _Job:
    """One HTTP/gRPC call: its requests, their prepared state and scores."""

    v2: bool
    binary: bool
    prepared: list[Prepared]
    scores: list[Any] = field(default_factory=list)
    failures: list[str | None] = field(default_factory=list)
    rank_ms: list[float] = field(default_factory=list)


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

    def __init__(self, recommender: Recommender, predictor: PredictorClient | None = None, scorer: Any = None,
                 decision_log: DecisionLog | None = None, deadline_ms: float = 40.0,
                 name: str = TRANSFORMER_NAME) -> None:
        super().__init__(name)
        self.recommender, self.predictor, self.scorer = recommender, predictor, scorer
        self.decision_log = decision_log
        self.deadline_s = deadline_ms / 1e3
        self.naive: Any = None  # inference.naive.NaiveItemFeatures in the benchmark's naive mode
        self.ready = True

    def validate(self, payload: Any) -> Any:
        """Parsing happens in ``preprocess``; nothing to check here."""
        return payload

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> _Job:
        """Parse and prepare every request of the call."""
        if isinstance(payload, InferRequest):
            reqs = [codec.parse_v2(payload)]
            job = _Job(v2=True, binary=bool(getattr(payload, "use_binary_outputs", False)), prepared=[])
        else:
            reqs = codec.parse_v1(payload)
            job = _Job(v2=False, binary=False, prepared=[])
        if len({r.request_id for r in reqs if r.request_id}) < sum(1 for r in reqs if r.request_id):
            raise InvalidInput("request_id values must be distinct within one call")
        job.prepared = list(await asyncio.gather(*(self.recommender.prepare(r, defer_inventory=True)
                                                  for r in reqs)))
        if self.naive is not None:  # benchmark baseline only: Feast reads of every candidate
            for p in job.prepared:
                if p.matrix is not None:
                    t0 = time.perf_counter()
                    p.matrix = await asyncio.to_thread(self.naive.matrix, p)
                    p.timings["rank_input"] = (time.perf_counter() - t0) * 1e3
        return job

    async def predict(self, job: _Job, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> _Job:
        """Score each prepared request (remote or in-process); failures become fallback reasons."""
        results = await asyncio.gather(*(self._score(p) for p in job.prepared))
        job.scores = [r[0] for r in results]
        job.failures = [r[1] for r in results]
        job.rank_ms = [r[2] for r in results]
        return job

    async def _score(self, prep: Prepared) -> tuple[Any, str | None, float]:
        """Score ``prep`` while its inventory lookup is still in flight, then drop the scores of what
        the lookup found unavailable: (scores aligned with the settled candidates or None, failure
        reason or None, wall ms of the scoring call)."""
        if prep.fallback_reason is not None or prep.matrix is None:
            await self.recommender.settle_inventory(prep)  # the fallback pool is filtered too
            return None, None, 0.0
        call = asyncio.ensure_future(self._call(prep))
        keep = await self.recommender.settle_inventory(prep)
        if prep.fallback_reason is not None:  # inventory down or nothing left: the answer is the fallback
            call.cancel()
            return None, None, 0.0
        scores, failure, wall_ms = await call
        if scores is not None:
            if any(len(s) != len(keep) for s in scores):
                return None, "predictor_error", wall_ms
            scores = (np.asarray(scores[0])[keep], np.asarray(scores[1])[keep])
        return scores, failure, wall_ms

    async def _call(self, prep: Prepared) -> tuple[Any, str | None, float]:
        """The scorer on the unfiltered matrix: remote (deadline-bound) or in-process."""
        assert prep.matrix is not None
        t0, c0 = time.perf_counter(), time.thread_time()
        scores, failure = None, None
        try:
            if self.scorer is not None:
                scores = self.scorer(prep.matrix)
            elif self.predictor is not None:
                scores = await self.predictor.score(prep.matrix, self.deadline_s)
            else:
                failure = "predictor_error"
        except PredictorTimeout:
            failure = "predictor_timeout"
        except (PredictorError, ValueError, RuntimeError):
            failure = "predictor_error"
        prep.cpu_ms["rank"] = (time.thread_time() - c0) * 1e3
        return scores, failure, (time.perf_counter() - t0) * 1e3

    async def postprocess(self, job: _Job, headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None) -> Any:
        """Policy, metrics, decision log, encoding."""
        decisions = [self.recommender.decide(p, s, f) for p, s, f in zip(job.prepared, job.scores, job.failures,
                                                                             strict=True)]
        for d, rank_ms in zip(decisions, job.rank_ms, strict=True):
            self._account(d, rank_ms)
        if job.v2:
            return codec.encode_v2(decisions[0].response, self.name, binary=job.binary)
        return codec.encode_v1([d.response for d in decisions])

    def _account(self, d: Decision, rank_ms: float) -> None:
        p = d.prepared
        timings = dict(p.timings, rank=rank_ms, total=(time.perf_counter() - p.started) * 1e3)
        g = self.recommender.gauges()
        metrics.observe(timings, d.response.policy, d.response.fallback_reason, d.slate.exploration_cost,
                        g.exploration_budget, g.new_seller_share, self.decision_log.dropped if self.decision_log else 0)
        if self.decision_log is not None:
            p.timings.update(rank=rank_ms)
            self.decision_log.submit(decision_record(d))

    def stop(self) -> None:
        """On shutdown (SIGTERM too): publish the decision log's buffer (spilled to disk if the store
        refuses) and give the exploration ledger's unspent lease back."""
        if self.decision_log is not None:
            self.decision_log.close()
        self.recommender.close()


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags of the transformer process."""
    p = argparse.ArgumentParser(description="Checkout recs transformer (KServe)")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--http_port", type=int, default=8080)
    p.add_argument("--grpc_port", type=int, default=8090)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--predictor_url", default="http://127.0.0.1:8081")
    p.add_argument("--predictor_grpc", default="127.0.0.1:8091")
    p.add_argument("--ranker_protocol", default="rest-binary", choices=["rest-json", "rest-binary", "grpc"],
                   help="the hop to the predictor: v2 binary tensors over REST (its fast route, the cheapest), "
                        "JSON tensors, or v2 gRPC")
    p.add_argument("--scoring", default="remote", choices=["remote", "inprocess"])
    p.add_argument("--deadline_ms", type=float, default=40.0)
    p.add_argument("--inventory", default="memory", choices=["memory", "redis"])
    p.add_argument("--redis_url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--redis_prefix", default="checkout_recs")
    p.add_argument("--switches", default="redis", choices=["redis", "none"])
    p.add_argument("--kill_key", default="checkout_recs:kill_switch")
    p.add_argument("--drift_key", default="checkout_recs:drift_flag")
    p.add_argument("--users", default="bundle", choices=["bundle", "table", "feast"])
    p.add_argument("--user_table", default=None, help="parquet of user features (contract.USER_FEATURES)")
    p.add_argument("--candidates", default="auto", choices=["auto", "builtin"])
    p.add_argument("--feast_features", default=None)
    p.add_argument("--feast_work_dir", default="artifacts/feast")
    p.add_argument("--feast_timeout_ms", type=float, default=50.0)
    p.add_argument("--feast_project", default=None, help="Feast project (default: the feature repo's)")
    p.add_argument("--policy_config", type=Path, default=None, help="JSON file of PolicyConfig")
    p.add_argument("--decision_log", default=None, help="artifact store root for the decision log")
    p.add_argument("--naive", action="store_true", help="benchmark baseline: candidate features from Feast")
    p.add_argument("--decision_log_rotate_s", type=float, default=30.0)
    p.add_argument("--ledger_renewal", default=None, choices=["background", "inline"],
                   help="shared exploration ledger: lease renewed by a background thread (the request path "
                        "never waits on Redis) or inline in the policy stage (the earlier way; benchmarks); "
                        "sets the policy config's exploration.ledger.renewal (default: the --policy_config "
                        "file's value if it sets one, else background)")
    p.add_argument("--decision_log_spill_dir", default=None,
                   help="local folder for decision parts the store could not take (default: a temporary "
                        "folder); parts left there by an earlier process are published at start")
    p.add_argument("--decision_log_max_memory_rows", type=int, default=50_000,
                   help="decision rows kept in memory while the store fails before parts spill to disk")
    p.add_argument("--max_body_bytes", type=int, default=64 * 1024)
    p.add_argument("--no_fast_route", action="store_true",
                   help="serve v1 predict through kserve's FastAPI route too (A/B of inference.fast_route)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--huge_pages", default="collapse", choices=["collapse", "off"],
                   help="after loading, back large memory with 2 MiB pages (inference.huge_pages): fewer TLB "
                        "misses on the scattered reads of the request path")
    p.add_argument("--max_snapshot_age_h", type=float, default=0.0,
                   help="staleness SLA of the listing snapshot, hours, checked at the checkout's time "
                        "(stale: fallback 'stale_features'); 0 = not checked. Production sets 48 (features.sla).")
    return p


def build_transformer(args: argparse.Namespace) -> CheckoutTransformer:
    """Load the bundle and wire the stores, the predictor client and the decision log."""
    import json

    from checkout_recs.policy.config import PolicyConfig
    from checkout_recs.serving.bundle import ServingBundle
    from checkout_recs.serving.bundle_layout import BundleLayout
    from checkout_recs.serving.inventory import open_inventory
    from checkout_recs.serving.recommender import TableUserFeatures
    from checkout_recs.serving.switches import Switches

    bundle = ServingBundle.load(args.bundle, candidates=args.candidates)
    cfg = PolicyConfig.model_validate(json.loads(args.policy_config.read_text())) if args.policy_config \
        else PolicyConfig()
    led = cfg.exploration.ledger  # replicas share the exploration budget in the inventory's Redis
    if args.inventory == "redis" and led.url is None:
        led.url = args.redis_url
        led.prefix = led.prefix if "prefix" in led.model_fields_set else f"{args.redis_prefix}:explore"
    if args.ledger_renewal or "renewal" not in led.model_fields_set:
        led.renewal = args.ledger_renewal or "background"  # serving: the request path never waits on Redis
    if args.users == "feast":
        from inference.user_features import open_feast_users

        users: Any = open_feast_users(args.feast_features or str(BundleLayout(args.bundle).features_dir), args.feast_work_dir,
                                      timeout_s=args.feast_timeout_ms / 1e3, project=args.feast_project)
    elif args.users == "table" or args.user_table:
        import pandas as pd

        users = TableUserFeatures(pd.read_parquet(args.user_table))
    else:
        users = TableUserFeatures(bundle.users)
    switches = Switches(args.redis_url if args.switches == "redis" else None, ttl_s=cfg.switch_cache_ttl_s,
                        kill_key=args.kill_key, drift_key=args.drift_key)
    inventory = open_inventory(args.inventory, args.redis_url, prefix=args.redis_prefix)
    max_age = dt.timedelta(hours=args.max_snapshot_age_h) if args.max_snapshot_age_h > 0 else None
    rec = Recommender(bundle, users, inventory, cfg, switches, seed=args.seed, max_snapshot_age=max_age)
    scorer, client = None, None
    if args.scoring == "inprocess":
        import torch

        from checkout_recs.models.ranker import RankerModel

        torch.set_num_threads(1)
        scorer = RankerModel.load(bundle.model_dir).predict if bundle.model_dir else None
    else:
        client = PredictorClient(args.predictor_url, args.predictor_grpc, protocol=args.ranker_protocol)
    log = None
    if args.decision_log:
        from checkout_recs.storage import open_store

        log = DecisionLog(open_store(args.decision_log), rotate_s=args.decision_log_rotate_s,
                          spill_dir=args.decision_log_spill_dir, max_memory_rows=args.decision_log_max_memory_rows,
                          on_stats=metrics.observe_decision_log)
    t = CheckoutTransformer(rec, client, scorer, log, deadline_ms=args.deadline_ms or cfg.predictor_deadline_ms)
    if args.naive:
        from inference.naive import NaiveItemFeatures

        t.naive = NaiveItemFeatures(users.adapter, bundle)
    else:
        bundle.prepare_plan()  # precompute the item block now, not on the first request
    return t


def main(argv: list[str] | None = None) -> None:
    """Start the transformer server."""
    from inference.server import LoopbackModelServer

    args, _ = build_parser().parse_known_args(argv)
    model = build_transformer(args)
    if args.huge_pages == "collapse":
        from inference.huge_pages import collapse_large_mappings

        print(f"huge pages: {collapse_large_mappings()}", flush=True)
    LoopbackModelServer(host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                        max_body_bytes=args.max_body_bytes, enable_latency_logging=False,
                        fast_route=not args.no_fast_route).start([model])


if __name__ == "__main__":
    main()
