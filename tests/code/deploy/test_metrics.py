"""The canary's PromQL: queries per figure, result parsing, guardrail figures, URL handling.
(The queries run against a real Prometheus in tests/e2e/deploy.)"""

from __future__ import annotations

import math

import pytest

from checkout_recs.deploy.metrics import (
    MetricsSpec,
    VariantWindow,
    base_url,
    guardrail_metrics,
    promql_duration,
    window_queries,
    windows_from_results,
)


def test_queries_sum_increases_by_revision_over_the_window():
    q = window_queries(MetricsSpec(matchers='namespace="recs"'), 90)
    assert q["requests"] == (
        'sum by (revision_name) (increase({__name__=~"revision_app_request_count|'
        'revision_app_request_count_total", namespace="recs"}[90000ms]))'
    )
    assert 'response_code_class=~"5xx"' in q["errors"]
    assert q["p95_ms"] == (
        "histogram_quantile(0.95, sum by (le, revision_name) (increase("
        'revision_app_request_latencies_bucket{namespace="recs"}[90000ms]))) * 1'
    )


def test_the_transformer_histogram_in_seconds_is_scaled_to_ms():
    spec = MetricsSpec(
        latency_histogram="checkout_recs_stage_seconds",
        latency_matchers='stage="total"',
        latency_unit_ms=1000,
    )
    assert window_queries(spec, 0.0004)["p95_ms"] == (
        "histogram_quantile(0.95, sum by (le, revision_name) (increase("
        'checkout_recs_stage_seconds_bucket{stage="total"}[1ms]))) * 1000'
    )
    assert promql_duration(2.5) == "2500ms"


def test_results_become_windows_per_revision_and_nan_counts_as_zero():
    res = {
        "requests": [
            {"metric": {"revision_name": "a"}, "value": [0, "100"]},
            {"metric": {}, "value": [0, "7"]},
        ],  # no revision label: ignored
        "p95_ms": [{"metric": {"revision_name": "a"}, "value": [0, "NaN"]}],
        "gmv": [{"metric": {"revision_name": "b"}, "value": [0, "3.5"]}],
    }
    w = windows_from_results(res, "revision_name")
    assert w == {"a": VariantWindow(requests=100.0, p95_ms=0.0), "b": VariantWindow(gmv=3.5)}


def test_guardrail_figures_from_two_windows():
    canary = VariantWindow(
        requests=200, errors=4, answers=190, fallbacks=19, p95_ms=42.0, gmv=30.0, sessions=20
    )
    control = VariantWindow(requests=1800, answers=1800, gmv=300.0, sessions=300)
    m, notes = guardrail_metrics(canary, control)
    assert (m.requests, m.error_rate, m.fallback_rate, m.p95_latency_ms) == (200, 0.02, 0.1, 42.0)
    assert m.gmv_ratio == pytest.approx(1.5) and notes == []
    m, notes = guardrail_metrics(VariantWindow(), VariantWindow())
    assert m.requests == 0 and m.error_rate == 0.0 and m.gmv_ratio is None and "GMV" in notes[0]
    assert not math.isnan(m.p95_latency_ms)


@pytest.mark.parametrize(
    "pasted",
    [
        "http://prom:9090",
        "http://prom:9090/",
        "http://prom:9090/graph",
        'http://prom:9090/federate?match[]={namespace="recs"}',
        "http://prom:9090/api/v1/query",
    ],
)
def test_base_url_accepts_what_an_operator_pastes(pasted):
    assert base_url(pasted) == "http://prom:9090"
