"""The reference the chat bench measures golive against: the channels_redis core layer's
groups, as a Channels chat tutorial builds it (a consumer per socket, ``group_add`` on
connect, ``group_send`` per message). Served by ``daphne tests.bench.chat_reference:application``
with golive's settings (REDIS_URL selects ``channels_redis.core.RedisChannelLayer``)."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "golive.settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "bench-room"


class GroupChat(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def chat_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/chat/<slug:slug>", GroupChat.as_asgi())])}
)
