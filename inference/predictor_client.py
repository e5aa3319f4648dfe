"""The transformer's hop to the predictor: v2 over REST (JSON or binary tensors) or gRPC.

All three are async (``inference.hop_http`` / grpc.aio) and bounded by a deadline; a slow or failing predictor
raises ``PredictorTimeout`` / ``PredictorError`` and the transformer answers from the fallback.

* ``rest-json``   — ``POST /v2/models/<name>/infer`` with the tensor as a JSON list;
* ``rest-binary`` — the same route with the binary tensor extension
  (``Inference-Header-Content-Length``; raw little-endian FP32 after the JSON header), binary
  outputs requested; the predictor answers it on its fast route (``inference.fast_infer``): the
  default hop;
* ``grpc``        — ``GRPCInferenceService/ModelInfer`` with ``raw_input_contents``; the deadline is
  the call's gRPC deadline (the predictor sees it too).

``score_versioned`` also returns the bundle version the predictor answered with (its
``bundle_version`` response parameter, ``inference.predictor``): the transformer logs it as
``predictor_version``, so attribution sees which ranker served each answer.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import numpy as np
import orjson

from checkout_recs.log_format import REQUEST_ID
from inference.asgi import REQUEST_ID_HEADER
from inference.hop_http import HopClient

PROTOCOLS = ("rest-json", "rest-binary", "grpc")


class Scored(NamedTuple):
    """A predictor's answer: the two heads, float32 (n,), and the bundle version it answered with
    (None when the answer did not say)."""

    p_click: np.ndarray
    p_purchase: np.ndarray
    bundle_version: str | None


class PredictorError(RuntimeError):
    """The predictor answered with an error or an unreadable body."""


class PredictorTimeout(PredictorError):
    """The predictor missed the deadline."""


class PredictorClient:
    """Async v2 client for the ranker predictor.

    Parameters
    ----------
    rest_url : ``http://127.0.0.1:PORT`` of the predictor's REST server.
    grpc_target : ``127.0.0.1:PORT`` of its gRPC server (protocol ``grpc``).
    model : predictor model name.
    protocol : one of ``PROTOCOLS``.
    """

    def __init__(
        self,
        rest_url: str,
        grpc_target: str | None = None,
        model: str = "ranker",
        protocol: str = "rest-binary",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.rest_url, self.grpc_target, self.model, self.protocol = (
            rest_url.rstrip("/"),
            grpc_target,
            model,
            protocol,
        )

        self._http = HopClient(self.rest_url)
        self._stub: Any = None
        self._channel: Any = None

    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str | None]:
        """POST ``body`` to the model's v2 infer route: (status, body, inference-header-content-length).
        The request id of the calling context travels as ``x-request-id`` (the predictor's log lines
        carry it)."""
        rid = REQUEST_ID.get()
        if rid is not None:
            headers = {**headers, REQUEST_ID_HEADER: rid}
        status, content, head = await self._http.post(
            f"/v2/models/{self.model}/infer", body, headers
        )
        return status, content, head.get("inference-header-content-length")

    async def score(self, x: np.ndarray, deadline_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(p_click, p_purchase) float32 (n,) for x float32 (n, d), within ``deadline_s`` seconds."""
        scored = await self.score_versioned(x, deadline_s)
        return scored.p_click, scored.p_purchase

    async def score_versioned(self, x: np.ndarray, deadline_s: float) -> Scored:
        """``score`` plus the bundle version the predictor answered with."""
        x = np.ascontiguousarray(x, np.float32)
        try:
            if self.protocol == "grpc":  # the deadline travels with the call (no extra task)
                return await self._grpc(x, deadline_s)
            call = self._rest_json if self.protocol == "rest-json" else self._rest_binary
            return await asyncio.wait_for(call(x), timeout=deadline_s)
        except TimeoutError:
            raise PredictorTimeout(
                f"predictor missed its {deadline_s * 1e3:.0f} ms deadline"
            ) from None
        except PredictorError:
            raise
        except Exception as exc:  # noqa: BLE001 - connection refused, reset, bad body...
            raise PredictorError(f"predictor call failed: {type(exc).__name__}: {exc}") from None

    async def _rest_json(self, x: np.ndarray) -> Scored:
        body = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "features",
                        "shape": list(x.shape),
                        "datatype": "FP32",
                        "data": x.reshape(-1),
                    }
                ]
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        status, content, _ = await self._post(body, {"content-type": "application/json"})
        if status != 200:
            raise PredictorError(f"predictor HTTP {status}: {content[:200]!r}")
        return _decode_rest(content, None)

    async def _rest_binary(self, x: np.ndarray) -> Scored:
        raw = x.astype("<f4").tobytes()
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "features",
                        "shape": list(x.shape),
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ],
                "outputs": [
                    {"name": "p_click", "parameters": {"binary_data": True}},
                    {"name": "p_purchase", "parameters": {"binary_data": True}},
                ],
            }
        )
        status, content, header_length = await self._post(
            header + raw,
            {
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(len(header)),
            },
        )
        if status != 200:
            raise PredictorError(f"predictor HTTP {status}: {content[:200]!r}")
        return _decode_rest(content, header_length)

    async def _grpc(self, x: np.ndarray, deadline_s: float) -> Scored:
        import grpc  # lazy: only the gRPC paths need it
        from kserve.protocol.grpc import (
            grpc_predict_v2_pb2 as pb,  # lazy: kserve is a serving-image dependency, not needed offline
        )

        if self._stub is None:
            from kserve.protocol.grpc import (
                grpc_predict_v2_pb2_grpc as pbg,  # lazy: kserve is a serving-image dependency, not needed offline
            )

            if not self.grpc_target:
                raise PredictorError("no gRPC target configured for the predictor")
            self._channel = grpc.aio.insecure_channel(self.grpc_target)
            self._stub = pbg.GRPCInferenceServiceStub(self._channel)
        req = pb.ModelInferRequest(
            model_name=self.model,
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="features", datatype="FP32", shape=list(x.shape)
                )
            ],
            raw_input_contents=[x.astype("<f4").tobytes()],
        )
        rid = REQUEST_ID.get()
        if rid is not None:
            req.id = rid
        try:
            resp = await self._stub.ModelInfer(
                req,
                timeout=deadline_s,
                metadata=((REQUEST_ID_HEADER, rid),) if rid is not None else None,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise PredictorTimeout(
                    f"predictor missed its {deadline_s * 1e3:.0f} ms deadline"
                ) from None
            raise PredictorError(f"predictor gRPC {exc.code().name}: {exc.details()}") from None
        names = [o.name for o in resp.outputs]
        arrs = {
            n: np.frombuffer(resp.raw_output_contents[i], dtype="<f4")
            if resp.raw_output_contents
            else np.asarray(resp.outputs[i].contents.fp32_contents, np.float32)
            for i, n in enumerate(names)
        }
        version = (
            resp.parameters["bundle_version"].string_param
            if "bundle_version" in resp.parameters
            else None
        )
        return Scored(arrs["p_click"], arrs["p_purchase"], version or None)

    async def close(self) -> None:
        """Close connections."""
        await self._http.close()
        if self._channel is not None:
            await self._channel.close()


def _answered_version(head: dict[str, Any]) -> str | None:
    """The ``bundle_version`` parameter of a v2 REST answer's JSON part, None when absent or empty."""
    version = (head.get("parameters") or {}).get("bundle_version")
    return str(version) if version else None


def _decode_rest(content: bytes, header_len: str | None) -> Scored:
    """Outputs of a v2 REST answer, binary extension or plain JSON, and the version it answered with."""
    if header_len is None:
        body = orjson.loads(content)
        outs = {o["name"]: np.asarray(o["data"], np.float32) for o in body["outputs"]}
        return Scored(outs["p_click"], outs["p_purchase"], _answered_version(body))
    n = int(header_len)
    head = orjson.loads(content[:n])
    pos, arrs = n, {}
    for o in head["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrs[o["name"]] = np.asarray(o["data"], np.float32)
            continue
        arrs[o["name"]] = np.frombuffer(content[pos : pos + size], dtype="<f4")
        pos += size
    return Scored(arrs["p_click"], arrs["p_purchase"], _answered_version(head))
