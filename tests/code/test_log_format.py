"""Structured logs: the JSON fields, the request id from the context, the bundle version, text mode,
and kserve's and uvicorn's loggers routed through the same handler."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from checkout_recs import log_format
from checkout_recs.log_format import (
    REQUEST_ID,
    configure_logging,
    default_log_format,
    set_bundle_version,
    set_request_id,
)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logging configured as JSON into a buffer; the previous root handlers restored after."""
    root, saved = logging.getLogger(), logging.getLogger().handlers[:]
    saved_libs = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
        for n in log_format.LIBRARY_LOGGERS
    }
    buf = io.StringIO()
    configure_logging("json", stream=buf)
    yield buf
    root.handlers[:] = saved
    for n, (handlers, propagate) in saved_libs.items():
        logging.getLogger(n).handlers[:] = handlers
        logging.getLogger(n).propagate = propagate
    set_bundle_version(None)
    REQUEST_ID.set(None)


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_every_line_is_json_with_the_fixed_fields_then_extras(captured):
    set_bundle_version("idx-42")
    token = set_request_id("req-1")
    logging.getLogger("checkout_recs.test").warning(
        "slow %s", "feast", extra={"stage": "features", "ms": 12.5}
    )
    REQUEST_ID.reset(token)
    logging.getLogger("checkout_recs.test").info("idle")
    first, second = _lines(captured)
    assert list(first)[:6] == ["ts", "level", "logger", "message", "request_id", "bundle_version"]
    assert (
        first["ts"].endswith("Z")
        and first["level"] == "WARNING"
        and first["message"] == "slow feast"
    )
    assert (first["request_id"], first["bundle_version"], first["stage"], first["ms"]) == (
        "req-1",
        "idx-42",
        "features",
        12.5,
    )
    assert second["request_id"] is None and second["bundle_version"] == "idx-42"


def test_concurrent_requests_keep_their_own_ids(captured):
    log = logging.getLogger("checkout_recs.test")

    async def serve(rid: str) -> None:
        set_request_id(rid)  # each request runs in its own task: its own context
        await asyncio.sleep(0.01)
        log.info("answered")

    async def both() -> None:
        await asyncio.gather(serve("a"), serve("b"))

    asyncio.run(both())
    assert sorted(line["request_id"] for line in _lines(captured)) == ["a", "b"]


def test_exceptions_and_library_loggers(captured):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("kserve").exception("failed")
    logging.getLogger("uvicorn.error").info("started")
    lines = _lines(captured)
    assert lines[0]["logger"] == "kserve" and "ValueError: boom" in lines[0]["exc"]
    assert lines[1]["logger"] == "uvicorn.error"
    assert logging.getLogger("kserve").handlers  # kserve's ModelServer then leaves logging alone


def test_text_format_keeps_the_ids(captured, monkeypatch):
    buf = io.StringIO()
    configure_logging("text", stream=buf)
    set_bundle_version("idx-1")
    set_request_id("r9")
    logging.getLogger("x").info("hello")
    assert buf.getvalue().rstrip().endswith("INFO x [request_id=r9 bundle=idx-1] hello")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml")


def test_the_format_default_follows_the_environment(monkeypatch):
    monkeypatch.delenv("CHECKOUT_RECS_LOG_FORMAT", raising=False)
    assert default_log_format() == "text" and default_log_format("json") == "json"
    monkeypatch.setenv("CHECKOUT_RECS_LOG_FORMAT", "JSON")
    assert default_log_format() == "json"
    monkeypatch.setenv("CHECKOUT_RECS_BUNDLE_VERSION", "from-env")
    assert log_format.bundle_version() == "from-env"


def test_serving_entry_points_take_log_format():
    from inference.predictor import build_parser as predictor_parser
    from inference.transformer import build_parser as transformer_parser

    for build in (predictor_parser, transformer_parser):
        assert build().parse_args(["--bundle", "b", "--log_format", "json"]).log_format == "json"


def test_throttle_lets_one_line_per_key_through_and_counts_the_rest():
    from checkout_recs.log_format import Throttle

    now = [0.0]
    t = Throttle(every_s=1.0, clock=lambda: now[0])
    assert t.allow("predictor_error") == 0
    assert t.allow("predictor_error") is None and t.allow("predictor_error") is None
    assert t.allow("other") == 0  # keys are apart
    now[0] = 1.5
    assert t.allow("predictor_error") == 2
