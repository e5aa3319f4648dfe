"""Start the predictor and the transformer as two ``kserve.ModelServer`` processes on 127.0.0.1.

``running_servers(bundle_dir)`` is a context manager for tests, the demo and the benchmark: it
picks free ports (unless given), starts both processes each in its own process group, waits
until both answer ready, yields their URLs, and on exit sends SIGTERM to each group, then
SIGKILL to whatever is left after ``stop_timeout_s``. ``checkout-recs serve`` uses the same
``start_servers`` / ``stop_servers`` pair and waits for Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inference.predictor import PREDICTOR_NAME
from inference.transformer import TRANSFORMER_NAME

HOST = "127.0.0.1"


@dataclass
class ServerHandles:
    """URLs and processes of a running transformer + predictor pair."""

    transformer_url: str
    predictor_url: str
    transformer_grpc: str
    predictor_grpc: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    log_dir: Path | None = None

    @property
    def v1_url(self) -> str:
        """The transformer's v1 predict URL."""
        return f"{self.transformer_url}/v1/models/{TRANSFORMER_NAME}:predict"

    @property
    def v2_url(self) -> str:
        """The transformer's v2 infer URL."""
        return f"{self.transformer_url}/v2/models/{TRANSFORMER_NAME}/infer"

    def pids(self) -> dict[str, int]:
        """Process id of each server."""
        return {k: p.pid for k, p in self.processes.items()}

    def log_tail(self, name: str, n: int = 40) -> str:
        """Last ``n`` lines of a server's log."""
        if self.log_dir is None:
            return ""
        f = self.log_dir / f"{name}.log"
        return "\n".join(f.read_text(errors="replace").splitlines()[-n:]) if f.exists() else ""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def is_ready(url: str) -> bool:
    """Whether ``url`` answers 200 within 1 s (a readiness probe on loopback)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:  # noqa: S310 - loopback only
            return r.status == 200
    except OSError:
        return False


def _spawn(module: str, args: Sequence[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    fh = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def start_servers(
    bundle_dir: Path,
    transformer_port: int | None = None,
    predictor_port: int | None = None,
    transformer_args: Sequence[str] = (),
    predictor_args: Sequence[str] = (),
    start_predictor: bool = True,
    ready_timeout_s: float = 90.0,
    log_dir: Path | None = None,
) -> ServerHandles:
    """Start both servers and wait until they are ready; raises RuntimeError (with the log tail)
    when one exits or is not ready in time (both are stopped first)."""
    tp, pp = transformer_port or free_port(), predictor_port or free_port()
    tg, pg = free_port(), free_port()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="checkout-recs-serve-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    h = ServerHandles(
        f"http://{HOST}:{tp}",
        f"http://{HOST}:{pp}",
        f"{HOST}:{tg}",
        f"{HOST}:{pg}",
        log_dir=log_dir,
    )
    try:
        if start_predictor:
            h.processes["predictor"] = _spawn(
                "inference.predictor",
                [
                    "--bundle",
                    str(bundle_dir),
                    "--http_port",
                    str(pp),
                    "--grpc_port",
                    str(pg),
                    *predictor_args,
                ],
                log_dir / "predictor.log",
                env,
            )
        h.processes["transformer"] = _spawn(
            "inference.transformer",
            [
                "--bundle",
                str(bundle_dir),
                "--http_port",
                str(tp),
                "--grpc_port",
                str(tg),
                "--predictor_url",
                h.predictor_url,
                "--predictor_grpc",
                h.predictor_grpc,
                *transformer_args,
            ],
            log_dir / "transformer.log",
            env,
        )
        checks = {"transformer": f"{h.transformer_url}/v1/models/{TRANSFORMER_NAME}"}
        if start_predictor:
            checks["predictor"] = f"{h.predictor_url}/v1/models/{PREDICTOR_NAME}"
        _wait_ready(h, checks, ready_timeout_s)
        _warm_up(h)
    except BaseException:
        stop_servers(h)
        raise
    return h


def _wait_ready(h: ServerHandles, checks: dict[str, str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = dict(checks)
    while pending:
        for name, url in list(pending.items()):
            proc = h.processes[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{h.log_tail(name)}")
            if is_ready(url):
                pending.pop(name)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"not ready after {timeout_s:.0f} s: {sorted(pending)}\n"
                + "\n".join(h.log_tail(n) for n in pending)
            )
        if pending:
            time.sleep(0.2)


def _warm_up(h: ServerHandles, n: int = 3) -> None:
    """A few throw-away requests so connections and lazy imports are warm before real traffic."""

    body = json.dumps(
        {"instances": [{"user_id": 0, "purchased_item_ids": [], "region": "warmup"}]}
    ).encode()
    for _ in range(n):
        req = urllib.request.Request(
            h.v1_url, data=body, headers={"content-type": "application/json"}
        )
        with contextlib.suppress(OSError):
            urllib.request.urlopen(req, timeout=5.0).close()  # noqa: S310 - loopback only


def stop_servers(h: ServerHandles, stop_timeout_s: float = 10.0) -> None:
    """SIGTERM each server's process group, SIGKILL what is left after ``stop_timeout_s``."""
    for proc in h.processes.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout_s
    for proc in h.processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: no worker left behind
        proc.wait(timeout=5)


@contextlib.contextmanager
def running_servers(
    bundle_dir: Path,
    transformer_port: int | None = None,
    predictor_port: int | None = None,
    transformer_args: Sequence[str] = (),
    predictor_args: Sequence[str] = (),
    start_predictor: bool = True,
    ready_timeout_s: float = 90.0,
    log_dir: Path | None = None,
) -> Iterator[ServerHandles]:
    """Both servers running for the ``with`` block (see module docstring)."""
    h = start_servers(
        bundle_dir,
        transformer_port,
        predictor_port,
        transformer_args,
        predictor_args,
        start_predictor,
        ready_timeout_s,
        log_dir,
    )
    try:
        yield h
    finally:
        stop_servers(h)
