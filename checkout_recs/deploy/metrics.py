"""Guardrail figures for a canary, asked of Prometheus in PromQL (``/api/v1/query``).

Prometheus scrapes every serving pod; the ramp asks it, per serving revision and over the step's
window so far, for the request and 5xx counts, the p95 latency (``histogram_quantile`` over the
latency histogram's bucket increases), the answers and fallbacks, and, when an exporter publishes
them, attributed GMV and sessions. Metric and label names are configurable (``MetricsSpec``);
defaults are Knative's queue-proxy request metrics (per revision, every request including 5xx:
what the page waits for) and the transformer's counters (``inference/metrics.py``). For the
transformer's own histogram instead (``checkout_recs_stage_seconds{stage="total"}``, seconds)
set ``latency_histogram``, ``latency_matchers`` and ``latency_unit_ms=1000``; the revision label
then comes from the scrape config (Knative's pod label ``serving.knative.dev/revision``).

GMV per session canary vs champion with an interval comes from the decision log
(``deploy.attribution``), which no Prometheus query can give; the exporter counters here are a
point ratio used only when no decision-log source is configured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, Field

from checkout_recs.evaluation.experiments.guardrails import GuardrailMetrics


class MetricsSpec(BaseModel):
    """Which series hold each guardrail's inputs."""

    variant_label: str = Field(
        default="revision_name", description="Label naming the serving revision."
    )
    matchers: str = Field(
        default="", description='Extra label matchers on every series, e.g. namespace="x".'
    )
    requests_metric: str = Field(
        default="revision_app_request_count", description="Counter of requests."
    )
    status_label: str = Field(
        default="response_code_class", description="Label of the response class."
    )
    error_values: tuple[str, ...] = Field(
        default=("5xx",), description="Status label values that are errors."
    )
    latency_histogram: str = Field(
        default="revision_app_request_latencies", description="Latency histogram."
    )
    latency_matchers: str = Field(
        default="", description='Matchers on the histogram only, e.g. stage="total".'
    )
    latency_unit_ms: float = Field(
        default=1.0, gt=0, description="Milliseconds per histogram unit (s: 1000)."
    )
    answers_metric: str = Field(
        default="checkout_recs_answers_total", description="Answers by policy."
    )
    fallback_metric: str = Field(
        default="checkout_recs_fallback_total", description="Fallback answers."
    )
    gmv_metric: str = Field(
        default="checkout_recs_attributed_gmv_total", description="Attributed GMV, currency."
    )
    sessions_metric: str = Field(
        default="checkout_recs_sessions_total", description="Post-checkout sessions."
    )


@dataclass
class VariantWindow:
    """One revision's figures over a window (sums over pods and other labels)."""

    requests: float = 0.0
    errors: float = 0.0
    answers: float = 0.0
    fallbacks: float = 0.0
    p95_ms: float = 0.0
    gmv: float | None = None
    sessions: float | None = None


