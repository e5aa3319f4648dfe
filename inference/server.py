"""A ``kserve.ModelServer`` that binds one host (127.0.0.1 by default) and limits body size.

kserve 0.21 binds REST to ``0.0.0.0`` and gRPC to ``[::]`` with no flag. ``LoopbackModelServer``
extends (does not fork) the server: the same REST and gRPC servers and data plane, with the
uvicorn config's host set and the gRPC port added on the chosen host only. It also installs a
request-body limit (HTTP 413 with a reason) and stops both servers on SIGTERM / SIGINT.

Two things kserve leaves open are closed here:

* **the model repository extension** — kserve registers ``POST /v2/repository/models/<name>/load``
  and ``.../unload`` (and the gRPC ``RepositoryModelLoad|Unload``) with no authentication, and an
  unload takes the model out while the server still says ready. kserve has no option to turn them
  off, so an ASGI guard in front of the app answers 404 for ``/v2/repository/...`` before any
  route is matched, and our gRPC servicer answers them ``UNIMPLEMENTED``;
* **health that means something** — kserve's ``/v2/health/live`` answers "alive" whenever the
  process runs and ``/v2/health/ready`` is true with no model at all. Here both require every model
  this server started with to be registered and ``healthy()``: readiness takes a pod out of the
  Service at once, the liveness probe (a longer threshold) restarts one whose model stays unready.

Models may define ``async run_background()``: it runs as a task on the serving loop (the
transformer's policy ConfigMap watcher) and is cancelled at shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from concurrent import futures
from typing import Any

import grpc
from grpc import aio
from kserve import ModelServer
from kserve.logging import logger
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.rest.server import RESTServer

from inference.asgi import DEFAULT_MAX_BODY_BYTES, BodyLimit, NeverRaise, RequestIdScope
from inference.fast_infer import FastInferRoute
from inference.fast_route import FastPredictRoute
from inference.grpc_guard import GuardedServicer, GuardInterceptor

DEFAULT_HOST = "127.0.0.1"
#: Path prefix of kserve's model repository extension routes (closed here).
REPOSITORY_ROUTES = "/v2/repository/"
_CLOSED = b'{"error":"the model repository extension is closed"}'


class _ServedDataPlane(DataPlane):
    """kserve's data plane, with server readiness and liveness tied to the served models."""

    served: tuple[str, ...] = ()

    async def models_ready(self) -> bool:
        """Every model the server started with is still registered and ``healthy()``."""
        if not self.served:
            return False
        return all([await self._model_registry.is_model_ready(name) for name in self.served])

    async def ready(self) -> bool:  # type: ignore[override]
        """Ready: the models are (and whatever kserve checks besides)."""
        return await self.models_ready() and await super().ready()

    async def live(self) -> dict[str, str]:  # type: ignore[override]
        """``{"status": "alive"}`` while the models are ready; anything else makes kserve answer 503."""
        return {"status": "alive" if await self.models_ready() else "models not ready"}


class ClosedRepository:
    """ASGI guard: 404 for kserve's model repository extension (``/v2/repository/...``: index, load,
    unload), whatever the method, before the request reaches any route; the rest passes through."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(REPOSITORY_ROUTES):
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_CLOSED)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _CLOSED})
            return
        await self.app(scope, receive, send)


class _ClosedRepositoryServicer(GuardedServicer):
    """kserve's gRPC servicer whose repository load / unload are not implemented."""

    async def RepositoryModelLoad(
        self,
        request: pb.RepositoryModelLoadRequest,  # noqa: N802 - gRPC name
        context: Any,
    ) -> pb.RepositoryModelLoadResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "the model repository extension is closed"
        )
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self,
        request: pb.RepositoryModelUnloadRequest,  # noqa: N802 - gRPC name
        context: Any,
    ) -> pb.RepositoryModelUnloadResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "the model repository extension is closed"
        )
        return pb.RepositoryModelUnloadResponse()


class _HostGRPCServer(GRPCServer):
    """kserve's gRPC server, listening on one host instead of ``[::]``."""

    def __init__(self, host: str, *args: Any, quiet: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host = host
        self._quiet = quiet

    async def start(self, max_workers: int) -> None:
        servicer = _ClosedRepositoryServicer(self._data_plane, self._model_repository_extension)
        limit = int(self._kwargs.get("grpc_max_receive_message_length") or DEFAULT_MAX_BODY_BYTES)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            # kserve's LoggingInterceptor writes one INFO line per call: dropped when quiet
            # GuardInterceptor: bad messages and bad input are INVALID_ARGUMENT, shed calls UNAVAILABLE
            interceptors=(GuardInterceptor(),)
            if self._quiet
            else (LoggingInterceptor(), GuardInterceptor()),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit * 4),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"{self._host}:{self._port}")
        logger.info("gRPC server on %s:%s", self._host, self._port)
        await self._server.start()
        await self._server.wait_for_termination()


