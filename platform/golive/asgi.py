"""ASGI entry point: HTTP (pages, API, origin) and, as they arrive, WebSockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "golive.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs Django set up)
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

# Static files are served by the process itself in the embedded mode; a cluster puts
# them behind the edge cache (GOLIVE_SERVE_STATIC=0 leaves them to it). Only /static/
# is intercepted: every other request goes straight to Django, fully async.
http_application = (
    ASGIStaticFilesHandler(django_application)
    if os.environ.get("GOLIVE_SERVE_STATIC", "1") != "0" and settings.STATIC_URL
    else django_application
)

application = ProtocolTypeRouter({"http": http_application})
