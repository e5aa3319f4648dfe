"""The hot route without the web framework: ``POST /v1/models/<name>:predict`` straight to kserve's data plane.

kserve's REST server runs every request through uvicorn -> five ASGI middlewares (kserve's
``TimingMiddleware`` matches the path against every route to name a metric) -> FastAPI routing
and dependency injection -> ``V1Endpoints.predict`` -> ``DataPlane``. For the checkout call that
framework work costs about as much CPU as a stage of the request path. ``FastPredictRoute`` is an
ASGI middleware placed outermost: for a v1 predict of one of the server's models it does what
``V1Endpoints.predict`` does (model ready -> ``DataPlane.decode`` -> ``DataPlane.infer`` ->
``DataPlane.encode`` -> orjson, as ``ORJSONResponse`` renders it) and answers; an error is
answered by the app's own exception handler for its type (kserve's: ``InvalidInput`` -> 400 with
``{"error": reason}``, ``ModelNotReady`` -> 503, anything else -> 500). Every other request (v2,
metadata, health, metrics) goes on to kserve's app unchanged. The body limit applies here too.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from inference.asgi import read_body_or_refuse, send_response

V1_PREDICT = re.compile(r"/v1/models/([^/:]+):predict")
_JSON = (b"content-type", b"application/json")


class FastPredictRoute:
    """ASGI middleware: v1 predict of ``names`` answered by ``dataplane`` directly (see module docstring).

    Parameters
    ----------
    app : the kserve FastAPI app (everything else, and the exception handlers).
    dataplane : the server's ``kserve.protocol.dataplane.DataPlane``.
    names : model names served on the fast route.
    max_bytes : largest request body, bytes (413 with a reason above it).
    handlers : exception type -> handler ``(request, exc) -> Response``: the FastAPI app's
        ``exception_handlers`` (``app`` here is the next middleware, not the FastAPI app).
    """

    def __init__(self, app: Any, dataplane: Any, names: set[str], max_bytes: int, handlers: dict[Any, Any]) -> None:
        self.app, self.dataplane, self.names, self.max_bytes = app, dataplane, set(names), max_bytes
        self.handlers = handlers

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        m = V1_PREDICT.fullmatch(scope["path"])
        if m is None or m.group(1) not in self.names:
            await self.app(scope, receive, send)
            return
        body = await read_body_or_refuse(scope, receive, send, self.max_bytes)
        if body is None:
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        try:
            content, extra = await self._predict(m.group(1), body, headers)
        except Exception as exc:  # noqa: BLE001 - answered by the app's handler for its type
            await self._error(scope, exc, send)
            return
        await send_response(send, 200, content, extra)

    async def _predict(self, name: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, list]:
        """``V1Endpoints.predict`` minus FastAPI: (response bytes, extra response headers)."""
        from kserve.errors import ModelNotReady

        dp = self.dataplane
        if not await dp.model_ready(name, True):
            raise ModelNotReady(name)
        request, attributes = dp.decode(body=body, headers=headers)
        response, response_headers = await dp.infer(model_name=name, request=request, headers=headers)
        response, res_headers = dp.encode(model_name=name, response=response, headers=headers,
                                          req_attributes=attributes)
        response_headers.update(res_headers)
        response_headers.pop("content-length", None)
        extra = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in response_headers.items()]
        if isinstance(response, str | bytes):  # as kserve's ``Response(content=...)``: no media type added
            return (response.encode() if isinstance(response, str) else response), extra
        if not any(k == b"content-type" for k, _ in extra):
            extra.append(_JSON)
        return orjson.dumps(response, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY), extra

    async def _error(self, scope: dict, exc: Exception, send: Any) -> None:
        """Answer ``exc`` with the app's handler for the nearest class in its MRO (500 if none)."""
        from starlette.requests import Request

        handler = next((self.handlers[c] for c in type(exc).__mro__ if c in self.handlers), None)
        if handler is None:
            await send_response(send, 500, orjson.dumps({"error": f"{type(exc).__name__} : {exc}"}), [_JSON])
            return
        response = await handler(Request(scope), exc)
        await response(scope, _no_body, send)


async def _no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}
