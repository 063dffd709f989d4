"""The origin's per-session URLs (media playlist, init, parts, segments) served straight
from ASGI, everything else handed to Django.

Why: Django's ASGI handler runs every request in its own `ThreadSensitiveContext`, and its
built-in middleware runs the sync `process_request`/`process_response` hooks through
`sync_to_async` in that context's thread. So each request starts an OS thread, hands off to
it about fifteen times, and a blocked playlist request keeps its idle thread for the whole
wait: 5,000 waiting viewers were 5,000 threads, and waking 1,000 took seconds
(`python -m tests.bench delivery`). These URLs need none of the middleware: the answers
are public, cookie-less, cacheable, build no URL from the Host header, and the views are
async and read only the live index (no ORM, so no connection handling either).

The views are the same functions Django routes to (`delivery.urls`); a client that goes
away while its request is blocked cancels the view, as Django's handler does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.urls import Resolver404, ResolverMatch, resolve

from .responses import MOMENTARY, error

log = logging.getLogger(__name__)

# As Django's ASGIHandler takes them (django-stubs), so that it is an ASGIApp.
Scope = dict[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# URL names of delivery.urls served here; the multivariant playlist looks up the current
# broadcast in the database, and local segment files are read in threads: both stay in
# Django.
DIRECT = frozenset({"live-playlist", "live-init", "live-part", "live-segment"})


class OriginApplication:
    """An ASGI app: the `DIRECT` URLs without Django's request handling, else ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _direct_match(scope)
        if match is None:
            await self.app(scope, receive, send)
            return
        if not await _read_request(receive):
            return  # gone before it finished asking
        request = ASGIRequest(scope, io.BytesIO())
        view = asyncio.ensure_future(match.func(request, *match.args, **match.kwargs))
        gone = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait((view, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not view.done():
                view.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        try:
            response = await view
        except asyncio.CancelledError:
            if gone.done() and not gone.cancelled():
                return  # the client disconnected: nobody to answer
            raise
        except Exception:
            log.exception("origin error on %s", scope.get("path"))
            response = error(500, "internal error", MOMENTARY)
        await _send(response, send, head=scope["method"] == "HEAD")


def _direct_match(scope: Scope) -> ResolverMatch | None:
    if scope["type"] != "http" or not scope["path"].startswith("/live/"):
        return None
    try:
        match = resolve(scope["path"])
    except Resolver404:
        return None
    return match if match.url_name in DIRECT else None


async def _read_request(receive: Receive) -> bool:
    """Reads (and drops) the request body; False if the client disconnected first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        if not message.get("more_body", False):
            return True


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send(response: HttpResponse, send: Send, *, head: bool = False) -> None:
    """Sends ``response``; to a HEAD request its headers only, Content-Length included (the
    length a GET would get)."""
    body = response.content
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
    ]
    if not response.has_header("Content-Length"):
        headers.append((b"Content-Length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
