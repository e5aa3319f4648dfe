"""The transformer's gRPC hop: answers decode, a slow predictor is a timeout, a failing one an error."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from inference.predictor_client import (
    PredictorClient,
    PredictorError,
    PredictorTimeout,
    Scored,
    _decode_rest,
)


def _servicer_base() -> type:
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pbg

    return pbg.GRPCInferenceServiceServicer


class _Ranker(_servicer_base()):  # type: ignore[misc]
    """A v2 gRPC servicer: p_click = row sum, p_purchase = first column; optionally slow or failing."""

    def __init__(
        self, delay_s: float = 0.0, fail: bool = False, version: str | None = None
    ) -> None:
        self.delay_s, self.fail, self.version = delay_s, fail, version

    async def ModelInfer(self, request, context):  # noqa: ANN001, ANN201, N802 - gRPC servicer signature
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

        self.metadata = dict(context.invocation_metadata())
        self.request_id = request.id
        await asyncio.sleep(self.delay_s)
        if self.fail:
            await context.abort(grpc.StatusCode.INTERNAL, "boom")
        shape = list(request.inputs[0].shape)
        x = np.frombuffer(request.raw_input_contents[0], dtype="<f4").reshape(shape)
        outs = [
            pb.ModelInferResponse.InferOutputTensor(name=n, datatype="FP32", shape=[shape[0]])
            for n in ("p_click", "p_purchase")
        ]
        params = (
            {"bundle_version": pb.InferParameter(string_param=self.version)}
            if self.version
            else None
        )
        return pb.ModelInferResponse(
            model_name="ranker",
            outputs=outs,
            parameters=params,
            raw_output_contents=[
                x.sum(axis=1).astype("<f4").tobytes(),
                x[:, 0].astype("<f4").tobytes(),
            ],
        )


async def _score(servicer: _Ranker, deadline_s: float) -> Scored:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pbg

    server = grpc.aio.server()
    pbg.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = PredictorClient("http://127.0.0.1:1", f"127.0.0.1:{port}", protocol="grpc")
    try:
        x = np.arange(12, dtype=np.float32).reshape(4, 3)
        return await client.score_versioned(x, deadline_s)
    finally:
        await client.close()
        await server.stop(0)


def test_grpc_answer_is_decoded_per_row():
    pc, pp, version = asyncio.run(_score(_Ranker(), 5.0))
    assert pc.tolist() == [3.0, 12.0, 21.0, 30.0] and pp.tolist() == [0.0, 3.0, 6.0, 9.0]
    assert version is None  # an answer that does not say which bundle answered


def test_the_bundle_version_the_ranker_answered_with_is_read_from_every_answer_form():
    assert asyncio.run(_score(_Ranker(version="idx-7"), 5.0)).bundle_version == "idx-7"
    head = {
        "outputs": [{"name": "p_click", "data": [0.5]}, {"name": "p_purchase", "data": [0.1]}],
        "parameters": {"model_version": "ranker-0", "bundle_version": "idx-7"},
    }
    assert _decode_rest(orjson.dumps(head), None).bundle_version == "idx-7"  # JSON tensors
    raw = np.float32([0.5]).tobytes()
    binary = {
        "outputs": [
            {"name": n, "parameters": {"binary_data_size": 4}} for n in ("p_click", "p_purchase")
        ],
        "parameters": {"bundle_version": "idx-7"},
    }
    body = orjson.dumps(binary)
    scored = _decode_rest(body + raw + raw, str(len(body)))  # binary tensors
    assert scored.bundle_version == "idx-7" and scored.p_click.tolist() == [0.5]


def test_grpc_deadline_missed_is_a_timeout():
    with pytest.raises(PredictorTimeout):
        asyncio.run(_score(_Ranker(delay_s=0.5), 0.05))


def test_grpc_failure_is_a_predictor_error_not_a_timeout():
    with pytest.raises(PredictorError) as info:
        asyncio.run(_score(_Ranker(fail=True), 5.0))
    assert not isinstance(info.value, PredictorTimeout) and "INTERNAL" in str(info.value)


def test_the_calling_request_id_travels_as_grpc_metadata_and_the_request_id():
    from checkout_recs.log_format import set_request_id

    ranker = _Ranker()

    async def call() -> Scored:
        set_request_id("hop-7")  # as the transformer's preprocess does
        return await _score(ranker, 5.0)

    asyncio.run(call())
    assert ranker.metadata["x-request-id"] == "hop-7" and ranker.request_id == "hop-7"
    plain = _Ranker()
    asyncio.run(_score(plain, 5.0))
    assert "x-request-id" not in plain.metadata and plain.request_id == ""
