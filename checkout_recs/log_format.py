"""Structured logs for serving and pipelines: one JSON object per line, every line carrying the
request id and the bundle version.

Fields, in order: ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
``request_id``, ``bundle_version``, then whatever the call passed as ``extra={...}``, and ``exc``
(the traceback) when there is one. ``request_id`` comes from a context variable the transformer
sets in ``preprocess`` from each request's resolved id (``set_request_id``): every line logged
while that request is served carries it, and null outside a request. ``bundle_version`` is set
once per process (``set_bundle_version``: the serving bundle's index version, or
``$CHECKOUT_RECS_BUNDLE_VERSION`` in a pipeline step), null where none applies.

``--log_format json|text`` on the serving entry points (``add_log_format_argument``; the
manifests pass ``json``), ``$CHECKOUT_RECS_LOG_FORMAT`` in pipeline steps
(``configure_from_env``, called by the components' executor, ``components._base``). ``text``
keeps one readable line with the same two ids.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import IO, Any

LOG_FORMATS = ("json", "text")
LOG_FORMAT_ENV = "CHECKOUT_RECS_LOG_FORMAT"
BUNDLE_VERSION_ENV = "CHECKOUT_RECS_BUNDLE_VERSION"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s bundle=%(bundle_version)s] %(message)s"
#: Loggers that libraries configure with handlers of their own: given ours instead (kserve then
#: skips its own configuration, which it does only for a ``kserve`` logger without handlers).
LIBRARY_LOGGERS = ("kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access")

REQUEST_ID: ContextVar[str | None] = ContextVar("checkout_recs_request_id", default=None)
_bundle_version: list[str | None] = [None]

_RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "bundle_version",
    "color_message",
    "taskName",
}


def set_request_id(request_id: str | None) -> Token:
    """Make ``request_id`` the id of every line logged from this context on; the token resets it."""
    return REQUEST_ID.set(request_id)


def set_bundle_version(version: str | None) -> None:
    """The bundle version every line of this process carries."""
    _bundle_version[0] = version


def bundle_version() -> str | None:
    """The process' bundle version (``set_bundle_version``, else ``$CHECKOUT_RECS_BUNDLE_VERSION``)."""
    return _bundle_version[0] or os.environ.get(BUNDLE_VERSION_ENV) or None


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``bundle_version`` to every record (unless the call passed them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        if not hasattr(record, "bundle_version"):
            record.bundle_version = bundle_version()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
            "bundle_version": getattr(record, "bundle_version", bundle_version()),
        }
        out.update(
            {
                k: v
                for k, v in vars(record).items()
                if k not in _RECORD_KEYS and not k.startswith("_")
            }
        )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            out["exc"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def make_handler(fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) with the context filter and the ``fmt`` formatter."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(
    fmt: str = "json", level: str | int = "INFO", stream: IO[str] | None = None
) -> None:
    """Route the root logger and ``LIBRARY_LOGGERS`` (kserve, uvicorn) through one handler of
    format ``fmt``; replaces earlier handlers, so calling it again switches the format."""
    handler = make_handler(fmt, stream)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        lib.handlers[:] = [handler]
        lib.propagate = False
    logging.captureWarnings(True)


def default_log_format(default: str = "text") -> str:
    """``$CHECKOUT_RECS_LOG_FORMAT`` when it names a format, else ``default``."""
    env = os.environ.get(LOG_FORMAT_ENV, "").strip().lower()
    return env if env in LOG_FORMATS else default


def configure_from_env(default: str = "json") -> None:
    """``configure_logging`` in the format ``$CHECKOUT_RECS_LOG_FORMAT`` names (else ``default``)."""
    configure_logging(default_log_format(default))


class Throttle:
    """One log line per key every ``every_s`` seconds, for lines that a failing dependency would
    otherwise write on every request; ``allow`` says how many were held back since the last one."""

    def __init__(self, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> int | None:
        """The number of lines of ``key`` held back since the last one let through, or None
        when this one is held back too."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.every_s:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


def add_log_format_argument(parser: argparse.ArgumentParser) -> None:
    """``--log_format json|text`` (default ``$CHECKOUT_RECS_LOG_FORMAT``, else text)."""
    parser.add_argument(
        "--log_format",
        choices=LOG_FORMATS,
        default=default_log_format(),
        help="log lines as JSON objects (ts, level, logger, message, request_id, "
        "bundle_version, extras) or as text; the manifests set json",
    )
