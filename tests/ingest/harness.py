"""Test harness: an ingest server on its own event-loop thread, with any gatekeeper."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import uvloop

from ingest.gatekeeper import (
    EndReason,
    Grant,
    PublishRequest,
    Refusal,
    RefusalCode,
    StreamDescription,
)
from ingest.health import StreamHealth
from ingest.server import IngestConfig, IngestServer
from ingest.sink import RecordingSink

T = TypeVar("T")


class LoopThread:
    def __init__(
        self, new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    ) -> None:
        self.loop = new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine: Awaitable[T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class FakeGatekeeper:
    """Admits the keys it knows; refuses the rest as unknown. Records every call."""

    keys: dict[str, str] = field(default_factory=dict)  # key -> channel
    refusals: dict[str, Refusal] = field(default_factory=dict)  # key -> refusal
    admitted: list[Grant] = field(default_factory=list)
    released: list[tuple[Grant, EndReason, StreamDescription, StreamHealth]] = field(
        default_factory=list
    )
    heartbeats: list[tuple[Grant, StreamHealth]] = field(default_factory=list)
    stop_channels: set[str] = field(default_factory=set)
    next_id: int = 1

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        if request.key in self.refusals:
            return self.refusals[request.key]
        channel = self.keys.get(request.key)
        if channel is None:
            return Refusal(
                RefusalCode.BAD_NAME,
                "unknown_key",
                "Unknown stream key.",
                counts_as_failed_key=True,
            )
        grant = Grant(self.next_id, channel)
        self.next_id += 1
        self.admitted.append(grant)
        return grant

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool:
        self.heartbeats.append((grant, health))
        return grant.channel not in self.stop_channels

    async def release(
        self, grant: Grant, reason: EndReason, description: StreamDescription, health: StreamHealth
    ) -> None:
        self.released.append((grant, reason, description, health))


@dataclass
class RunningIngest:
    server: IngestServer
    loop: LoopThread
    gatekeeper: Any
    sinks: list[RecordingSink]
    host: str
    port: int

    def url(self, key: str, app: str = "live") -> str:
        return f"rtmp://{self.host}:{self.port}/{app}/{key}"

    def sink_for(self, channel: str) -> RecordingSink:
        return next(s for s in reversed(self.sinks) if s.grant.channel == channel)


# asyncio's own loop runs the ingest in `manage.py up`, uvloop in `manage.py ingest`: their
# transports differ in details a protocol can trip on. A module runs its tests on both with
# `pytestmark = pytest.mark.parametrize("loop_thread", list(EVENT_LOOPS), indirect=True)`.
EVENT_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture
def loop_thread(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    thread = LoopThread(EVENT_LOOPS[getattr(request, "param", "asyncio")])
    yield thread
    thread.close()


@pytest.fixture
def start_ingest(loop_thread: LoopThread) -> Iterator[Callable[..., RunningIngest]]:
    started: list[RunningIngest] = []

    def start(
        gatekeeper: Any = None,
        config: IngestConfig | None = None,
        keep_packets: bool = False,
        sink_factory: Any = None,
        key_attempts: Any = None,
    ) -> RunningIngest:
        """An ingest on the loop thread; media goes to RecordingSinks (kept in
        ``sinks``) unless ``sink_factory`` says otherwise."""
        gatekeeper = gatekeeper or FakeGatekeeper()
        sinks: list[RecordingSink] = []

        def recording_sinks(grant: Grant) -> RecordingSink:
            sink = RecordingSink(grant, keep_packets=keep_packets)
            sinks.append(sink)
            return sink

        async def create() -> IngestServer:
            server = IngestServer(
                gatekeeper,
                sink_factory or recording_sinks,
                config or IngestConfig(node="test"),
                key_attempts=key_attempts,
            )
            await server.start("127.0.0.1", 0)
            return server

        server = loop_thread.call(create())
        running = RunningIngest(server, loop_thread, gatekeeper, sinks, *server.address)
        started.append(running)
        return running

    yield start
    for running in started:
        loop_thread.call(running.server.stop(grace=5))
        if hasattr(running.server.key_attempts, "aclose"):  # a Redis client
            loop_thread.call(running.server.key_attempts.aclose())
        if hasattr(running.gatekeeper, "aclose"):  # the platform's: its DB connections
            loop_thread.call(running.gatekeeper.aclose())
