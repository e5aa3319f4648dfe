"""The predictor's hot route: a v2 binary-tensor infer answered without kserve's decode and encode.

The transformer -> predictor hop is one v2 REST call per checkout carrying the candidate matrix
as a binary tensor (the v2 binary data extension: a JSON header of
``inference-header-content-length`` bytes, then the raw FP32 bytes). Through kserve's app that
call costs the predictor ~6.5 ms of CPU (FastAPI routing, ``InferRequest`` decoding, element-wise
``InferOutput`` encoding); kserve's gRPC servicer costs ~0.9 ms, most of it grpc-aio machinery.
``FastInferRoute`` is an ASGI middleware placed outermost on the predictor's REST server that
answers exactly that call itself: header parsed with orjson, tensor taken with ``np.frombuffer``,
the model's ``binary_outputs`` called, the answer written as kserve writes it (same JSON header
fields, same headers, same bytes). ~0.3 ms of CPU, hop wall ~0.7 ms (``benchmarks/serving.py``
measures the three ways side by side).

It takes only what it can answer identically: POST ``/v2/models/<name>/infer`` of a served model
that has ``binary_outputs``, the binary extension header present, exactly the model's one input
(``input_name``, FP32, 2-D shape) and every output the model gives asked for as binary. Anything
else, and any failure of the model, is handed to kserve's app with the body replayed, so JSON
requests, other tensors and model errors get kserve's own answers (400 with a reason for bad
input). Two answers differ from kserve's, on purpose: a binary part whose size disagrees with the
header (or the header length) gets 400 with the reason (kserve: 500 from a failed reshape), and
zero rows get 200 with empty outputs (kserve: 500 encoding them). The body limit applies here
too (413).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import numpy as np
import orjson

from inference.asgi import header, read_body_or_refuse, send_response

V2_INFER = re.compile(r"/v2/models/([^/]+)/infer")
HEADER_LENGTH = "inference-header-content-length"
_HEADER_LENGTH_KEY = HEADER_LENGTH.encode()  # as ASGI gives header names: lower-case bytes


class BinaryTensorModel(Protocol):
    """What a model needs for the fast route (``inference.predictor.RankerPredictor`` has it)."""

    name: str
    #: its one input: name, and ``(n, d)`` checks are the model's (``binary_outputs`` raises)
    input_name: str
    #: every output's name, in the order ``binary_outputs`` returns them
    output_names: tuple[str, ...]

    def binary_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """FP32 outputs for the FP32 input ``x`` (n, d), in ``output_names`` order."""
        ...

    def response_parameters(self) -> dict[str, Any]:
        """The ``parameters`` of every answer (as the model's ``predict`` sets them)."""
        ...


class FastInferRoute:
    """ASGI middleware: v2 binary-tensor infer of ``models`` answered directly (module docstring).

    Parameters
    ----------
    app : the next ASGI app (kserve's, behind the body limit).
    models : model name -> model with ``binary_outputs`` (``BinaryTensorModel``).
    max_bytes : largest request body, bytes (413 with a reason above it).
    """

    def __init__(self, app: Any, models: dict[str, BinaryTensorModel], max_bytes: int) -> None:
        self.app, self.models, self.max_bytes = app, dict(models), max_bytes
        self.answered = 0  # calls answered here (the rest went to kserve)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        length = header(scope, _HEADER_LENGTH_KEY) if scope["type"] == "http" else None
        if length is None or (model := self._model(scope)) is None:
            await self.app(scope, receive, send)
            return
        body = await read_body_or_refuse(scope, receive, send, self.max_bytes)
        if body is None:
            return
        try:
            answer = self._answer(model, body, length.decode("latin-1"))
        except MalformedTensor as exc:
            await send_response(
                send,
                400,
                orjson.dumps({"error": str(exc)}),
                [(b"content-type", b"application/json")],
            )
            return
        if answer is None:  # not ours to answer: kserve decodes it (and words any error)
            await self.app(scope, _replay(body, receive), send)
            return
        content, json_length = answer
        self.answered += 1
        # as kserve's binary answer: the header length, no content type
        await send_response(send, 200, content, [(_HEADER_LENGTH_KEY, str(json_length).encode())])

    def _model(self, scope: dict) -> BinaryTensorModel | None:
        """The served model a binary-extension POST to its v2 infer route is for, if ready."""
        if scope["method"] != "POST":
            return None
        m = V2_INFER.fullmatch(scope["path"])
        if m is None:
            return None
        model = self.models.get(m.group(1))
        return model if model is not None and getattr(model, "ready", False) else None

    def _answer(
        self, model: BinaryTensorModel, body: bytes, header_length: str
    ) -> tuple[bytes, int] | None:
        """(answer bytes, JSON header length), or None when kserve must answer instead."""
        x, req = _tensor(model, body, header_length)
        if x is None or req is None:
            return None
        try:
            outs = model.binary_outputs(x)
        except Exception:  # noqa: BLE001 - kserve runs it again and answers the error its way
            return None
        raws = [np.ascontiguousarray(o, "<f4").tobytes() for o in outs]
        head: dict[str, Any] = {
            "id": req.get("id") or "",
            "model_name": model.name,
            "model_version": None,
            "outputs": [
                {
                    "name": n,
                    "shape": [int(o.shape[0])],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(r)},
                }
                for n, o, r in zip(model.output_names, outs, raws, strict=True)
            ],
        }
        params = model.response_parameters()
        if params:
            head["parameters"] = params
        head_json = orjson.dumps(head)
        return head_json + b"".join(raws), len(head_json)


