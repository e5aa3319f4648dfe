"""The served models' routes without the web framework: v1 predict and v2 infer straight to kserve's data plane.

kserve's REST server runs every request through uvicorn -> five ASGI middlewares (kserve's
``TimingMiddleware`` matches the path against every route to name a metric) -> FastAPI routing
and dependency injection -> ``V1Endpoints.predict`` / ``V2Endpoints.infer`` -> ``DataPlane``. For
the checkout call that framework work costs about as much CPU as a stage of the request path, and
its error paths answered some malformed bodies with 500 (a lone surrogate in an invalid v2 body
broke the validation error's rendering; binary-tensor lengths failed in numpy). ``FastPredictRoute``
is an ASGI middleware placed outermost that answers, for the server's models:

* ``POST /v1/models/<name>:predict`` — any ``application/json`` media type (parameters allowed,
  any case) or none; another media type is 415. The body is parsed with orjson, then
  ``DataPlane.infer`` / ``DataPlane.encode`` as ``V1Endpoints.predict`` does (no CloudEvents);
* ``POST /v2/models/<name>/infer`` — JSON, or the binary tensor extension
  (``inference-header-content-length``), decoded strictly by ``codec.decode_v2_rest`` (every
  shape, datatype, value and binary length checked), then the data plane as ``V2Endpoints.infer``.

Each call is stamped with its ``deadline.RequestClock``: arrival time, the client's
``X-Request-Deadline-Ms`` (malformed: 400) and a flag set when the client disconnects. Errors
are answered here with a printable JSON reason: ``InvalidInput`` 400, ``ModelNotFound`` 404,
``Shed`` 503 with ``Retry-After``, ``ModelNotReady`` 503, ``NotImplementedError`` 501, anything
else by the app's handler for its type (500 if none). Every other request (metadata, health,
metrics) goes on to kserve's app unchanged. The body limit applies here too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import orjson
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.protocol.rest.v2_datamodels import InferenceResponse
from starlette.requests import Request

from checkout_recs.log_format import Throttle
from inference.asgi import header, read_body_or_refuse, send_response
from inference.codec import decode_v2_rest, printable
from inference.deadline import (
    DEADLINE_HEADER,
    RETRY_AFTER_S,
    RequestClock,
    Shed,
    parse_budget_ms,
    reset_clock,
    set_clock,
)

log = logging.getLogger(__name__)
#: One refusal line per status a second (a flood of bad requests must not flood the log).
_REFUSALS = Throttle(every_s=1.0)
V1_PREDICT = re.compile(r"/v1/models/([^/:]+):predict")
V2_INFER = re.compile(r"/v2/models/([^/]+)/infer")
HEADER_LENGTH = "inference-header-content-length"
_JSON = (b"content-type", b"application/json")
#: Errors answered here: (type, HTTP status), the first match in this order.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (Shed, 503),
    (InvalidInput, 400),
    (ModelNotFound, 404),
    (ModelNotReady, 503),
    (NotImplementedError, 501),
)


class UnsupportedMediaType(InvalidInput):
    """A v1 body that is not ``application/json`` (answered 415)."""


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` value is ``application/json`` (any case, any parameters) or absent."""
    if content_type is None or not content_type.strip():
        return True
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


