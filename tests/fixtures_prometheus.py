"""A real Prometheus (Debian's ``prometheus`` package) on loopback for the tests that need one.

``running_prometheus(targets, workdir)`` writes a config scraping ``targets`` (every
``scrape_interval``) with the repository's rule files rendered as the cluster gets them, starts
``prometheus --web.listen-address=127.0.0.1:<free port> --storage.tsdb.path=<tmp>``, waits until
it is ready, yields a ``PrometheusServer`` and stops it (SIGTERM, then SIGKILL) on exit.

Prometheus and promtool are required: ``scripts/ensure_services.sh`` (run by ``make test`` and
``.ci/run``) installs them; a test that needs one and finds none fails with that hint.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_recs.deploy.alerts import DEFAULT_RUNBOOK_BASE, RULE_SOURCES, render_rules_file
from inference.launch import HOST, free_port

REPO = Path(__file__).resolve().parents[1]
INSTALL_HINT = "install it with `bash scripts/ensure_services.sh` (Debian package `prometheus`)"


def require_binary(name: str) -> str:
    """Path of ``name`` (``prometheus`` or ``promtool``); fails the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: {INSTALL_HINT}")
    return path


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job: ``address`` is ``host:port``; ``labels`` are added to every series."""

    job: str
    address: str
    metrics_path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class PrometheusServer:
    """A running Prometheus: its base URL, process and folders."""

    url: str
    process: subprocess.Popen
    workdir: Path

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a GET on ``/api/v1/<path>``; raises ``AssertionError`` on an error status."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:  # noqa: S310 - loopback
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant-vector result of ``promql`` now."""
        return list(self.api("query", query=promql)["result"])

    def wait_for(
        self,
        promql: str,
        ok: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout_s: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``ok(result)``; the last result, or a failed test on timeout."""
        deadline, result = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if ok(result):
                return result
            time.sleep(0.25)
        pytest.fail(
            f"Prometheus: {promql!r} not satisfied after {timeout_s:.0f} s (last: {result})\n{self.log_tail()}"
        )

    def wait_targets_up(self, n: int, timeout_s: float = 60.0) -> None:
        """Until ``n`` targets have been scraped successfully."""
        self.wait_for("up == 1", lambda r: len(r) >= n, timeout_s)

    def metric_names(self) -> set[str]:
        """Every metric name Prometheus holds (scraped series and recording-rule results)."""
        return set(self.api("label/__name__/values"))

    def log_tail(self, n: int = 30) -> str:
        """Last ``n`` lines of Prometheus' own log."""
        log = self.workdir / "prometheus.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""


def rendered_rule_files(folder: Path, base: str = DEFAULT_RUNBOOK_BASE) -> list[Path]:
    """The repository's alert and recording rules as plain rules files in ``folder`` (runbook URLs
    absolute under ``base``, as in the PrometheusRules of ``manifests/base``)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in RULE_SOURCES:
        path = folder / src.source.name
        path.write_text(render_rules_file(REPO / src.source, base))
        out.append(path)
    return out


def prometheus_config(
    targets: Sequence[ScrapeTarget],
    rule_files: Sequence[Path],
    scrape_interval: str,
    evaluation_interval: str,
) -> dict[str, Any]:
    """``prometheus.yml`` as a dict: one job per target, honouring the targets' own labels."""
    jobs = [
        {
            "job_name": t.job,
            "honor_labels": True,
            "metrics_path": t.metrics_path,
            "static_configs": [{"targets": [t.address], "labels": dict(t.labels)}],
        }
        for t in targets
    ]
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs,
    }


def start_prometheus(
    targets: Sequence[ScrapeTarget],
    workdir: Path,
    scrape_interval: str = "500ms",
    evaluation_interval: str = "1s",
    with_rules: bool = True,
    ready_timeout_s: float = 60.0,
) -> PrometheusServer:
    """Start Prometheus on a free loopback port; ready (``/-/ready``) when it returns."""
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    rules = rendered_rule_files(workdir / "rules") if with_rules else []
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(prometheus_config(targets, rules, scrape_interval, evaluation_interval))
    )
    port = free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--web.listen-address={HOST}:{port}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = PrometheusServer(f"http://{HOST}:{port}", proc, workdir)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited with {proc.returncode}:\n{server.log_tail()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as r,
        ):
            if r.status == 200:
                return server
        time.sleep(0.1)
    stop_prometheus(server)
    pytest.fail(f"prometheus not ready after {ready_timeout_s:.0f} s:\n{server.log_tail()}")


def stop_prometheus(server: PrometheusServer, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.contextmanager
def running_prometheus(
    targets: Sequence[ScrapeTarget], workdir: Path, **kw: Any
) -> Iterator[PrometheusServer]:
    """``start_prometheus`` … ``stop_prometheus`` as a context manager."""
    server = start_prometheus(targets, workdir, **kw)
    try:
        yield server
    finally:
        stop_prometheus(server)


def address_of(url: str) -> str:
    """``host:port`` of an ``http://host:port[/...]`` URL."""
    return urllib.parse.urlsplit(url).netloc


@pytest.fixture
def kube_prometheus(
    fake_kube, tmp_path: Path
) -> Iterator[tuple[Any, str, Callable, PrometheusServer]]:
    """``fake_kube`` (import it too) plus a real Prometheus scraping its ``/metrics`` every 250 ms,
    every series labelled with the InferenceService's namespace as a cluster's scrape config does.

    Yields ``(fake, host, set_metrics, prometheus)``.
    """
    fake, host, set_metrics = fake_kube
    namespace = next(iter(fake.isvcs))[0]
    target = ScrapeTarget("fake-cluster", address_of(host), labels={"namespace": namespace})
    with running_prometheus(
        [target], tmp_path / "prometheus", scrape_interval="250ms", with_rules=False
    ) as prom:
        prom.wait_targets_up(1)
        yield fake, host, set_metrics, prom
