"""Guardrail figures for a canary, read from a Prometheus text endpoint.

The endpoint is anything that serves the Prometheus exposition format with a label telling the
two revisions apart: in production Prometheus' ``/federate`` (every pod's series, summed here),
in tests a fake on loopback. Counters are cumulative, so a step's figures are the difference of
two scrapes (``window``). Metric and label names are configurable (``MetricsSpec``); defaults are
Knative's queue-proxy request metrics (per revision, every request including 5xx) and the
transformer's own counters (``inference/metrics.py``).

Attributed GMV per session comes from an experiment-analysis exporter (``gmv_metric`` /
``sessions_metric``); when the endpoint does not expose it the GMV guardrail is skipped and the
step record says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from checkout_recs.evaluation.experiments.guardrails import GuardrailMetrics


class MetricsSpec(BaseModel):
    """Which series hold each guardrail's inputs."""

    variant_label: str = Field(default="revision_name", description="Label naming the serving revision.")
    requests_metric: str = Field(default="revision_app_request_count", description="Counter of requests.")
    status_label: str = Field(default="response_code_class", description="Label of the response class.")
    error_values: tuple[str, ...] = Field(default=("5xx",), description="Status label values that are errors.")
    latency_histogram: str = Field(default="revision_app_request_latencies", description="Latency histogram.")
    latency_unit_ms: float = Field(default=1.0, gt=0, description="Milliseconds per histogram unit (s: 1000).")
    answers_metric: str = Field(default="checkout_recs_answers_total", description="Answers by policy.")
    fallback_metric: str = Field(default="checkout_recs_fallback_total", description="Fallback answers.")
    gmv_metric: str = Field(default="checkout_recs_attributed_gmv_total", description="Attributed GMV, currency.")
    sessions_metric: str = Field(default="checkout_recs_sessions_total", description="Post-checkout sessions.")


@dataclass
class VariantCounters:
    """Cumulative counters of one revision (sums over pods and other labels)."""

    requests: float = 0.0
    errors: float = 0.0
    answers: float = 0.0
    fallbacks: float = 0.0
    gmv: float | None = None
    sessions: float | None = None
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (ms) -> cumulative count

    def minus(self, earlier: VariantCounters) -> VariantCounters:
        """Counts accrued since ``earlier`` (a counter reset counts from zero)."""
        def d(a: float, b: float) -> float:
            return a - b if a >= b else a

        def opt(a: float | None, b: float | None) -> float | None:
            return None if a is None else d(a, b or 0.0)

        return VariantCounters(
            d(self.requests, earlier.requests), d(self.errors, earlier.errors), d(self.answers, earlier.answers),
            d(self.fallbacks, earlier.fallbacks), opt(self.gmv, earlier.gmv), opt(self.sessions, earlier.sessions),
            {le: d(c, earlier.buckets.get(le, 0.0)) for le, c in self.buckets.items()})


def parse_counters(text: str, spec: MetricsSpec) -> dict[str, VariantCounters]:
    """Per-revision counters from one Prometheus text scrape.

    Returns
    -------
    dict
        ``{revision: VariantCounters}``; series without the variant label are ignored.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, VariantCounters] = defaultdict(VariantCounters)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            variant = s.labels.get(spec.variant_label)
            if variant is None:
                continue
            _add(out[variant], s.name, s.labels, s.value, spec)
    return dict(out)


def _add(c: VariantCounters, name: str, labels: dict[str, str], value: float, spec: MetricsSpec) -> None:
    if name in (spec.requests_metric, spec.requests_metric + "_total"):
        c.requests += value
        if labels.get(spec.status_label) in spec.error_values:
            c.errors += value
    elif name == spec.latency_histogram + "_bucket":
        le = math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"]) * spec.latency_unit_ms
        c.buckets[le] = c.buckets.get(le, 0.0) + value
    elif name in (spec.answers_metric, spec.answers_metric.removesuffix("_total")):
        c.answers += value
    elif name in (spec.fallback_metric, spec.fallback_metric.removesuffix("_total")):
        c.fallbacks += value
    elif name in (spec.gmv_metric, spec.gmv_metric.removesuffix("_total")):
        c.gmv = (c.gmv or 0.0) + value
    elif name in (spec.sessions_metric, spec.sessions_metric.removesuffix("_total")):
        c.sessions = (c.sessions or 0.0) + value


def p95_ms(buckets: dict[float, float]) -> float:
    """95th percentile from cumulative histogram buckets (ms), interpolated like
    ``histogram_quantile``; 0.0 when there are no observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return 0.0
    target, prev_le, prev_c = 0.95 * buckets[bounds[-1]], 0.0, 0.0
    for le in bounds:
        if buckets[le] >= target:
            if math.isinf(le):
                return prev_le
            span = buckets[le] - prev_c
            return prev_le + (le - prev_le) * ((target - prev_c) / span if span > 0 else 1.0)
        prev_le, prev_c = le, buckets[le]
    return prev_le


def guardrail_metrics(canary: VariantCounters, control: VariantCounters) -> tuple[GuardrailMetrics, list[str]]:
    """``GuardrailMetrics`` of the canary over a window, and notes on what could not be measured.

    Rates are 0.0 with no traffic (the guardrail then holds on ``min_requests``); the GMV ratio
    is None (guardrail skipped, noted) when either side lacks GMV or sessions.
    """
    notes: list[str] = []
    requests = canary.requests or canary.answers
    gmv_ratio = None
    if None in (canary.gmv, canary.sessions, control.gmv, control.sessions):
        notes.append("GMV per session not exposed by the metrics endpoint: GMV guardrail skipped")
    elif canary.sessions and control.sessions and control.gmv:
        gmv_ratio = (canary.gmv / canary.sessions) / (control.gmv / control.sessions)  # type: ignore[operator]
    m = GuardrailMetrics(
        requests=int(requests),
        p95_latency_ms=p95_ms(canary.buckets),
        error_rate=min(1.0, canary.errors / canary.requests) if canary.requests else 0.0,
        fallback_rate=min(1.0, canary.fallbacks / canary.answers) if canary.answers else 0.0,
        gmv_ratio=gmv_ratio,
    )
    return m, notes


class PrometheusTextSource:
    """Scrapes a Prometheus text endpoint (``/metrics`` or ``/federate?match[]=...``) over HTTP."""

    def __init__(self, url: str, spec: MetricsSpec | None = None, timeout_s: float = 5.0) -> None:
        import httpx

        self.url, self.spec = url, spec or MetricsSpec()
        self._client = httpx.Client(timeout=timeout_s)  # one client: TLS context built once

    def scrape(self) -> dict[str, VariantCounters]:
        """Per-revision counters now. Raises ``ConnectionError`` when the endpoint fails."""
        import httpx

        try:
            r = self._client.get(self.url)
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise ConnectionError(f"metrics endpoint {self.url}: {e}") from e
        return parse_counters(r.text, self.spec)
