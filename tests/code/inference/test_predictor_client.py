"""The transformer's gRPC hop: answers decode, a slow predictor is a timeout, a failing one an error."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from inference.predictor_client import PredictorClient, PredictorError, PredictorTimeout


def _servicer_base() -> type:
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pbg

    return pbg.GRPCInferenceServiceServicer


class _Ranker(_servicer_base()):  # type: ignore[misc]
    """A v2 gRPC servicer: p_click = row sum, p_purchase = first column; optionally slow or failing."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s, self.fail = delay_s, fail

    async def ModelInfer(self, request, context):  # noqa: ANN001, ANN201, N802 - gRPC servicer signature
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

        await asyncio.sleep(self.delay_s)
        if self.fail:
            await context.abort(grpc.StatusCode.INTERNAL, "boom")
        shape = list(request.inputs[0].shape)
        x = np.frombuffer(request.raw_input_contents[0], dtype="<f4").reshape(shape)
        outs = [pb.ModelInferResponse.InferOutputTensor(name=n, datatype="FP32", shape=[shape[0]])
                for n in ("p_click", "p_purchase")]
        return pb.ModelInferResponse(model_name="ranker", outputs=outs, raw_output_contents=[
            x.sum(axis=1).astype("<f4").tobytes(), x[:, 0].astype("<f4").tobytes()])


async def _score(servicer: _Ranker, deadline_s: float) -> tuple[np.ndarray, np.ndarray]:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pbg

    server = grpc.aio.server()
    pbg.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = PredictorClient("http://127.0.0.1:1", f"127.0.0.1:{port}", protocol="grpc")
    try:
        x = np.arange(12, dtype=np.float32).reshape(4, 3)
        return await client.score(x, deadline_s)
    finally:
        await client.close()
        await server.stop(0)


def test_grpc_answer_is_decoded_per_row():
    pc, pp = asyncio.run(_score(_Ranker(), 5.0))
    assert pc.tolist() == [3.0, 12.0, 21.0, 30.0] and pp.tolist() == [0.0, 3.0, 6.0, 9.0]


def test_grpc_deadline_missed_is_a_timeout():
    with pytest.raises(PredictorTimeout):
        asyncio.run(_score(_Ranker(delay_s=0.5), 0.05))


def test_grpc_failure_is_a_predictor_error_not_a_timeout():
    with pytest.raises(PredictorError) as info:
        asyncio.run(_score(_Ranker(fail=True), 5.0))
    assert not isinstance(info.value, PredictorTimeout) and "INTERNAL" in str(info.value)
