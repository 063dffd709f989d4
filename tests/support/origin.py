"""The origin's media URLs as Daphne calls them: one request to the ASGI application, and
the stream the delivery tests' memory live index holds (`index` in their conftest)."""

from __future__ import annotations

import asyncio
from typing import Any

SESSION = 987_001


STREAM = f"s{SESSION}"  # delivery.live.stream_name


PLAYLIST = f"/live/demo/{SESSION}/source/index.m3u8"


class Exchange:
    """One request to the ASGI application; ``disconnect()`` is the client going away."""

    def __init__(self, target: str) -> None:
        path, _, query = target.partition("?")
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        self.sent: list[dict[str, Any]] = []

    async def run(self) -> None:
        from golive.asgi import application

        await application(self.scope, self.inbox.get, self._send)

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def disconnect(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode().lower(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])
