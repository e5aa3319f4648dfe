"""Prometheus metrics of the transformer (served on ``/metrics`` by the KServe REST server).

* ``checkout_recs_stage_seconds{stage}`` — histogram per request-path stage: features,
  retrieval, inventory, rank_input, rank (predictor hop), policy, total;
* ``checkout_recs_fallback_total{reason}`` — answers given by the fallback, by reason;
* ``checkout_recs_answers_total{policy}`` — answers by policy;
* ``checkout_recs_exploration_spend_total`` — expected revenue given up to exploration (currency);
* ``checkout_recs_exploration_budget`` — today's exploration cap (currency);
* ``checkout_recs_new_seller_exposure_share`` — share of recent slots given to new sellers or
  cold-start listings;
* ``checkout_recs_decision_log_dropped_total`` — decision rows dropped (inbox full / spill failed);
* ``checkout_recs_decision_log_rows{state}`` — decision rows ``accepted``, ``written``, ``pending``
  (in memory or spilled to disk), ``spilled``, ``dropped``, ``quarantined`` (rows that do not fit
  the contract, kept apart with their reason): accepted = written + pending + dropped + quarantined
  (set by the writer thread, never on the request path);
* ``checkout_recs_inventory_replica_age_seconds`` — seconds since the inventory replica was last
  proven current (``--inventory replica``; past ``--inventory_max_lag_s`` answers say
  ``inventory_stale``), ``checkout_recs_inventory_replica_lag_seconds`` — apply time minus stream
  time of the newest event it applied, ``checkout_recs_inventory_replica_stale`` (0/1),
  ``checkout_recs_inventory_replica_unavailable`` — listings it holds sold / delisted / locked,
  ``checkout_recs_inventory_replica_events`` — stream entries it read (all read when the scrape
  happens, nothing on the request path);
* ``checkout_recs_inventory_fence_lookups_total{outcome}`` — async lookups behind the replica's read
  fence (``serving/inventory_fence.py``): ``proven`` (a read sent after the request arrived had
  already proven the replica current: no wait), ``fenced`` (waited for a fence read),
  ``timed_out`` / ``failed`` (the read was late / failed: the lag rule answered, reason
  ``inventory_stale``); ``checkout_recs_inventory_fence_reads_total{result=ok|error}`` — fence
  reads made; ``checkout_recs_inventory_fence_wait_seconds`` — histogram of the waits of the lookups
  not already proven current (counted by the fence, exported at scrape time);
* ``checkout_recs_shed_total{point,answer}`` — calls not served by the full path because of their
  deadline (``inference.deadline``): ``point`` ``admission`` (could not start in time),
  ``before_predict`` / ``before_decide`` (deadline passed in the stages), ``disconnected`` (the
  client left before the policy stage), ``inventory_unproven`` (the inventory lookup could not be
  proven current and ``--inventory_unproven refuse`` is set); ``answer`` ``fallback`` (the cheap path answered) or
  ``refused`` (503 / UNAVAILABLE, nothing computed, logged or counted as exposure).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from checkout_recs.serving.inventory_fence import WAIT_BUCKETS_S

_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)

STAGE_SECONDS = Histogram(
    "checkout_recs_stage_seconds", "Request-path stage latency", ["stage"], buckets=_BUCKETS
)
FALLBACKS = Counter(
    "checkout_recs_fallback_total", "Answers from the fallback, by reason", ["reason"]
)
ANSWERS = Counter("checkout_recs_answers_total", "Answers by policy", ["policy"])
EXPLORATION_SPEND = Counter(
    "checkout_recs_exploration_spend_total",
    "Expected revenue given up to exploration (currency units)",
)
EXPLORATION_BUDGET = Gauge(
    "checkout_recs_exploration_budget", "Exploration cap so far today (currency units)"
)
NEW_SELLER_SHARE = Gauge(
    "checkout_recs_new_seller_exposure_share",
    "Share of recent slots for new sellers / cold-start listings",
)
DECISIONS_DROPPED = Gauge("checkout_recs_decision_log_dropped_total", "Decision records dropped")
DECISION_ROWS = Gauge("checkout_recs_decision_log_rows", "Decision log rows by state", ["state"])
SHED = Counter(
    "checkout_recs_shed",
    "Calls shed by their deadline, by point and answer (fallback | refused)",
    ["point", "answer"],
)
REPLICA_AGE = Gauge(
    "checkout_recs_inventory_replica_age_seconds",
    "Seconds since the inventory replica was last proven current",
)
REPLICA_LAG = Gauge(
    "checkout_recs_inventory_replica_lag_seconds",
    "Apply time minus stream time of the newest inventory event the replica applied",
)
REPLICA_STALE = Gauge(
    "checkout_recs_inventory_replica_stale", "1 while the inventory replica is past its bound"
)
REPLICA_UNAVAILABLE = Gauge(
    "checkout_recs_inventory_replica_unavailable",
    "Listings the replica holds sold, delisted or locked",
)
REPLICA_EVENTS = Gauge(
    "checkout_recs_inventory_replica_events", "Inventory stream entries the replica read"
)


def observe(
    timings_ms: dict[str, float],
    policy: str,
    fallback_reason: str | None,
    exploration_cost: float,
    budget: float,
    new_share: float,
    dropped: int,
) -> None:
    """Record one answer's figures (timings in milliseconds)."""
    for stage, ms in timings_ms.items():
        STAGE_SECONDS.labels(stage=stage).observe(ms / 1e3)
    ANSWERS.labels(policy=policy).inc()
    if fallback_reason:
        FALLBACKS.labels(reason=fallback_reason).inc()
    if exploration_cost > 0:
        EXPLORATION_SPEND.inc(exploration_cost)
    EXPLORATION_BUDGET.set(budget)
    NEW_SELLER_SHARE.set(new_share)
    DECISIONS_DROPPED.set(dropped)


