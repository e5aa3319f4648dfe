"""A minimal HTTP/1.1 client for the transformer's hop to the predictor (one POST, keep-alive).

The hop is one small POST per checkout to one host. aiohttp's client spends ~0.55 ms of the
transformer's CPU per call on the request path (request and response objects, header
multidicts, payload writers); this client writes the request bytes in one call and parses the
answer with ``httptools`` (the C parser uvicorn uses), ~0.1 ms. It is deliberately small:

* ``post(path, body, headers)`` -> ``(status, body, headers)`` with lower-case header names;
* keep-alive connections in a pool (one per call in flight); a connection whose answer is
  incomplete when the call ends (deadline, cancellation, error) is closed, never reused, so
  an answer can never be read by the wrong call;
* ``Content-Length`` and chunked answers (httptools decodes both); redirects, TLS, proxies and
  compression are out of scope (the predictor is a sidecar on loopback or in-cluster HTTP).

Errors: ``HopError`` for a refused connection, a closed connection or an unparsable answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import urlsplit

import httptools


class HopError(ConnectionError):
    """The predictor could not be reached, closed the connection, or answered unparsably."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.closed = False
        self.reusable = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HopError(f"unparsable answer from the predictor: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HopError(f"predictor closed the connection{f': {exc}' if exc else ''}"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = bool(self.parser.should_keep_alive())
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(
                (self.parser.get_status_code(), b"".join(self.chunks), self.headers)
            )

    # -- use
    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def request(self, raw: bytes) -> tuple[int, bytes, dict[str, str]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.headers, self.chunks, self.reusable = {}, [], False
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HopClient:
    """Keep-alive POSTs to one ``http://host:port`` (see module docstring).

    Parameters
    ----------
    base_url : ``http://host:port`` of the server.
    max_idle : idle connections kept for reuse.
    """

    def __init__(self, base_url: str, max_idle: int = 8) -> None:
        u = urlsplit(base_url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"hop client needs an http://host:port URL, got {base_url!r}")
        self.host, self.port = u.hostname, u.port or 80
        self._host_header = f"{self.host}:{self.port}".encode()
        self.max_idle = max_idle
        self._idle: deque[_Connection] = deque()

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                _Connection, self.host, self.port
            )
        except OSError as exc:
            raise HopError(
                f"cannot connect to the predictor at {self.host}:{self.port}: {exc}"
            ) from None
        return conn

    async def post(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """POST ``body`` to ``path``: (status, answer body, answer headers with lower-case names).

        Raises ``HopError`` (connection refused or lost, unparsable answer); cancellation (a
        deadline) propagates, and the connection it interrupted is closed.
        """
        head = [
            b"POST ",
            path.encode(),
            b" HTTP/1.1\r\nHost: ",
            self._host_header,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        for k, v in headers.items():
            head += [k.encode("latin-1"), b": ", v.encode("latin-1"), b"\r\n"]
        head.append(b"\r\n")
        conn = await self._acquire()
        ok = False
        try:
            answer = await conn.request(b"".join(head) + body)
            ok = conn.reusable and not conn.closed
            return answer
        finally:
            if ok and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:  # incomplete (deadline, error), not keep-alive, or the pool is full
                conn.close()

    async def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()

    def __repr__(self) -> str:
        return f"HopClient({self.host}:{self.port}, idle={len(self._idle)})"


__all__ = ["HopClient", "HopError"]
