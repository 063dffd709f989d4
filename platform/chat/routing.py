from __future__ import annotations

from django.urls import path

from .socket import ChatSocket

websocket_urlpatterns = [path("ws/chat/<slug:slug>", ChatSocket())]
