"""Player beacons, served straight from ASGI: ``POST /viewers/heartbeat`` and
``POST /viewers/telemetry``.

Every watching tab sends one about every 10 s: at 10,000 viewers a thousand requests a
second, so, like the origin's media URLs (`delivery.asgi`), they skip Django's middleware
and its thread per request. They carry no authority (no cookie is read, nothing is
returned that a viewer should not see), need no CSRF token and answer JSON. Bodies are
capped and read with a deadline.

Each client address (`viewers.addresses`) has a budget of beacon requests a minute,
checked before the body is read: past it, 429 with Retry-After and no other work. A
heartbeat counts at most `GOLIVE_VIEWER_TABS_PER_ADDRESS` tabs of one address per channel.

Heartbeat body: ``{"channel": slug, "tab": id, "leave": false}`` (``navigator.sendBeacon``
sends it as text/plain, which needs no CORS preflight). Answer: ``{"viewers": n, "live":
bool, "counted": bool}``; a channel that is not live counts nobody.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from . import sessions, telemetry
from .addresses import client_address
from .counter import TAB, viewer_counts

log = logging.getLogger(__name__)

# As Django's ASGIHandler takes them (django-stubs), so that it is an ASGIApp.
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEARTBEAT = "/viewers/heartbeat"
TELEMETRY = "/viewers/telemetry"
LIMITS = {HEARTBEAT: 512, TELEMETRY: 16 * 1024}
READ_DEADLINE = 10.0
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,40}")


class BeaconApplication:
    """The two beacon URLs here; everything else to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in LIMITS:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _answer(send, 405, {"error": "POST only"}, [(b"allow", b"POST")])
            return
        address = client_address(scope)
        try:
            wait = await viewer_counts().admit(address)
        except Exception:
            # The counter's store is down: the beacon is lost, the player carries on.
            log.exception("beacon budget check failed")
            await _answer(send, 503, {"error": "try again later"}, [(b"retry-after", b"10")])
            return
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            await _answer(send, 429, {"error": "too many requests", "retry_after": seconds},
                          [(b"retry-after", str(seconds).encode())])
            return
        try:
            body = await asyncio.wait_for(_read(receive, LIMITS[path]), READ_DEADLINE)
        except (TimeoutError, _TooLarge) as error:
            await _answer(send, 413 if isinstance(error, _TooLarge) else 408,
                          {"error": "body too large" if isinstance(error, _TooLarge)
                           else "too slow"})
            return
        if body is None:
            return  # gone
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            if path == HEARTBEAT:
                status, answer = await heartbeat(data, address)
            else:
                status, answer = 202, {"taken": telemetry.record(data)}
        except (ValueError, telemetry.TelemetryError) as error:
            await _answer(send, 400, {"error": str(error)[:200]})
            return
        except Exception:
            log.exception("beacon %s failed", path)
            await _answer(send, 500, {"error": "internal error"})
            return
        await _answer(send, status, answer)


async def heartbeat(data: dict[str, Any], address: str) -> tuple[int, dict[str, Any]]:
    slug, tab = data.get("channel"), data.get("tab")
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise ValueError("channel: a channel name")
    if not isinstance(tab, str) or not TAB.fullmatch(tab):
        raise ValueError("tab: 8 to 64 letters, digits, - or _")
    counts = viewer_counts()
    if data.get("leave"):
        return 200, {"viewers": await counts.leave(slug, tab, address), "live": None}
    session_id = await sessions.live_session(slug)
    if session_id is None:
        return 200, {"viewers": 0, "live": False, "counted": False}
    beat = await counts.beat(slug, tab, address)
    sessions.note_count(slug, beat.viewers)
    return 200, {"viewers": beat.viewers, "live": True, "counted": beat.counted}


class _TooLarge(Exception):
    pass


async def _read(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(
    send: Send, status: int, body: dict[str, Any],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
