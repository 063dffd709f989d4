"""The RTMP ingest server: accepts publishers, enforces connection caps, drains on stop."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field

from ingest.connection import ConnectionLimits, RtmpConnection
from ingest.gatekeeper import EndReason, Gatekeeper
from ingest.sink import NullSink, SinkFactory
from ingest.throttle import (
    ConnectionCounter,
    FailedKeyThrottle,
    KeyAttemptStore,
    ThrottlePolicy,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    node: str = field(default_factory=socket.gethostname)
    allowed_apps: frozenset[str] = frozenset({"live"})
    max_connections: int = 2000
    max_connections_per_ip: int = 20
    heartbeat_interval: float = 5.0
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    # A publish with the channel's own key replaces its publish here once that one has
    # sent no media for this long (a healthy encoder sends frames many times a second;
    # two encoders on one key must not take turns kicking each other out).
    takeover_silence: float = 1.0


def _null_sink(grant: object) -> NullSink:
    return NullSink()


class IngestServer:
    def __init__(
        self,
        gatekeeper: Gatekeeper,
        sink_factory: SinkFactory = _null_sink,
        config: IngestConfig | None = None,
        key_attempts: KeyAttemptStore | None = None,
    ) -> None:
        """``key_attempts`` counts wrong keys: this process's memory by default, a store
        shared by every ingest node in a cluster (`RedisKeyAttemptStore`)."""
        self.config = config or IngestConfig()
        self._gatekeeper = gatekeeper
        self._sink_factory = sink_factory
        self._throttle = FailedKeyThrottle(self.config.throttle, key_attempts)
        self.key_attempts = self._throttle.store
        self._counter = ConnectionCounter(
            self.config.max_connections, self.config.max_connections_per_ip
        )
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], RtmpConnection] = {}
        self.refused_connections = 0

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def connections(self) -> list[RtmpConnection]:
        return list(self._connections.values())

    async def start(self, host: str = "0.0.0.0", port: int = 1935) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection, host, port, reuse_address=True, backlog=1024
        )
        log.info("RTMP ingest listening on %s:%d", *self.address)

    def _new_connection(self) -> RtmpConnection:
        return RtmpConnection(
            node=self.config.node,
            gatekeeper=self._gatekeeper,
            sink_factory=self._sink_factory,
            throttle=self._throttle,
            limits=self.config.limits,
            allowed_apps=self.config.allowed_apps,
            heartbeat_interval=self.config.heartbeat_interval,
            on_open=self._open,
            take_over=self.take_over,
        )

    def _open(self, connection: RtmpConnection) -> None:
        ip = connection.peer_ip
        refusal = self._counter.try_open(ip)
        if refusal is not None:
            self.refused_connections += 1
            log.warning("refusing RTMP connection from %s: %s", ip, refusal)
            connection.end(EndReason.CONNECTION_LOST, f"refused: {refusal}")
            return
        connection.set_no_delay()
        task = asyncio.ensure_future(self._serve(connection))
        self._connections[task] = connection

    async def _serve(self, connection: RtmpConnection) -> None:
        try:
            await connection.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            # A bug in one connection must never take the server down with it.
            log.exception("RTMP connection from %s failed", connection.peer_ip)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._connections.pop(task, None)
            self._counter.close(connection.peer_ip)

    async def take_over(self, session_id: int) -> bool:
        """Ends this node's publish of ``session_id`` for a reconnect of the same stream,
        if it has sent no media for ``takeover_silence`` seconds (waiting at most that
        long to find out). Its end is "connection lost", so the session waits for the
        reconnect (the reconnect grace) instead of ending. True once it has ended and
        been released; False when it is still sending, or not here."""
        found = self._publisher_of(session_id)
        if found is None:
            return False
        task, connection = found
        silence = self.config.takeover_silence
        wait = silence - connection.silence()
        if wait > 0:
            await asyncio.sleep(wait)
            if self._publisher_of(session_id) != found or connection.silence() < silence:
                return False
        log.info("session %d: replacing its silent publish from %s", session_id,
                 connection.peer_ip)
        connection.end(EndReason.CONNECTION_LOST, "replaced by a reconnect of its stream")
        await asyncio.wait([task], timeout=self.config.limits.admit_timeout)
        return task.done()

    def _publisher_of(self, session_id: int) -> tuple[asyncio.Task[None], RtmpConnection] | None:
        for task, connection in self._connections.items():
            if connection.grant is not None and connection.grant.session_id == session_id:
                return task, connection
        return None

    async def stop(self, grace: float = 10.0) -> None:
        """Stops accepting, ends every publish with "server shutdown", waits for releases."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.end(EndReason.SERVER_SHUTDOWN, "server shutting down")
        tasks = list(self._connections)
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        if self._server is not None:
            await self._server.wait_closed()
        log.info("RTMP ingest stopped")
