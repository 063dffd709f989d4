"""The platform's side of the ingest's `Gatekeeper` seam, over `streams.broadcasts`."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import ParamSpec, TypeVar

from django.db import connections

from golive.db import database_call
from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth

from . import broadcasts, takeovers

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseWorkers:
    """The threads the ingest's database calls run on, each with its own connection:
    publishes are decided in batches on up to `PlatformGatekeeper.ADMISSION_LANES` of them
    at a time, heartbeats and ends on the rest, and one slow query holds no one else up. A
    worker checks its
    connection (a round trip) before a call only when it has been idle for
    `CHECK_IDLE_AFTER` seconds or its last call failed, not before every call of a burst."""

    CHECK_IDLE_AFTER = 1.0

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="golive-db")
        self._closed = False

    def wrap(self, function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """``function`` as a coroutine run on one of the workers (in a copy of the
        caller's context). Straight to the executor: asgiref's `sync_to_async` spent a
        fifth of the event loop's time in a burst of publishes on its bookkeeping."""
        checked = database_call(function, trust_for=self.CHECK_IDLE_AFTER)

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            context = contextvars.copy_context()
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, functools.partial(context.run, checked, *args, **kwargs)
            )

        return call

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


_Waiting = tuple[PublishRequest, "asyncio.Future[Grant | Refusal]"]


class Batches:
    """Publishes that arrive while the platform is deciding others wait and are decided
    together (`broadcasts.start_broadcasts`: a few round trips per batch, not per publish).
    No publish waits for company: one that finds a lane free goes at once, alone; only a
    surge, which finds every lane busy, forms batches, as large as what arrived meanwhile
    (up to `broadcasts.MAX_BATCH`). So a lone publish is answered as fast as before, and
    60 at once cost the database and Redis a handful of statements instead of 180."""

    def __init__(
        self,
        decide: Callable[[list[PublishRequest]], Awaitable[list[Grant | Refusal]]],
        lanes: int,
        most: int = broadcasts.MAX_BATCH,
    ) -> None:
        if lanes < 1 or most < 1:
            raise ValueError("batches need at least one lane and one publish a batch")
        self._decide = decide
        self._lanes = lanes
        self._most = most
        self._busy = 0
        self._waiting: list[_Waiting] = []
        self._running: set[asyncio.Task[None]] = set()
        self.sizes: Counter[int] = Counter()  # batches decided, by size

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        answer: asyncio.Future[Grant | Refusal] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer))
        if self._busy < self._lanes:
            self._next()
        return await answer

    def _next(self) -> None:
        batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
        self._busy += 1
        task = asyncio.ensure_future(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Waiting]) -> None:
        self.sizes[len(batch)] += 1
        try:
            answers = await self._decide([request for request, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} publishes")
        except BaseException as error:  # each publish of the batch hears of it
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            for (_, answer), result in zip(batch, answers, strict=True):
                if not answer.done():
                    answer.set_result(result)
        finally:
            self._busy -= 1
            if self._waiting and self._busy < self._lanes:
                self._next()


class PlatformGatekeeper:
    # How long a publish waits for another ingest node to let go of the channel's silent
    # publish (its housekeeping looks every second), and how often it looks meanwhile.
    TAKEOVER_WAIT = 3.0
    TAKEOVER_POLL = 0.2

    # Batches of publishes decided at once (each on a database worker of its own).
    ADMISSION_LANES = 2

    def __init__(self) -> None:
        self.workers = workers = DatabaseWorkers()
        self.batches = Batches(workers.wrap(broadcasts.start_broadcasts), self.ADMISSION_LANES)
        self._admit = self.batches.admit
        self._earlier = workers.wrap(broadcasts.earlier_figures)
        self._heartbeat = workers.wrap(broadcasts.record_heartbeat)
        self._transcoded = workers.wrap(broadcasts.transcoded_among)
        self._release = workers.wrap(broadcasts.end_broadcast)
        self._conclude = workers.wrap(broadcasts.conclude_grace)
        self._live_publish = workers.wrap(broadcasts.find_live_publish)
        self._request_takeover = workers.wrap(takeovers.request)
        self._node_alive = workers.wrap(takeovers.is_alive)
        self._close_lost = workers.wrap(broadcasts.close_lost_session)
        # Counts of the connections before a reconnect, per resumed session: the
        # session's figures are theirs plus the current connection's.
        self._carried: dict[int, dict[str, int]] = {}

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        grant = await self._admit(request)
        if isinstance(grant, Refusal) and grant.reason == broadcasts.already_live().reason:
            grant = await self._offer_takeover(request, grant)
        if isinstance(grant, Grant) and grant.resumed:
            self._carried[grant.session_id] = await self._earlier(grant.session_id)
        return grant

    async def _offer_takeover(self, request: PublishRequest, refusal: Refusal) -> Grant | Refusal:
        """The channel is live already. With its current key: on this node, the ingest may
        replace its publish if silent (``Refusal.takeover``); on another node, that node
        is asked to, and the publish is decided again once it has (within TAKEOVER_WAIT);
        if that node is dead, its session ends now, as its lease's expiry would later."""
        live = await self._live_publish(request.key)
        if live is None:
            return refusal
        session_id, node = live
        if node == request.node:
            return replace(refusal, takeover=session_id)
        if not await self._node_alive(node):
            await self._close_lost(session_id)
            return await self._admit(request)
        if not await self._request_takeover(node, session_id):
            return refusal
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.TAKEOVER_WAIT
        while loop.time() < deadline:
            await asyncio.sleep(self.TAKEOVER_POLL)
            if await self._live_publish(request.key) != live:
                return await self._admit(request)
        return refusal

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool | Grant:
        """As the seam says; a source-only publish that `rebalance_transcodes` has given a
        transcode slot since is answered with its new grant."""
        earlier = self._carried.get(grant.session_id)
        keep = await self._heartbeat(grant.session_id, description, health, earlier)
        if keep and not grant.transcode and await self._transcoded([grant.session_id]):
            return replace(grant, transcode=True)
        return keep

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
