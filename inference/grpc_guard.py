"""gRPC without UNKNOWN or INTERNAL from bad input: every malformed message gets INVALID_ARGUMENT.

kserve's gRPC server answers bytes that are not a protobuf with UNKNOWN (the deserializer raises
inside grpc), a ``ModelInferRequest`` that ``InferRequest.from_grpc`` cannot take with INTERNAL,
and ``ModelNotReady`` with an AttributeError. Here:

* ``GuardInterceptor`` (kserve's exception interceptor, extended) decodes each unary request
  itself: bytes that do not parse become INVALID_ARGUMENT with the reason; ``Shed`` (a call
  refused by the deadline, ``inference.deadline``) becomes UNAVAILABLE; ``InvalidInput`` becomes
  INVALID_ARGUMENT with a printable reason (logged at debug, not as an error with a traceback);
* ``GuardedServicer`` turns any failure to decode a ``ModelInferRequest`` into ``InvalidInput``
  and stamps the call's ``RequestClock`` (its gRPC deadline is the client's budget).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import StatusCode
from kserve.errors import InferenceError, InvalidInput, ModelNotReady
from kserve.logging import logger
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import to_headers

from inference.codec import printable
from inference.deadline import RequestClock, Shed, reset_clock, set_clock


class _Undecodable:
    """What the guarded deserializer returns for bytes that are not the method's message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's malformed message
            return _Undecodable(
                f"the message is not a valid protobuf of this method's request type "
                f"({type(exc).__name__}: {printable(str(exc))})"
            )

    return decode


def _checked(
    behaviour: Callable[[Any, Any], Awaitable[Any]],
) -> Callable[[Any, Any], Awaitable[Any]]:
    async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            await context.abort(StatusCode.INVALID_ARGUMENT, request.reason)
        return await behaviour(request, context)

    return run


class GuardInterceptor(ExceptionToStatusInterceptor):
    """kserve's exception interceptor plus a request decoder that never raises (module docstring)."""

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await super().intercept_service(continuation, handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _checked(handler.unary_unary),
            request_deserializer=_safe(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    async def handle_exception(
        self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str
    ) -> None:
        if isinstance(ex, grpc.aio.AbortError):
            raise ex  # the status is already set
        if isinstance(ex, Shed):
            await context.abort(StatusCode.UNAVAILABLE, printable(ex.reason))
        elif isinstance(ex, InvalidInput | InferenceError):
            logger.debug("invalid gRPC request to %s: %s", method_name, ex)
            await context.abort(StatusCode.INVALID_ARGUMENT, printable(str(ex.reason)))
        elif isinstance(ex, ModelNotReady):
            await context.abort(StatusCode.UNAVAILABLE, printable(str(ex)))
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class GuardedServicer(InferenceServicer):
    """kserve's servicer; ``ModelInferRequest`` decoding failures are ``InvalidInput`` and each
    call carries a ``RequestClock`` (``inference.deadline``)."""

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:  # noqa: N802
        received = time.perf_counter()
        headers = to_headers(context)
        infer_request = _decode(request)
        token = set_clock(
            RequestClock(received, client_budget_s=context.time_remaining(), gone=context.cancelled)
        )
        try:
            response_body, _ = await self._data_plane.infer(
                request=infer_request, headers=headers, model_name=request.model_name
            )
        finally:
            reset_clock(token)
        if isinstance(response_body, pb.ModelInferResponse):
            return response_body
        if isinstance(response_body, InferResponse):
            return response_body.to_grpc()
        return pb.ModelInferResponse(
            id=response_body["id"],
            model_name=response_body["model_name"],
            outputs=response_body["outputs"],
        )


def _decode(request: pb.ModelInferRequest) -> InferRequest:
    """``InferRequest.from_grpc`` after kserve's checks; any failure is ``InvalidInput``."""
    InferenceServicer.validate_grpc_request(request)
    try:
        return InferRequest.from_grpc(request)
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the caller's bad input
        raise InvalidInput(
            f"malformed ModelInferRequest: {type(exc).__name__}: {printable(str(exc))}"
        ) from None
