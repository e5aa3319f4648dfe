"""A throw-away ``redis-server`` on loopback for benchmarks and tests: never the shared one on
6379, no persistence, its own process group so that a SIGKILL takes it down at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from inference.launch import HOST, free_port


def start_redis_server(
    port: int | None = None, extra_args: tuple[str, ...] = ()
) -> tuple[str, subprocess.Popen]:
    """Start ``redis-server`` on ``HOST:port`` (a free port when None) with ``extra_args``;
    return ``(url, process)`` once it answers PING (``RuntimeError`` after 5 s)."""
    import redis  # lazy: only the callers that start a server need the client

    port = free_port() if port is None else port
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
         "--appendonly", "no", *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"redis://{HOST}:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(100):
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return url, proc
            time.sleep(0.05)
    finally:
        client.close()
    kill_redis_server(proc)
    raise RuntimeError(f"private redis-server on port {port} did not start")


def kill_redis_server(proc: subprocess.Popen) -> None:
    """SIGKILL the server's process group and reap it (idempotent)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