def promql_duration(seconds: float) -> str:
    """A PromQL range duration for ``seconds`` (whole milliseconds, at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _selector(metric: str, *matchers: str) -> str:
    """``{__name__=~"m|m_total", ...}``: counters match with or without the ``_total`` suffix."""
    base = metric.removesuffix("_total")
    parts = [f'__name__=~"{base}|{base}_total"', *(m for m in matchers if m)]
    return "{" + ", ".join(parts) + "}"


def window_queries(spec: MetricsSpec, window_s: float) -> dict[str, str]:
    """The PromQL of each figure, summed ``by`` the variant label over the last ``window_s`` seconds."""
    w, by = promql_duration(window_s), spec.variant_label
    errors = f'{spec.status_label}=~"{"|".join(spec.error_values)}"'

    def increase(metric: str, *matchers: str) -> str:
        return f"sum by ({by}) (increase({_selector(metric, spec.matchers, *matchers)}[{w}]))"

    bucket = "{" + ", ".join(m for m in (spec.matchers, spec.latency_matchers) if m) + "}"
    return {
        "requests": increase(spec.requests_metric),
        "errors": increase(spec.requests_metric, errors),
        "answers": increase(spec.answers_metric),
        "fallbacks": increase(spec.fallback_metric),
        "gmv": increase(spec.gmv_metric),
        "sessions": increase(spec.sessions_metric),
        "p95_ms": (
            f"histogram_quantile(0.95, sum by (le, {by}) (increase({spec.latency_histogram}_bucket"
            f"{bucket if bucket != '{}' else ''}[{w}]))) * {spec.latency_unit_ms:g}"
        ),
    }


def windows_from_results(
    results: dict[str, list[dict[str, Any]]], variant_label: str
) -> dict[str, VariantWindow]:
    """Per-revision ``VariantWindow`` from instant-vector results (``{figure: data.result}``).

    Series without the variant label are ignored; a NaN (no observations) counts as 0.
    """
    out: dict[str, VariantWindow] = {}
    for figure, series in results.items():
        for s in series:
            variant = s.get("metric", {}).get(variant_label)
            if variant is None:
                continue
            value = float(s["value"][1])
            setattr(
                out.setdefault(variant, VariantWindow()),
                figure,
                0.0 if math.isnan(value) else value,
            )
    return out


def guardrail_metrics(
    canary: VariantWindow, control: VariantWindow
) -> tuple[GuardrailMetrics, list[str]]:
    """``GuardrailMetrics`` of the canary over a window, and notes on what could not be measured.

    Rates are 0.0 with no traffic (the guardrail then holds on ``min_requests``); the GMV ratio
    is None (guardrail skipped, noted) when either side lacks GMV or sessions.
    """
    notes: list[str] = []
    requests = canary.requests or canary.answers
    gmv_ratio = None
    if None in (canary.gmv, canary.sessions, control.gmv, control.sessions):
        notes.append("GMV per session not exposed by Prometheus: GMV guardrail skipped")
    elif canary.sessions and control.sessions and control.gmv:
        gmv_ratio = (canary.gmv / canary.sessions) / (control.gmv / control.sessions)  # type: ignore[operator]
    m = GuardrailMetrics(
        requests=int(round(requests)),
        p95_latency_ms=canary.p95_ms,
        error_rate=min(1.0, canary.errors / canary.requests) if canary.requests else 0.0,
        fallback_rate=min(1.0, canary.fallbacks / canary.answers) if canary.answers else 0.0,
        gmv_ratio=gmv_ratio,
    )
    return m, notes


class PrometheusQuerySource:
    """Asks a Prometheus server (base URL, e.g. ``http://prometheus-operated.monitoring:9090``)
    for the guardrail figures of every revision over a window."""

    def __init__(self, url: str, spec: MetricsSpec | None = None, timeout_s: float = 5.0) -> None:
        self.url, self.spec = base_url(url), spec or MetricsSpec()
        self._client = httpx.Client(timeout=timeout_s)  # one client: TLS context built once

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant-vector result of ``promql`` now. Raises ``ConnectionError`` when Prometheus
        cannot be reached or refuses the query."""
        try:
            r = self._client.get(f"{self.url}/api/v1/query", params={"query": promql})
            body = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise ConnectionError(f"Prometheus {self.url}: {e}") from e
        if r.status_code != 200 or body.get("status") != "success":
            raise ConnectionError(
                f"Prometheus {self.url}: {r.status_code} {body.get('error', r.text[:200])}"
            )
        return list(body["data"]["result"])

    def window(self, window_s: float) -> dict[str, VariantWindow]:
        """Per-revision figures over the last ``window_s`` seconds."""
        queries = window_queries(self.spec, window_s)
        return windows_from_results(
            {k: self.query(q) for k, q in queries.items()}, self.spec.variant_label
        )


def base_url(url: str) -> str:
    """Prometheus' base URL from what an operator may paste: a trailing ``/``, ``/federate?...``,
    ``/api/v1/...`` or ``/graph`` is dropped."""
    url = url.split("?", 1)[0].rstrip("/")
    for tail in ("/federate", "/graph"):
        url = url.removesuffix(tail)
    return url.split("/api/v1", 1)[0]
