"""A lean HTTP/1.1 keep-alive client for thousands of virtual viewers in one process.

A bare `asyncio.Protocol` (no HTTP library): one request at a time per connection, as a
browser's connection is; the stamps (request written, first byte, last byte) are taken
in the protocol's callbacks, so they measure the server rather than the client. Bodies are
framed by Content-Length or chunked encoding; responses are capped in size.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import cast

MAX_HEAD = 16 * 1024
MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # the few this client reads (length, retry-after, age, x-cache)
    body: bytes
    sent_at: float  # time.monotonic() when the request was written
    first_byte_at: float
    done_at: float  # time.monotonic() when its last byte was read
    done_wall: float  # time.time() at the same moment (for program-date-time)


class HTTPError(Exception):
    """The connection closed or the answer was not HTTP/1.1 as expected."""


class Connection(asyncio.Protocol):
    def __init__(self, host: bytes) -> None:
        self._host = host
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: asyncio.Future[Response] | None = None
        self._sent_at = 0.0
        self._first_at = 0.0
        self._head: tuple[int, dict[str, str]] | None = None
        self._length = -1  # body length once known; -2: chunked
        self._body_start = 0
        self.closed = False
        self.answered = 0  # responses read on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def get(self, target: str) -> asyncio.Future[Response]:
        if self._waiting is not None and not self._waiting.done():
            raise RuntimeError("a request is already in flight on this connection")
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(HTTPError("the connection is closed"))
            return future
        # A failure nobody awaits any more (a viewer that left) is not worth a log line.
        future.add_done_callback(_retrieve)
        self._waiting = future
        self._buffer.clear()
        self._head = None
        self._first_at = 0.0
        self._sent_at = time.monotonic()
        self._transport.write(
            b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + self._host
            + b"\r\nUser-Agent: golive-surge\r\n\r\n"
        )
        return future

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self._first_at:
            self._first_at = now
        self._buffer += data
        if self._head is None and not self._parse_head():
            return
        if self._length >= 0:
            end = self._body_start + self._length
            if len(self._buffer) < end:
                return
            body = bytes(self._buffer[self._body_start : end])
        else:
            chunked = self._dechunk()
            if chunked is None:
                return
            body = chunked
        self._buffer.clear()
        assert self._head is not None
        status, headers = self._head
        self._head = None
        self.answered += 1
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(
                Response(status, headers, body, self._sent_at, self._first_at, now, time.time())
            )
        if headers.get("connection") == "close" and self._transport is not None:
            self._transport.close()

    def _parse_head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                self._fail(HTTPError("response head too long"))
            return False
        head = bytes(buffer[:end]).lower()
        if not head.startswith(b"http/1.") or not head[9:12].isdigit():
            self._fail(HTTPError(f"not an HTTP/1.1 answer: {head[:40]!r}"))
            return False
        status = int(head[9:12])
        # The names this client reads, found without splitting every header line.
        headers = {}
        for name in (b"content-length", b"transfer-encoding", b"retry-after", b"age",
                     b"x-cache", b"connection"):
            at = head.find(b"\r\n" + name + b":")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                value = head[at + len(name) + 3 : line_end if line_end >= 0 else None]
                headers[name.decode()] = value.strip().decode("latin-1")
        if headers.get("content-length", "").isdigit():
            self._length = int(headers["content-length"])
        elif headers.get("transfer-encoding") == "chunked":
            self._length = -2
        else:
            self._fail(HTTPError("a response with neither a length nor chunks"))
            return False
        if self._length > MAX_BODY:
            self._fail(HTTPError(f"response body over {MAX_BODY} bytes"))
            return False
        self._head = (status, headers)
        self._body_start = end + 4
        return True

    def _dechunk(self) -> bytes | None:
        position, body = self._body_start, bytearray()
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            try:
                size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            except ValueError:
                self._fail(HTTPError("bad chunk size"))
                return None
            if size == 0:
                if buffer.find(b"\r\n", line_end + 2) < 0:
                    return None  # the trailer's end has not arrived
                return bytes(body)
            start = line_end + 2
            if len(buffer) < start + size + 2:
                return None
            body += buffer[start : start + size]
            if len(body) > MAX_BODY:
                self._fail(HTTPError(f"response body over {MAX_BODY} bytes"))
                return None
            position = start + size + 2

    def _fail(self, error: Exception) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(error)
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HTTPError(f"the connection closed: {exc or 'by the server'}"))

    @property
    def closed_while_idle(self) -> bool:
        """Closed before any byte of the request in flight, after answering others: the
        server let the kept-alive connection go (Varnish's `timeout_idle`) as the request
        was being sent. A browser sends such a request again on a new connection (RFC
        9110, 9.2.2: GET is idempotent), not as an error."""
        return self.closed and self.answered > 0 and not self._first_at

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


def _retrieve(future: asyncio.Future[Response]) -> None:
    if not future.cancelled():
        future.exception()


async def open_connection(host: str, port: int, limit: float = 5.0) -> Connection:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(limit):  # not wait_for: see viewers.Viewer._get
        _transport, connection = await loop.create_connection(
            lambda: Connection(f"{host}:{port}".encode()), host, port
        )
    return connection