def observe_decision_log(stats: dict[str, int]) -> None:
    """Set the decision-log gauges from ``DecisionLog.stats()`` (row counts); called off the request path."""
    for state in ("accepted", "written", "pending", "spilled", "dropped", "quarantined"):
        DECISION_ROWS.labels(state=state).set(stats[state])
    DECISIONS_DROPPED.set(stats["dropped"])


def watch_inventory_replica(replica: Any) -> None:
    """Export ``replica``'s (``ReplicaInventoryStore``) age, lag, staleness and sizes, read at scrape time."""
    REPLICA_AGE.set_function(replica.age_s)
    REPLICA_LAG.set_function(lambda: replica.lag_s)
    REPLICA_STALE.set_function(lambda: float(replica.stale()))
    REPLICA_UNAVAILABLE.set_function(replica.held)
    REPLICA_EVENTS.set_function(lambda: replica.report.read)
    if replica.fence is not None:
        _FENCE.stats = replica.fence.stats


class _FenceCollector:
    """The read fence's counts (``FenceStats``) as Prometheus counters and a histogram, at scrape time."""

    def __init__(self) -> None:
        self.stats: Any = None  # the watched replica's ``FenceStats`` (None: no fence)

    def collect(self) -> Iterator[Metric]:
        """The three fence families (empty until a replica with a fence is watched)."""
        st = self.stats
        lookups = CounterMetricFamily(
            "checkout_recs_inventory_fence_lookups_total",
            "Replica lookups behind the read fence, by outcome",
            labels=["outcome"],
        )
        reads = CounterMetricFamily(
            "checkout_recs_inventory_fence_reads_total",
            "Fence reads of the inventory stream, by result",
            labels=["result"],
        )
        if st is not None:
            for outcome in ("proven", "fenced", "timed_out", "failed"):
                lookups.add_metric([outcome], getattr(st, outcome))
            reads.add_metric(["ok"], st.reads - st.read_errors)
            reads.add_metric(["error"], st.read_errors)
        yield lookups
        yield reads
        if st is not None:
            cum, buckets = 0, []
            for edge, n in zip((*WAIT_BUCKETS_S, float("inf")), st.wait_hist, strict=True):
                cum += n
                buckets.append(("+Inf" if edge == float("inf") else repr(edge), cum))
            yield HistogramMetricFamily(
                "checkout_recs_inventory_fence_wait_seconds",
                "Seconds replica lookups that were not already proven current waited for their fence read",
                buckets=buckets,
                sum_value=st.wait_s,
            )


_FENCE = _FenceCollector()
REGISTRY.register(_FENCE)


def observe_shed(point: str, answer: str) -> None:
    """Count one call shed at ``point`` and answered by ``answer`` (``fallback`` | ``refused``)."""
    SHED.labels(point=point, answer=answer).inc()
