"""The monitoring stack on loopback: both KServe servers, the drift exporter serving a real
``checkout-recs drift`` run, and a real Prometheus scraping all three with the repository's
alert and recording rules. Checks that every dashboard query names a metric the live stack has,
that the canary's PromQL guardrails read the transformer's own histogram, and that the servers'
log lines are JSON carrying the request id and the bundle version.

The transformer answers from memory (inventory, no switches): no Redis needed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from checkout_recs.deploy.alerts import RULE_SOURCES, load_groups
from checkout_recs.deploy.metrics import MetricsSpec, PrometheusQuerySource
from checkout_recs.storage import LocalArtifactStore
from cli.app import app
from inference.launch import running_servers
from inference.predictor import bundle_version
from monitoring.dashboard import load, metric_names, panel_queries
from monitoring.drift_metrics import TEXTFILE_NAME
from monitoring.exporter import DriftMetrics, make_server
from tests.fixtures_prometheus import REPO, ScrapeTarget, address_of, running_prometheus
from tests.fixtures_serving import make_serving_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REVISION = (
    "checkout-recs-transformer-00001"  # what Knative's pod label gives the scrape in a cluster
)
KNOWN, UNKNOWN = 3, 987_654_321


def _drift_run(root: Path) -> Path:
    """A real ``checkout-recs drift`` run on two small tables (the current one shifted in price)."""
    rng = np.random.default_rng(0)
    for name, shift in (("reference", 0.0), ("current", 1.0)):
        pd.DataFrame(
            {
                "price": rng.normal(20 + 10 * shift, 5, 400),
                "category": rng.choice(["a", "b", "c"], 400),
            }
        ).to_parquet(root / f"{name}.parquet")
    res = CliRunner().invoke(
        app,
        [
            "drift",
            "--reference",
            str(root / "reference.parquet"),
            "--current",
            str(root / "current.parquet"),
            "--out",
            str(root / "drift"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (root / "drift" / TEXTFILE_NAME).exists()
    return root / "drift"


def ask(url: str, user: int, request_id: str | None = None) -> dict[str, Any]:
    """One v1 post-checkout call; the prediction."""
    inst: dict[str, Any] = {"user_id": user, "purchased_item_ids": [1000, 1001], "region": "north"}
    if request_id:
        inst["request_id"] = request_id
    r = httpx.post(url, json={"instances": [inst]}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json()["predictions"][0])


def live_names(url: str) -> set[str]:
    """Sample names a ``/metrics`` endpoint serves now (``_bucket``, ``_total``, ... included)."""
    text = httpx.get(url, timeout=10).text
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("stack")
    bundle = make_serving_bundle(root / "bundle")
    store = LocalArtifactStore(root / "store")
    store.publish("drift", "drift-1", _drift_run(root))
    exporter = make_server(DriftMetrics(store, refresh_s=1.0))
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    targs = [
        "--inventory",
        "memory",
        "--switches",
        "none",
        "--decision_log",
        str(root / "decisions"),
        "--decision_log_rotate_s",
        "0.5",
        "--log_format",
        "json",
    ]
    with running_servers(
        bundle,
        transformer_args=targs,
        predictor_args=["--log_format", "json"],
        log_dir=root / "logs",
    ) as servers:
        targets = [
            ScrapeTarget(
                "transformer",
                address_of(servers.transformer_url),
                labels={"revision_name": REVISION},
            ),
            ScrapeTarget("predictor", address_of(servers.predictor_url)),
            ScrapeTarget("drift-exporter", f"127.0.0.1:{exporter.server_address[1]}"),
        ]
        with running_prometheus(targets, root / "prometheus") as prom:
            prom.wait_targets_up(3)
            ask(servers.v1_url, KNOWN)  # every series exists before the measured window: a counter
            ask(
                servers.v1_url, UNKNOWN
            )  # born inside a window loses its first increment to increase()
            prom.wait_for("checkout_recs_fallback_total", lambda r: len(r) == 1)
            time.sleep(2.0)  # the baseline's scrapes end before the measured window starts
            before = time.time()
            for i in range(20):  # 20 ranker answers, 10 fallbacks for unknown users
                ask(servers.v1_url, KNOWN, f"stack-known-{i}")
                if i % 2 == 0:
                    ask(servers.v1_url, UNKNOWN, f"stack-unknown-{i}")
            prom.wait_for(
                'checkout_recs_answers_total{policy="fallback"}',
                lambda r: float(r[0]["value"][1]) >= 11,
            )
            # the rules are evaluated on their own clock (1 s here, later on a loaded box): wait
            # until an evaluation has seen the window's increments, not only the series' birth
            prom.wait_for(
                "checkout_recs:fallback:ratio_rate5m",
                lambda r: len(r) == 1 and float(r[0]["value"][1]) > 0,
            )
            prom.wait_for("checkout_recs:fallback:rate5m", lambda r: len(r) >= 1)
            prom.wait_for(
                "checkout_recs:stage_seconds:p95_5m",
                lambda r: {"total", "policy"} <= {x["metric"].get("stage") for x in r},
            )
            yield {
                "servers": servers,
                "prom": prom,
                "bundle": bundle,
                "since": before,
                "exporter": f"http://127.0.0.1:{exporter.server_address[1]}/metrics",
                "logs": root / "logs",
            }
    exporter.shutdown()
    exporter.server_close()


def test_prometheus_scrapes_both_servers_and_the_drift_exporter(stack) -> None:
    up = {r["metric"]["job"]: r["value"][1] for r in stack["prom"].query("up")}
    assert up == {"transformer": "1", "predictor": "1", "drift-exporter": "1"}
    scores = stack["prom"].query('checkout_recs_drift_score{feature="price"}')
    assert (
        scores and float(scores[0]["value"][1]) > 0.1
    )  # the shifted column, as the job measured it


def test_every_dashboard_query_names_a_metric_the_live_stack_has(stack) -> None:
    s = stack["servers"]
    live = (
        live_names(f"{s.transformer_url}/metrics")
        | live_names(f"{s.predictor_url}/metrics")
        | live_names(stack["exporter"])
    )
    recorded = {
        r["record"]
        for src in RULE_SOURCES
        for g in load_groups(REPO / src.source)
        for r in g["rules"]
        if "record" in r
    }
    held = stack["prom"].metric_names()  # what Prometheus has: scraped series and evaluated rules
    queries = panel_queries(load())
    assert len(queries) >= 15
    for title, expr in queries:
        for name in metric_names(expr):
            assert name in live or name in recorded, (
                f"panel {title!r}: {name} is on no live /metrics nor recorded"
            )
            assert name in held, f"panel {title!r}: Prometheus holds no {name}"


def test_the_recording_rules_match_what_the_servers_counted(stack) -> None:
    ratio = stack["prom"].query("checkout_recs:fallback:ratio_rate5m")
    assert 0 < float(ratio[0]["value"][1]) < 1
    stages = {
        r["metric"]["stage"] for r in stack["prom"].query("checkout_recs:stage_seconds:p95_5m")
    }
    assert {"total", "policy"} <= stages


def test_promql_guardrails_read_the_transformers_own_histogram(stack) -> None:
    spec = MetricsSpec(
        requests_metric="checkout_recs_answers_total",
        latency_histogram="checkout_recs_stage_seconds",
        latency_matchers='stage="total"',
        latency_unit_ms=1000,
    )
    # increase() extrapolates the samples' span (scrapes every 0.5 s) to the window's edges: a
    # window of >= 10 s keeps that under 10 %; it starts 1 s before the asks (flat samples there)
    time.sleep(max(0.0, stack["since"] + 10 - time.time()))
    w = PrometheusQuerySource(stack["prom"].url, spec).window(time.time() - stack["since"] + 1)[
        REVISION
    ]
    assert w.answers == pytest.approx(30, rel=0.15)
    # both from the same scrapes; the launcher's warm-up answers (ranker) may share the window
    assert w.fallbacks / w.answers == pytest.approx(1 / 3, abs=0.03)
    assert 0 < w.p95_ms < 2000 and w.errors == 0


def test_every_server_log_line_is_json_with_the_bundle_version(stack) -> None:
    version = bundle_version(stack["bundle"])
    for name in ("transformer", "predictor"):
        text = (stack["logs"] / f"{name}.log").read_text().splitlines()
        lines = [
            json.loads(line) for line in text if line.strip()
        ]  # raises on a line that is not JSON
        assert lines, f"{name}: no log line"
        assert all(line["bundle_version"] == version and "request_id" in line for line in lines), (
            name
        )


def json_lines_with(log: Path, needle: str, timeout_s: float = 10.0) -> list[dict]:
    """The JSON lines of ``log`` that contain ``needle``, polled until one is there (or
    ``timeout_s``): a server writes its log asynchronously."""
    deadline = time.monotonic() + timeout_s
    while True:
        hits = [
            json.loads(x) for x in log.read_text().splitlines() if x.startswith("{") and needle in x
        ]
        if hits or time.monotonic() >= deadline:
            return hits
        time.sleep(0.2)


def test_the_predictors_lines_carry_the_request_id_of_its_hop(stack) -> None:
    """A request refused by the predictor is logged with the ``x-request-id`` it came with (the
    header the transformer's hop sends)."""
    s = stack["servers"]
    r = httpx.post(
        f"{s.predictor_url}/v2/models/ranker/infer",
        json={"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1]}]},
        headers={"x-request-id": "pred-log-check"},
        timeout=10,
    )
    assert r.status_code == 400, r.text
    hits = json_lines_with(stack["logs"] / "predictor.log", "pred-log-check")
    assert hits, "the predictor logged nothing for the refused request"
    assert all(h["request_id"] == "pred-log-check" for h in hits)
    assert hits[0]["bundle_version"] == bundle_version(stack["bundle"])


def test_a_log_line_written_while_serving_carries_the_request_id(stack) -> None:
    """Runs last in this module: it stops the predictor, so the transformer's hop fails and logs."""
    s = stack["servers"]
    os.killpg(s.processes["predictor"].pid, signal.SIGTERM)
    s.processes["predictor"].wait(30)
    pred = ask(s.v1_url, KNOWN, "stack-log-check")
    assert pred["policy"] == "fallback" and pred["fallback_reason"] == "predictor_error"
    hits = json_lines_with(stack["logs"] / "transformer.log", "stack-log-check")
    assert hits, "no log line of the failed hop"
    line = hits[0]
    assert line["request_id"] == "stack-log-check" and line["level"] == "WARNING"
    assert (
        line["bundle_version"] == bundle_version(stack["bundle"])
        and line["failure"] == "predictor_error"
    )
    assert list(line)[:6] == ["ts", "level", "logger", "message", "request_id", "bundle_version"]
