"""The serving benchmark's load generator run as a process of its own, and the throughput bar."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.serving_load import open_loop_process
from benchmarks.serving_throughput import closed_loop_wrk, meets_target, parse_wrk, wrk_sweep


def _handler(status: int, policy: str) -> type[BaseHTTPRequestHandler]:
    body = json.dumps({"predictions": [{"policy": policy, "fallback_reason": None}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the servers answer

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    status, policy = getattr(request, "param", (200, "ranker"))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(status, policy))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1/models/m:predict"
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_generator_process_sends_every_request_and_reports_its_own_cpu(server: str) -> None:
    r = open_loop_process(server, [{"instances": [{"basket": [1]}]}], rate=40.0, duration=1.0)
    assert r["sent"] == 40 and r["ok"] == 40 and r["errors"] == 0
    assert r["ranker_share"] == 1.0
    g = r["generator"]
    assert g["cpu_s"] > 0 and g["wall_s"] >= 0.9
    assert g["cpu_ms_per_request"] == pytest.approx(g["cpu_s"] * 1e3 / 40)
    assert 0 < g["core_share"] < 1
    assert g["spin_ms"] == 0.0


@pytest.mark.parametrize("server", [(503, "ranker")], indirect=True)
def test_refused_answers_are_counted_as_errors_and_5xx(server: str) -> None:
    r = open_loop_process(server, [{"instances": [{"basket": [1]}]}], rate=20.0, duration=0.5)
    assert r["sent"] == 10 and r["ok"] == 0 and r["errors"] == 10 and r["http_5xx"] == 10


def _run(**over: float) -> dict:
    base = {
        "rate_rps": 250.0,
        "throughput_rps": 249.0,
        "p99_ms": 20.0,
        "errors": 0,
        "ranker_share": 1.0,
    }
    return {**base, **over}


def test_the_throughput_bar_needs_p99_no_errors_all_ranker_and_the_rate_served() -> None:
    assert meets_target(_run())
    assert not meets_target(_run(p99_ms=25.1))
    assert not meets_target(_run(errors=1))
    assert not meets_target(_run(ranker_share=0.999))
    assert not meets_target(_run(throughput_rps=240.0))


WRK_OUT = """Running 3s test @ http://127.0.0.1:18777/v1/models/m:predict
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    47.27ms    6.74ms   1.02s    89.68%
    Req/Sec    82.67     10.11   120.00     90.00%
  Latency Distribution
     50%  850.00us
     75%   49.68ms
     90%   52.65ms
     99%    1.02s
  252 requests in 3.05s, 51.75KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:     82.66
Transfer/sec:     16.97KB
status 200 245
status 503 7
"""


def test_wrk_output_is_read_with_units_statuses_and_errors() -> None:
    r = parse_wrk(WRK_OUT)
    assert r["requests"] == 252 and r["rps"] == pytest.approx(82.66)
    assert r["p50_ms"] == pytest.approx(0.85) and r["p75_ms"] == pytest.approx(49.68)
    assert r["p99_ms"] == pytest.approx(1020.0)
    assert r["non_2xx"] == 7 and r["socket_errors"] == 5
    assert r["status"] == {200: 245, 503: 7}


def test_without_wrk_there_is_no_closed_loop_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("benchmarks.serving_throughput.shutil.which", lambda _: None)
    assert closed_loop_wrk(object(), [{}], 4, 1.0) is None


def test_wrk_sweep_runs_each_count_ascending_and_reports_the_busiest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []

    def fake(s: object, bodies: list[dict], c: int, duration_s: float) -> dict:
        seen.append(c)
        rps = {1: 150.0, 2: 210.0, 8: 190.0}[c]
        return {"rps": rps, "non_2xx": 0, "cpu_ms_per_request": {"transformer": 1e3 / rps}}

    monkeypatch.setattr("benchmarks.serving_throughput.closed_loop_wrk", fake)
    res = wrk_sweep(object(), [{}], [8, 0, 1, 2], 1.0, say=lambda _: None)
    assert seen == [1, 2, 8]
    assert [r["rps"] for r in res["wrk_runs"]] == [150.0, 210.0, 190.0]
    assert res["wrk_saturation_rps"] == 210.0 and res["wrk"] is res["wrk_runs"][1]


def test_wrk_sweep_without_wrk_has_no_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("benchmarks.serving_throughput.shutil.which", lambda _: None)
    res = wrk_sweep(object(), [{}], [1, 4], 1.0, say=lambda _: None)
    assert res == {"wrk_runs": [], "wrk": None, "wrk_saturation_rps": None}
