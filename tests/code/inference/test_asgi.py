"""``RequestIdScope``: the ``x-request-id`` header names every log line of its request, and only
while it is served; a malformed header is ignored."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from checkout_recs.log_format import REQUEST_ID
from inference.asgi import RequestIdScope, valid_request_id


def _serve(headers: list[tuple[bytes, bytes]]) -> list[str | None]:
    seen: list[str | None] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(REQUEST_ID.get())
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: dict) -> None:
        seen.append(REQUEST_ID.get())  # the server's access line is written from here

    async def run() -> None:
        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        await RequestIdScope(app)(scope, None, send)
        seen.append(REQUEST_ID.get())  # after the request

    asyncio.run(run())
    return seen


def test_the_header_is_the_request_id_while_served_and_only_then():
    assert _serve([(b"x-request-id", b"req-42")]) == ["req-42", "req-42", None]


@pytest.mark.parametrize("bad", [b"", b"has space", b"x" * 65, "é".encode()])
def test_a_malformed_header_is_ignored(bad: bytes):
    assert _serve([(b"x-request-id", bad)]) == [None, None, None]
    assert valid_request_id(bad) is None


def test_no_header_no_id():
    assert _serve([]) == [None, None, None]
    assert valid_request_id("ok-1") == "ok-1"
