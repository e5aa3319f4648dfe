"""``checkout-recs drift-exporter``: the newest published drift figures on ``/metrics``.

The monitoring job runs, publishes its report folder (artifact kind ``drift``, with
``drift_metrics.prom``: ``monitoring.drift_metrics``) and exits; this small server is what
Prometheus scrapes instead. It serves the text file of the newest ``drift`` version of the
artifact store (re-read at most every ``refresh_s``), so the per-feature drift scores, the verdict
and the run's time have a history in Prometheus. Before any run it serves no drift series, only
``checkout_recs_drift_exporter_reports`` (0), so the scrape still succeeds.

Two faces, one server: ``checkout-recs drift-exporter`` on a workstation and
``python -m monitoring.exporter`` in the ``checkout-recs-drift-exporter`` Deployment
(``manifests/base/drift-exporter.yaml``; the transformer's image, which carries this package).
Its flags are ``build_parser``'s; the manifest contract test parses the Deployment's args with it.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from checkout_recs.log_format import add_log_format_argument, configure_logging
from checkout_recs.storage import ArtifactStore, LocalArtifactStore, open_store
from monitoring.drift_metrics import TEXTFILE_NAME

log = logging.getLogger("monitoring.exporter")
DRIFT_KIND = "drift"
ARTIFACT_ROOT_ENV = "CHECKOUT_RECS_ARTIFACT_ROOT"
#: The environment the entry point reads (the manifest contract checks the Deployment against it).
ENV_VARS = frozenset({ARTIFACT_ROOT_ENV})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def latest_drift_metrics(store: ArtifactStore) -> tuple[str | None, str]:
    """(version, text) of the newest published ``drift`` version that holds ``drift_metrics.prom``;
    ``(None, "")`` when none does."""
    for version in reversed(store.versions(DRIFT_KIND)):
        if isinstance(store, LocalArtifactStore):
            path = store.path(DRIFT_KIND, version) / TEXTFILE_NAME
            if path.exists():
                return version, path.read_text()
            continue
        with tempfile.TemporaryDirectory(prefix="drift-") as tmp:
            path = Path(store.fetch(DRIFT_KIND, version, Path(tmp) / version)) / TEXTFILE_NAME
            if path.exists():
                return version, path.read_text()
    return None, ""


class DriftMetrics:
    """The text ``/metrics`` answers, cached for ``refresh_s`` seconds (``clock``: injectable)."""

    def __init__(
        self,
        store: ArtifactStore,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.refresh_s, self.clock = store, refresh_s, clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._text = ""

    def text(self) -> str:
        """The newest figures plus ``checkout_recs_drift_exporter_reports`` (1 when one was found)."""
        with self._lock:
            if self._at is None or self.clock() - self._at >= self.refresh_s:
                version, body = latest_drift_metrics(self.store)
                found = f'checkout_recs_drift_exporter_reports{{version="{version or ""}"}} {int(version is not None)}\n'
                self._text = body + (
                    "# HELP checkout_recs_drift_exporter_reports Drift report served (1) or none\n"
                    "# TYPE checkout_recs_drift_exporter_reports gauge\n" + found
                )
                self._at = self.clock()
            return self._text


def make_server(
    metrics: DriftMetrics, host: str = "127.0.0.1", port: int = 0
) -> ThreadingHTTPServer:
    """An HTTP server answering ``GET /metrics`` (and ``/healthz``); not started."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] == "/healthz":
                return self._send(200, b"ok\n", "text/plain")
            if self.path.split("?", 1)[0] != "/metrics":
                return self._send(404, b"not found\n", "text/plain")
            try:
                body = metrics.text().encode()
            except Exception as e:  # noqa: BLE001 - store unreachable: the scrape fails, `up` says so
                return self._send(503, f"store unavailable: {e}\n".encode(), "text/plain")
            return self._send(200, body, CONTENT_TYPE)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve(store: ArtifactStore, host: str, port: int, refresh_s: float) -> None:
    """Serve ``store``'s newest drift figures on ``http://host:port/metrics`` until interrupted
    (Ctrl-C or SIGTERM, which Python turns into ``KeyboardInterrupt`` here)."""
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = make_server(DriftMetrics(store, refresh_s), host, port)
    log.info(
        "drift metrics on http://%s:%d/metrics",
        host,
        server.server_address[1],
        extra={"refresh_s": refresh_s},
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``python -m monitoring.exporter`` (the Deployment's entry point)."""
    p = argparse.ArgumentParser(
        prog="python -m monitoring.exporter",
        description="Serve the newest published drift figures on /metrics for Prometheus.",
    )
    p.add_argument(
        "--artifact_root",
        default=os.environ.get(ARTIFACT_ROOT_ENV),
        required=ARTIFACT_ROOT_ENV not in os.environ,
        help=f"artifact store root (folder or s3://) the monitoring job publishes kind "
        f"{DRIFT_KIND!r} to (default ${ARTIFACT_ROOT_ENV})",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a pod)")
    p.add_argument("--port", type=int, default=9109, help="port of /metrics and /healthz")
    p.add_argument(
        "--refresh_s", type=float, default=60.0, help="seconds between reads of the store"
    )
    add_log_format_argument(p)
    return p


def missing_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    """What a cluster deployment of these flags lacks: a pod's store is S3 (a folder in a pod is
    an empty emptyDir, so the exporter would serve no report forever)."""
    root = str(args.artifact_root or "")
    if not root.startswith("s3://"):
        return [f"the drift exporter's artifact root is not an s3:// store (got {root!r})"]
    return []


def main(argv: list[str] | None = None) -> None:
    """Start the exporter (see ``build_parser``); S3 endpoints come from boto3's environment."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format)
    serve(open_store(args.artifact_root), args.host, args.port, args.refresh_s)


if __name__ == "__main__":
    main()
