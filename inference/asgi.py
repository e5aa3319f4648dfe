"""Plain ASGI helpers shared by the servers' routes: header lookup, whole responses, reading a
body under a limit (413 with a reason over it), the body-limit middleware, ``NeverRaise`` and
``RequestIdScope`` (the ``x-request-id`` header as the id of every log line of its request).

``inference.server`` installs ``BodyLimit`` on kserve's app and ``NeverRaise`` outermost; the fast
routes (``inference.fast_route``, ``inference.fast_infer``) read and answer with the same helpers.
No kserve here: these modules import this one, never each other.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from checkout_recs.contract import REQUEST_ID_PATTERN
from checkout_recs.log_format import REQUEST_ID

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: The header that carries a request's id between hops (Envoy's and Istio's tracing header).
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def header(scope: dict, name: bytes) -> bytes | None:
    """The value of the request's first header ``name`` (lower-case bytes, as ASGI gives them), or None."""
    for k, v in scope.get("headers") or []:
        if k == name:
            return v
    return None


def declared_over(scope: dict, max_bytes: int) -> bool:
    """Whether the request's ``content-length`` header is malformed or over ``max_bytes``."""
    declared = header(scope, b"content-length")
    return declared is not None and (not declared.isdigit() or int(declared) > max_bytes)


async def send_response(
    send: Any, status: int, content: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Send a whole ASGI response: ``headers`` plus its ``content-length``, then ``content``."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(content)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def read_body_or_refuse(scope: dict, receive: Any, send: Any, max_bytes: int) -> bytes | None:
    """The whole request body; None, after answering 413 with a reason, when it (declared or
    received) exceeds ``max_bytes``."""
    body = await _read_body(scope, receive, max_bytes)
    if body is None:
        await refuse_too_large(send, max_bytes)
    return body


async def _read_body(scope: dict, receive: Any, max_bytes: int) -> bytes | None:
    if declared_over(scope, max_bytes):
        return None
    chunks, seen, more = [], 0, True
    while more:
        msg = await receive()
        chunk = msg.get("body", b"")
        seen += len(chunk)
        if seen > max_bytes:
            return None
        chunks.append(chunk)
        more = msg.get("more_body", False)
    return b"".join(chunks)


async def refuse_too_large(send: Any, max_bytes: int) -> None:
    """413 with a JSON reason."""
    await send_response(
        send,
        413,
        orjson.dumps({"error": f"request body exceeds {max_bytes} bytes"}),
        [(b"content-type", b"application/json")],
    )


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413 and a JSON reason."""

    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_over(scope, self.max_bytes):
            await refuse_too_large(send, self.max_bytes)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await refuse_too_large(send, self.max_bytes)


class _TooLarge(Exception):
    pass


class NeverRaise:
    """Outermost ASGI middleware: no exception reaches uvicorn, so no error poisons a connection.

    uvicorn closes the connection when the app raises after starting its response, which
    Starlette's ``ServerErrorMiddleware`` always does (it sends its 500, then re-raises): the next
    request on that keep-alive connection was reset. Here an exception is logged and, if nothing
    was sent yet, answered with a 500 and a JSON reason; the connection stays usable either way.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - the point: nothing escapes to the server
            log.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await send_response(
                    send,
                    500,
                    orjson.dumps({"error": f"internal error ({type(exc).__name__})"}),
                    [(b"content-type", b"application/json")],
                )


def valid_request_id(value: bytes | str | None) -> str | None:
    """``value`` as a request id when it matches ``contract.REQUEST_ID_PATTERN`` (1..64 visible
    ASCII characters), else None: a malformed header is ignored, never echoed into the logs."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if value is not None and _REQUEST_ID.match(value) else None


class RequestIdScope:
    """Outermost ASGI middleware: the request's ``x-request-id`` header (when valid) is the
    ``request_id`` of every log line written while it is served, access and error lines
    included. The transformer then narrows it to the body's resolved id in ``preprocess``; the
    predictor gets the transformer's id through this header on its hop."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        rid = valid_request_id(header(scope, REQUEST_ID_HEADER.encode()))
        if scope["type"] != "http" or rid is None:
            await self.app(scope, receive, send)
            return
        token = REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_ID.reset(token)
