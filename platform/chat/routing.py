from __future__ import annotations

from django.urls import path

from .socket import ChatSocket

# Channels routes ASGI applications with Django's path(), whose stubs know only views.
websocket_urlpatterns = [path("ws/chat/<slug:slug>", ChatSocket())]  # type: ignore[arg-type]