class MalformedTensor(ValueError):
    """A binary-extension request whose sizes contradict each other (answered 400 with the reason)."""


def _tensor(
    model: BinaryTensorModel, body: bytes, header_length: str
) -> tuple[np.ndarray | None, dict | None]:
    """The request's input tensor float32 (n, d) and its JSON header, or (None, None) unless it is
    exactly one FP32 2-D binary input named as the model's and every output asked for as binary.

    Raises ``MalformedTensor`` when the header length or the binary part's size is inconsistent."""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise MalformedTensor(
            f"{HEADER_LENGTH} must be a byte count within the body ({len(body)} bytes), "
            f"got {header_length!r}"
        )
    n = int(header_length)
    try:
        req = orjson.loads(body[:n])
    except orjson.JSONDecodeError:
        raise MalformedTensor(
            f"the first {n} bytes ({HEADER_LENGTH}) are not a JSON header"
        ) from None
    if not isinstance(req, dict) or set(req) - {"id", "inputs", "outputs"}:
        return None, None
    inputs, outputs = req.get("inputs"), req.get("outputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        return None, None
    inp = inputs[0]
    shape, size = inp.get("shape"), (inp.get("parameters") or {}).get("binary_data_size")
    if (
        inp.get("name") != model.input_name
        or inp.get("datatype") != "FP32"
        or set(inp) - {"name", "shape", "datatype", "parameters"}
        or set(inp.get("parameters") or {}) != {"binary_data_size"}
        or not isinstance(shape, list)
        or len(shape) != 2
        or not all(type(s) is int and s >= 0 for s in shape)
    ):
        return None, None
    if size != len(body) - n or size != shape[0] * shape[1] * 4:
        raise MalformedTensor(
            f"input '{model.input_name}': binary_data_size {size!r}, binary part {len(body) - n} "
            f"bytes and FP32 shape {shape} ({shape[0] * shape[1] * 4} bytes) must agree"
        )
    if (
        not isinstance(outputs, list)
        or [o.get("name") if isinstance(o, dict) else None for o in outputs]
        != list(model.output_names)
        or any(
            o.get("parameters") != {"binary_data": True} or set(o) - {"name", "parameters"}
            for o in outputs
        )
    ):
        return None, None
    if req.get("id") is not None and not isinstance(req.get("id"), str):
        return None, None
    return np.frombuffer(body, "<f4", offset=n).reshape(shape), req


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives ``body`` (already read) once, then defers to the real one."""
    sent = False

    async def again() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