def _freeze_startup_heap() -> None:
    """Move every object alive after start-up (bundle, Feast registry, kserve, torch: ~400k
    objects) out of the cyclic garbage collector's reach (``gc.freeze``).

    Without it a full collection walks them all (~1 s on the 1M-listing bundle under load) and
    even young collections paused requests for ~3.5 ms on average (16 ms max); with it, 0.1 ms.
    Objects created while serving are still collected as usual.
    """
    gc.collect()
    gc.freeze()


def _use_uvloop(event_loop: str) -> bool:
    """Serve on uvloop unless ``event_loop`` (kserve's ``--event_loop``) says ``asyncio``.

    kserve's single-process server calls ``asyncio.run`` on the default loop whatever the flag
    says; uvloop's C loop costs less CPU per request (socket callbacks, timers, the Redis and
    predictor clients). Returns whether uvloop is installed as the loop policy.
    """
    if event_loop == "asyncio":
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class LoopbackModelServer(ModelServer):
    """``kserve.ModelServer`` bound to ``host`` with a request-body limit.

    Parameters
    ----------
    host : address for both REST and gRPC (default 127.0.0.1).
    max_body_bytes : largest accepted request body (REST and gRPC message), bytes.
    quiet : drop the per-request access and timing log lines (errors are still logged).
    fast_route : answer ``POST /v1/models/<name>:predict`` of the served models without FastAPI
        (``inference.fast_route``), and the v2 binary-tensor infer of models that have
        ``binary_outputs`` (``inference.fast_infer``); everything else goes through kserve's app.
    **kwargs : passed to ``kserve.ModelServer`` (``http_port``, ``grpc_port``, ``enable_grpc``...).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        quiet: bool = True,
        fast_route: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(workers=1, **kwargs)
        self.dataplane = _ServedDataPlane(model_registry=self.registered_models)
        self.host = host
        self.quiet = quiet
        self.fast_route = fast_route
        self.max_body_bytes = max_body_bytes
        self._models: list[Any] = []

    def start(self, models: list[Any]) -> None:
        """Register ``models`` and serve until SIGTERM / SIGINT; then stop the models."""
        self._models = models
        self._register_and_check_atleast_one_model_is_ready(models)
        if isinstance(self.dataplane, _ServedDataPlane):
            self.dataplane.served = tuple(m.name for m in models)
        from kserve.model_server import (
            app,
        )  # lazy: kserve is a serving-image dependency, not needed offline

        app.add_middleware(BodyLimit, max_bytes=self.max_body_bytes)
        self._rest_server = RESTServer(
            "kserve.model_server:app",
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            access_log_format=self.access_log_format,
            workers=1,
            grace_period=2,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        # uvicorn serves the fast routes, which hand the rest to kserve's app; no error escapes to uvicorn
        self._rest_server.config.app = RequestIdScope(
            ClosedRepository(NeverRaise(self._fast_routes(app, models) if self.fast_route else app))
        )
        self._rest_server.config.host = self.host  # the one change: no 0.0.0.0
        if self.enable_grpc:
            self._grpc_server = _HostGRPCServer(
                self.host,
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs={"grpc_max_receive_message_length": self.max_body_bytes},
                grace_period=1,
                quiet=self.quiet,
            )
        _use_uvloop(self.event_loop)
        if (
            self.quiet
        ):  # one log line per request costs CPU on the request path; metrics say the rest
            for name in ("uvicorn.access", "kserve.trace"):
                logging.getLogger(name).setLevel(logging.WARNING)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # uvicorn captures, then re-raises after shutdown
        _freeze_startup_heap()
        try:
            asyncio.run(self._serve_both_on_loop())
        finally:
            for m in models:
                m.stop()

    def _fast_routes(self, app: Any, models: list[Any]) -> Any:
        """``app`` behind the fast routes: the v1 predict and v2 infer of ``models`` (``fast_route``:
        strict decoding, deadlines) and, outermost, the v2 binary-tensor infer of those with
        ``binary_outputs`` (``fast_infer``). They wrap the
        FastAPI app itself, outside the middlewares kserve adds when its REST server starts
        (timing, telemetry, body limit: ~0.3 ms of CPU a call on the predictor's hop)."""

        outer: Any = FastPredictRoute(
            app,
            self.dataplane,
            {m.name for m in models},
            self.max_body_bytes,
            handlers=app.exception_handlers,
        )
        binary = {m.name: m for m in models if hasattr(m, "binary_outputs")}
        if binary:  # outermost: the predictor's hop is answered before anything else looks at it
            outer = FastInferRoute(outer, binary, self.max_body_bytes)
        return outer

    async def _serve_both_on_loop(self) -> None:
        """``setup_event_loop`` on the loop that serves (kserve calls it on another one), then serve."""
        self.setup_event_loop()
        await self._serve_both()

    async def _serve_both(self) -> None:
        grpc_task = None
        if self._grpc_server is not None:
            grpc_task = asyncio.create_task(self._grpc_server.start(self.max_threads))
        background = [
            asyncio.create_task(m.run_background())
            for m in self._models
            if hasattr(m, "run_background")
        ]
        try:
            await self._rest_server.start()  # returns after SIGTERM / SIGINT
        finally:
            for task in background:
                task.cancel()
            if self._grpc_server is not None:
                await self._grpc_server.stop()
            if grpc_task is not None:
                grpc_task.cancel()
