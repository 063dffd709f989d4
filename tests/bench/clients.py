"""Thousands of HTTP/1.1 keep-alive connections from one asyncio process, each stamping the
moment the last byte of its response is read.

A client is a bare `asyncio.Protocol` (no HTTP library): the time between the origin's
write and our stamp is one event-loop callback, so the stamps measure the origin rather
than the client. Responses must carry Content-Length (Django's CommonMiddleware sets it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    sent_at: float  # time.monotonic() when the request was written
    done_at: float  # time.monotonic() when its last byte was read


class ClientError(Exception):
    """The connection closed, or the answer was not HTTP/1.1 with a Content-Length."""


class KeepAliveClient(asyncio.Protocol):
    """One connection, one request at a time (HTTP/1.1 keep-alive, no pipelining)."""

    def __init__(self, host: str) -> None:
        self._host = host.encode()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._length = -1  # of the whole response once the headers are in
        self._body_length = 0
        self._status = 0
        self._sent_at = 0.0
        self._waiting: asyncio.Future[Response] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def get(self, target: str) -> asyncio.Future[Response]:
        """Sends ``GET target``; the future resolves with the response or a ClientError."""
        if self._waiting is not None and not self._waiting.done():
            raise RuntimeError("a request is already in flight on this connection")
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(ClientError("the connection is closed"))
            return future
        self._waiting = future
        self._buffer.clear()
        self._length = -1
        self._sent_at = time.monotonic()
        self._transport.write(
            b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + self._host + b"\r\n\r\n"
        )
        return future

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()  # first: the stamp is when the bytes reached us
        self._buffer += data
        if self._length < 0 and not self._parse_head():
            return
        if len(self._buffer) < self._length:
            return
        head_end = self._length - self._body_length
        body = bytes(self._buffer[head_end : self._length])
        del self._buffer[: self._length]
        self._length = -1
        self._resolve(Response(self._status, body, self._sent_at, now))

    def _parse_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or length is None:
            self._fail(ClientError(f"not an HTTP/1.1 answer with a length: {lines[0]!r}"))
            return False
        self._status = int(parts[1])
        self._body_length = length
        self._length = end + 4 + length
        return True

    def _resolve(self, response: Response) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(response)

    def _fail(self, error: Exception) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ClientError(f"the connection closed: {exc or 'by the server'}"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def connect(
    host: str, port: int, count: int, concurrency: int = 200
) -> list[KeepAliveClient]:
    """Opens ``count`` connections, at most ``concurrency`` handshakes at a time (a burst
    of thousands would overflow the server's listen backlog and stall on SYN retries)."""
    gate = asyncio.Semaphore(concurrency)
    return list(await asyncio.gather(*(connect_one(host, port, gate) for _ in range(count))))


async def connect_one(host: str, port: int, gate: asyncio.Semaphore) -> KeepAliveClient:
    """One keep-alive connection, its handshake counted against ``gate``."""
    async with gate:
        _transport, client = await asyncio.get_running_loop().create_connection(
            lambda: KeepAliveClient(f"{host}:{port}"), host, port
        )
        return client


def close_all(clients: Iterable[KeepAliveClient]) -> None:
    for client in clients:
        client.close()
