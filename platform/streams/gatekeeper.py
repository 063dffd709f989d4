"""The platform's side of the ingest's `Gatekeeper` seam, over `streams.broadcasts`."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth

from . import broadcasts

P = ParamSpec("P")
R = TypeVar("R")


def _database_call(function: Callable[P, R]) -> Callable[P, R]:
    # The ingest is a long-running process outside any request: drop connections that
    # died or outlived CONN_MAX_AGE before each call, as a request would.
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        return function(*args, **kwargs)

    return call


class PlatformGatekeeper:
    def __init__(self) -> None:
        self._admit = sync_to_async(_database_call(broadcasts.start_broadcast))
        self._heartbeat = sync_to_async(_database_call(broadcasts.record_heartbeat))
        self._release = sync_to_async(_database_call(broadcasts.end_broadcast))

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        return await self._admit(request)

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool:
        return await self._heartbeat(grant.session_id, description, health)

    async def release(
        self, grant: Grant, reason: EndReason, description: StreamDescription,
        health: StreamHealth,
    ) -> None:
        await self._release(grant.session_id, reason, description, health)
