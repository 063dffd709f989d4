"""The platform's side of the ingest's `Gatekeeper` seam, over `streams.broadcasts`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

from golive.db import database_call
from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth

from . import broadcasts

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseWorkers:
    """The threads the ingest's database calls run on, each with its own connection: a
    thousand publishes arriving at once are decided several at a time (the quota row lock
    orders admissions), and one slow query holds no one else up."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="golive-db")
        self._closed = False

    def wrap(self, function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """``function`` as a coroutine run on one of the workers."""
        return sync_to_async(database_call(function), thread_sensitive=False,
                             executor=self.executor)

    async def aclose(self) -> None:
        """Closes every worker's database connection, then the pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        barrier = threading.Barrier(self.size)

        def close_here() -> None:
            # Each call waits for the others, so each runs on a thread of its own.
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            connections.close_all()

        await asyncio.gather(
            *(loop.run_in_executor(self.executor, close_here) for _ in range(self.size))
        )
        self.executor.shutdown(wait=False)


class PlatformGatekeeper:
    def __init__(self) -> None:
        self.workers = workers = DatabaseWorkers()
        self._admit = workers.wrap(broadcasts.start_broadcast)
        self._earlier = workers.wrap(broadcasts.earlier_figures)
        self._heartbeat = workers.wrap(broadcasts.record_heartbeat)
        self._release = workers.wrap(broadcasts.end_broadcast)
        self._conclude = workers.wrap(broadcasts.conclude_grace)
        # Counts of the connections before a reconnect, per resumed session: the
        # session's figures are theirs plus the current connection's.
        self._carried: dict[int, dict[str, int]] = {}

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        grant = await self._admit(request)
        if isinstance(grant, Grant) and grant.resumed:
            self._carried[grant.session_id] = await self._earlier(grant.session_id)
        return grant

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool:
        earlier = self._carried.get(grant.session_id)
        return await self._heartbeat(grant.session_id, description, health, earlier)

    async def release(
        self, grant: Grant, reason: EndReason, description: StreamDescription,
        health: StreamHealth,
    ) -> None:
        earlier = self._carried.pop(grant.session_id, None)
        await self._release(grant.session_id, reason, description, health, earlier)

    async def aclose(self) -> None:
        """Closes the database connections of the gatekeeper's workers (at shutdown)."""
        await self.workers.aclose()

    async def conclude(self, grant: Grant) -> bool:
        """The reconnect grace of ``grant``'s session is over (see ReconnectGrace)."""
        return await self._conclude(grant.session_id)
