"""Only pages of this site may open a chat socket.

The socket is authenticated by the session cookie, which a browser sends with a WebSocket
opened by any site (cross-site WebSocket hijacking). Channels' AllowedHostsOriginValidator
trusts every origin when ALLOWED_HOSTS is "*" (as an operator may set it), so the check here is
the same one as CSRF's: the Origin header names the host the request came to, or one of
CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class SameOriginOnly:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and not allowed(scope):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 4403})
            return
        await self.app(scope, receive, send)


def allowed(scope: Scope) -> bool:
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    if not origin or origin == "null":
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()