class FastPredictRoute:
    """ASGI middleware: v1 predict and v2 infer of ``names`` answered by ``dataplane`` directly (see
    module docstring).

    Parameters
    ----------
    app : the kserve FastAPI app (everything else, and the exception handlers).
    dataplane : the server's ``kserve.protocol.dataplane.DataPlane``.
    names : model names served on the fast route.
    max_bytes : largest request body, bytes (413 with a reason above it).
    handlers : exception type -> handler ``(request, exc) -> Response``: the FastAPI app's
        ``exception_handlers`` (``app`` here is the next middleware, not the FastAPI app).
    """

    def __init__(
        self, app: Any, dataplane: Any, names: set[str], max_bytes: int, handlers: dict[Any, Any]
    ) -> None:
        self.app, self.dataplane, self.names, self.max_bytes = app, dataplane, set(names), max_bytes
        self.handlers = handlers

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = self._route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        received = time.perf_counter()
        body = await read_body_or_refuse(scope, receive, send, self.max_bytes)
        if body is None:
            return
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
        try:
            clock = RequestClock(received, client_budget_s=_client_budget(scope), gone=gone.is_set)
            token = set_clock(clock)
            try:
                content, extra = await self._answer(*route, body, scope)
            finally:
                reset_clock(token)
        except Exception as exc:  # noqa: BLE001 - answered by status / the app's handler for its type
            await self._error(scope, exc, send)
            return
        finally:
            watcher.cancel()
        await send_response(send, 200, content, extra)

    def _route(self, scope: dict) -> tuple[str, str] | None:
        """("v1" | "v2", model name) for a POST this route answers, else None."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        for kind, pattern in (("v1", V1_PREDICT), ("v2", V2_INFER)):
            m = pattern.fullmatch(scope["path"])
            if m is not None and m.group(1) in self.names:
                return kind, m.group(1)
        return None

    async def _answer(self, kind: str, name: str, body: bytes, scope: dict) -> tuple[bytes, list]:
        """(response bytes, extra response headers) of a ready model's v1 predict or v2 infer."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        dp = self.dataplane
        if not await dp.model_ready(name, True):
            raise ModelNotReady(name)
        if kind == "v1":
            request: Any = _v1_body(body, headers.get("content-type"))
        else:
            request = decode_v2_rest(body, headers.get(HEADER_LENGTH), name)
        response, response_headers = await dp.infer(
            model_name=name, request=request, headers=headers
        )
        response, res_headers = dp.encode(
            model_name=name, response=response, headers={}, req_attributes={}
        )
        response_headers.update(res_headers)
        response_headers.pop("content-length", None)
        if kind == "v2":
            response_headers.pop("content-type", None)
        extra = [
            (k.encode("latin-1"), str(v).encode("latin-1")) for k, v in response_headers.items()
        ]
        if isinstance(
            response, str | bytes
        ):  # as kserve's ``Response(content=...)``: no media type added
            return (response.encode() if isinstance(response, str) else response), extra
        if not any(k == b"content-type" for k, _ in extra):
            extra.append(_JSON)
        if (
            kind == "v2"
        ):  # as ``V2Endpoints.infer``: through kserve's response model (same fields, nulls kept)
            response = InferenceResponse.model_validate(response).model_dump(mode="json")
        return orjson.dumps(
            response, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
        ), extra

    async def _error(self, scope: dict, exc: Exception, send: Any) -> None:
        """Answer ``exc``: by ``_STATUS`` with a printable reason, else the app's handler for the
        nearest class in its MRO (500 with the reason if none, or if the handler fails)."""
        status = (
            415
            if isinstance(exc, UnsupportedMediaType)
            else next((code for cls, code in _STATUS if isinstance(exc, cls)), None)
        )
        if status is not None:
            _log_refusal(scope, status, exc)
            extra = [(b"retry-after", str(RETRY_AFTER_S).encode())] if isinstance(exc, Shed) else []
            await send_response(
                send, status, orjson.dumps({"error": printable(str(exc))}), [_JSON, *extra]
            )
            return
        handler = next((self.handlers[c] for c in type(exc).__mro__ if c in self.handlers), None)
        try:
            if handler is not None:
                response = await handler(Request(scope), exc)
                await response(scope, _no_body, send)
                return
        except Exception:  # noqa: BLE001, S110 - a handler that fails to word the error: ours below
            pass
        await send_response(
            send, 500, orjson.dumps({"error": printable(f"{type(exc).__name__} : {exc}")}), [_JSON]
        )


def _log_refusal(scope: dict, status: int, exc: Exception) -> None:
    """One line for a refused call (INFO for 4xx, WARNING for 5xx), at most one per status a
    second, with the count held back since; it carries the request id of its scope."""
    held = _REFUSALS.allow(str(status))
    if held is None:
        return
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "refused %s %s with %d: %s",
        scope.get("method"),
        scope.get("path"),
        status,
        printable(str(exc))[:200],
        extra={"status": status, "held_back": held},
    )


def _v1_body(body: bytes, content_type: str | None) -> Any:
    """A v1 body parsed as JSON; 415 unless its media type is JSON, 400 unless it parses."""
    if not is_json_media_type(content_type):
        raise UnsupportedMediaType(
            printable(f"v1 predict takes application/json, got {content_type!r}")
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(printable(f"Unrecognized request format: {exc}")) from None


def _client_budget(scope: dict) -> float | None:
    """The client's budget from ``X-Request-Deadline-Ms``, seconds; None without the header;
    ``InvalidInput`` (400) when malformed."""
    value = header(scope, DEADLINE_HEADER.encode())
    if value is None:
        return None
    try:
        return parse_budget_ms(value.decode("latin-1"))
    except ValueError as exc:
        raise InvalidInput(printable(str(exc))) from None


async def _watch_disconnect(receive: Any, gone: asyncio.Event) -> None:
    """Set ``gone`` when the server reports the client's disconnect (the body is already read: the
    next message uvicorn gives is the disconnect, or nothing until the answer is sent)."""
    message = await receive()
    if message.get("type") == "http.disconnect":
        gone.set()


async def _no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}
