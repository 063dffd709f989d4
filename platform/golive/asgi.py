"""ASGI entry point: HTTP (pages, API, origin, player beacons) and WebSockets (chat)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "golive.settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from chat.origin import SameOriginOnly  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from delivery.asgi import OriginApplication  # noqa: E402
from viewers.asgi import BeaconApplication  # noqa: E402

# Static files are served by the process itself in the embedded mode; a cluster puts
# them behind the edge cache (GOLIVE_SERVE_STATIC=0 leaves them to it). Only /static/
# is intercepted: every other request goes straight to Django, fully async.
http_application = (
    ASGIStaticFilesHandler(django_application)
    if settings.GOLIVE_SERVE_STATIC and settings.STATIC_URL
    else django_application
)

# The origin's media playlists, parts and segments and the players' heartbeats skip
# Django's request handling (a thread per request, blocked ones included): see
# delivery/asgi.py and viewers/asgi.py. Chat sockets are authenticated by the session
# cookie, so only pages of this site may open them (cross-site WebSocket hijacking).
application = ProtocolTypeRouter({
    "http": BeaconApplication(OriginApplication(http_application)),
    "websocket": SameOriginOnly(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
