"""The transformer's REST hop (``inference.hop_http`` under ``PredictorClient``): answers decode,
connections are reused, a missed deadline never leaves a late answer for the next call, and a
failing, closing or absent predictor is a ``PredictorError``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import orjson
import pytest

from inference.predictor_client import PredictorClient, PredictorError, PredictorTimeout

Handler = Callable[[int, bytes], Awaitable[bytes | None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 request's body, re-prefixed with its JSON header length and a NUL (None at end
    of stream)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    fields = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
    }
    body = await reader.readexactly(int(fields[b"content-length"]))
    return fields[b"inference-header-content-length"] + b"\0" + body


def _binary_answer(pc: np.ndarray, pp: np.ndarray, chunked: bool = False) -> bytes:
    a, b = pc.astype("<f4").tobytes(), pp.astype("<f4").tobytes()
    head = orjson.dumps(
        {
            "outputs": [
                {
                    "name": "p_click",
                    "shape": [len(pc)],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(a)},
                },
                {
                    "name": "p_purchase",
                    "shape": [len(pp)],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(b)},
                },
            ]
        }
    )
    body = head + a + b
    hdr = f"HTTP/1.1 200 OK\r\ninference-header-content-length: {len(head)}\r\n".encode()
    if chunked:
        mid = len(body) // 2
        chunks = b"".join(
            f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in (body[:mid], body[mid:])
        )
        return hdr + b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    return hdr + f"content-length: {len(body)}\r\n\r\n".encode() + body


def _decode_x(framed: bytes) -> np.ndarray:
    """The request's input tensor from ``_read_request``'s framing."""
    n, _, body = framed.partition(b"\0")
    shape = orjson.loads(body[: int(n)])["inputs"][0]["shape"]
    return np.frombuffer(body[int(n) :], "<f4").reshape(shape)


async def _serve(handler: Handler) -> tuple[asyncio.AbstractServer, int, list[int]]:
    """A loopback HTTP server answering each request with ``handler(call_no, body)`` (None: close)."""
    connections: list[int] = []
    calls = 0

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        connections.append(1)
        while (body := await _read_request(reader)) is not None:
            calls += 1
            answer = await handler(calls, body)
            if answer is None:
                writer.close()
                return
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


def _ranker(chunked: bool = False, delay_first_s: float = 0.0, status: int = 200) -> Handler:
    """p_click = row sum + call number, p_purchase = first column (so each call's answer is its own)."""

    async def handle(call: int, body: bytes) -> bytes | None:
        if call == 1 and delay_first_s:
            await asyncio.sleep(delay_first_s)
        if status != 200:
            msg = b'{"error": "boom"}'
            return (
                f"HTTP/1.1 {status} Internal Server Error\r\ncontent-length: {len(msg)}\r\n\r\n".encode()
                + msg
            )
        x = _decode_x(body)
        return _binary_answer(x.sum(axis=1) + call, x[:, 0], chunked)

    return handle


X = np.arange(12, dtype=np.float32).reshape(4, 3)


async def _calls(handler: Handler, deadlines: list[float]) -> tuple[list[object], list[int]]:
    server, port, conns = await _serve(handler)
    client = PredictorClient(f"http://127.0.0.1:{port}", protocol="rest-binary")
    out: list[object] = []
    try:
        for d in deadlines:
            try:
                out.append(await client.score(X, d))
            except PredictorError as exc:
                out.append(exc)
        await asyncio.sleep(0.05)
    finally:
        await client.close()
        server.close()
    return out, conns


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_rest_binary_answers_decode_and_the_connection_is_reused(chunked):
    out, conns = asyncio.run(_calls(_ranker(chunked=chunked), [5.0, 5.0, 5.0]))
    for call, (pc, pp) in enumerate(out, start=1):  # type: ignore[misc]
        assert pc.tolist() == (X.sum(axis=1) + call).tolist() and pp.tolist() == X[:, 0].tolist()
    assert len(conns) == 1


def test_missed_deadline_is_a_timeout_and_the_late_answer_never_reaches_the_next_call():
    out, conns = asyncio.run(_calls(_ranker(delay_first_s=0.3), [0.05, 5.0]))
    assert isinstance(out[0], PredictorTimeout)
    pc, _ = out[1]  # type: ignore[misc]
    assert (
        pc.tolist() == (X.sum(axis=1) + 2).tolist()
    )  # its own answer (call 2), on a new connection
    assert len(conns) == 2


def test_http_error_is_a_predictor_error_with_the_status():
    out, _ = asyncio.run(_calls(_ranker(status=500), [5.0]))
    assert isinstance(out[0], PredictorError) and not isinstance(out[0], PredictorTimeout)
    assert "500" in str(out[0])


def test_connection_closed_without_an_answer_is_a_predictor_error_and_the_next_call_reconnects():
    async def close_first(call: int, body: bytes) -> bytes | None:
        return None if call == 1 else await _ranker()(call, body)

    out, conns = asyncio.run(_calls(close_first, [5.0, 5.0]))
    assert isinstance(out[0], PredictorError) and "closed" in str(out[0])
    assert not isinstance(out[1], Exception) and len(conns) == 2


def test_refused_connection_is_a_predictor_error():
    async def run() -> None:
        client = PredictorClient("http://127.0.0.1:1", protocol="rest-binary")
        with pytest.raises(PredictorError) as info:
            await client.score(X, 1.0)
        assert not isinstance(info.value, PredictorTimeout)
        await client.close()

    asyncio.run(run())
