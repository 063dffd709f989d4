"""Builds the RTMP ingest with the platform's gatekeeper, for `ingest` and `up`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import replace

from django.conf import settings
from django.db import connections

from ingest.gatekeeper import EndReason
from ingest.packaging import ReconnectGrace
from ingest.server import IngestConfig, IngestServer
from ingest.sink import SinkFactory
from ingest.throttle import RedisKeyAttemptStore
from quotas import slots, tally
from quotas.actions import keep_quota_for

from . import actions, broadcasts, takeovers
from .gatekeeper import PlatformGatekeeper

log = logging.getLogger(__name__)


def ingest_config() -> IngestConfig:
    return IngestConfig(
        node=settings.GOLIVE_NODE_NAME,
        max_connections=settings.GOLIVE_RTMP_MAX_CONNECTIONS,
        max_connections_per_ip=settings.GOLIVE_RTMP_MAX_CONNECTIONS_PER_IP,
    )


class PlatformIngest(IngestServer):
    """The ingest with the platform's gatekeeper, its housekeeping and, when packaging,
    the reconnect grace.

    Housekeeping, one task per node: every `STOP_CHECK` seconds one query finds which of
    this node's live sessions the platform has ended (a force stop, a lease another node
    reaped) and drops their publishers, and the takeover requests of other nodes (an
    encoder reconnected there) end this node's silent publishes they name; every
    `REAP_EVERY` checks it frees the slots of lapsed leases (of any node: that is how a
    dead node's streams end) and reconciles the Redis slot ledger with the leases
    (quotas.slots). Every check it also writes what admissions left for later
    (`write_deferred`). Source-only streams are upgraded when transcode slots are free
    (`rebalance_transcodes`): every check while this node has a source-only publish
    (else every `REAP_EVERY`), and those of this node the platform has upgraded, by any
    node, learn of it at once (`regrant`: their ladder starts) rather than at their next
    heartbeat. Stopping also ends the broadcasts still waiting for their streamer.
    """

    STOP_CHECK = 1.0
    REAP_EVERY = 2
    QUOTA_MAX_AGE = 1.0  # s the quota row is kept between reads (quotas.actions)
    PACE_MAX_AGE = 5.0  # s the count of recent ends is kept for wait estimates (broadcasts)

    platform: PlatformGatekeeper
    grace: ReconnectGrace | None = None
    # Directory thumbnails of this node's broadcasts (when it packages them).
    thumbnails = False
    delivers = False  # its publishes go to the live index (the default sink factory)
    _housekeeping: asyncio.Task[None] | None = None
    _thumbnails: asyncio.Task[None] | None = None
    _takeovers: set[asyncio.Task[bool]]

    async def start(self, host: str = "0.0.0.0", port: int = 1935) -> None:
        # The slot ledger from the leases before the first publish: claims a crashed run
        # left behind are dropped now, not at the first housekeeping.
        await self.platform.workers.wrap(slots.reconcile)()
        # Alive before the first publish: another node never takes this one for dead.
        await self.platform.workers.wrap(takeovers.take_requests)(self.config.node)
        await open_worker_connections(self.platform)
        # The connections and clients the first publishes would otherwise open (and the
        # modules they would import) in the middle of a burst, on the way to its answers.
        if isinstance(self.key_attempts, RedisKeyAttemptStore):
            await self.key_attempts.connect()
        if self.delivers:
            from delivery.live import live_index

            live_index()
        keep_quota_for(self.QUOTA_MAX_AGE)
        broadcasts.keep_pace_for(self.PACE_MAX_AGE)
        if settings.GOLIVE_DEFER_ADMISSION_WRITES:
            defer_admission_writes()
        await super().start(host, port)
        loop = asyncio.get_running_loop()
        self._housekeeping = loop.create_task(self._keep_house())
        if self.thumbnails:
            from watch.thumbnails import run_periodically

            self._thumbnails = loop.create_task(run_periodically(settings.GOLIVE_NODE_NAME))

    async def stop(self, grace: float = 10.0) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._thumbnails is not None:
            self._thumbnails.cancel()
        await super().stop(grace)
        # What start() set for this process's admissions goes back to reading every time.
        keep_quota_for(0)
        broadcasts.keep_pace_for(0)
        await self.platform.workers.wrap(takeovers.forget)(self.config.node)
        if self.grace is not None:
            self.grace.end_all()
            await self.platform.workers.wrap(broadcasts.conclude_graces)(settings.GOLIVE_NODE_NAME)
        await self.platform.workers.wrap(write_deferred)()
        if settings.GOLIVE_DEFER_ADMISSION_WRITES:
            # The process's later admissions (none, or another ingest's) write their own.
            defer_admission_writes(False)
        await self.platform.aclose()
        if isinstance(self.key_attempts, RedisKeyAttemptStore):
            await self.key_attempts.aclose()

    async def _keep_house(self) -> None:
        workers = self.platform.workers
        ended_among = workers.wrap(broadcasts.ended_among)
        take_requests = workers.wrap(takeovers.take_requests)
        self._takeovers = set()
        reap = workers.wrap(broadcasts.reap_expired_leases)
        rebalance = workers.wrap(broadcasts.rebalance_transcodes)
        transcoded_among = workers.wrap(broadcasts.transcoded_among)
        reconcile = workers.wrap(slots.reconcile)
        deferred = workers.wrap(write_deferred)
        tick = 0
        while True:
            await asyncio.sleep(self.STOP_CHECK)
            tick += 1
            try:
                live = {c.grant.session_id: c for c in self.connections if c.grant is not None}
                for session_id in await ended_among(live):
                    live[session_id].end(EndReason.FORCE_STOPPED, "force-stopped by the platform")
                for session_id in await take_requests(self.config.node):
                    # Not awaited here: it may wait up to takeover_silence.
                    task = asyncio.ensure_future(self.take_over(session_id))
                    self._takeovers.add(task)
                    task.add_done_callback(self._takeovers.discard)
                await deferred()
                reaping = tick % self.REAP_EVERY == 0
                if reaping:
                    await reap()
                source_only = [sid for sid, c in live.items() if c.grant and not c.grant.transcode]
                if reaping or source_only:
                    await rebalance()
                for session_id in await transcoded_among(source_only) if source_only else ():
                    connection = live[session_id]
                    if connection.grant is not None:
                        connection.regrant(replace(connection.grant, transcode=True))
                if reaping:
                    await reconcile()
            except Exception:
                log.exception("ingest housekeeping failed; retrying")


def key_attempt_store() -> RedisKeyAttemptStore | None:
    """Wrong keys counted in Redis, shared by every ingest node, when Redis is configured
    (the cluster); else None: this process's memory (the embedded mode's one node)."""
    if not settings.REDIS_URL:
        return None
    return RedisKeyAttemptStore.from_url(
        settings.REDIS_URL, prefix=f"{settings.GOLIVE_REDIS_PREFIX}:throttle:"
    )


async def open_worker_connections(platform: PlatformGatekeeper) -> None:
    """Every database worker opens its connection before the first publish: a node
    (re)started while its encoders reconnect all at once would otherwise open them in the
    middle of that burst, a PostgreSQL backend each on the way to the answers."""
    workers = platform.workers
    barrier = threading.Barrier(workers.size)

    def open_here() -> None:
        # Each call waits for the others, so each runs on a worker of its own.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connections["default"].ensure_connection()

    loop = asyncio.get_running_loop()
    await asyncio.gather(
        *(loop.run_in_executor(workers.executor, open_here) for _ in range(workers.size))
    )


def defer_admission_writes(on: bool = True) -> None:
    """Admissions in this process leave their tally counts and key uses for the
    housekeeping to write (`write_deferred`): each would otherwise be a write and a commit
    on the way to the publisher's answer, and the tally's on a row every admission
    shares. Off again (``on=False``, after a last `write_deferred`) when the ingest stops."""
    tally.defer(on)
    actions.defer_key_uses(on)


def write_deferred() -> None:
    tally.flush()
    actions.write_key_uses()


def build_ingest_server(
    sink_factory: SinkFactory | None = None, *, transcode: bool = False
) -> PlatformIngest:
    """The ingest with the platform's gatekeeper; by default every admitted publish is
    packaged (CMAF) and delivered (live index, segment store, VOD), and a streamer who
    drops may reconnect into the same broadcast for GOLIVE_RECONNECT_GRACE seconds.

    With ``transcode`` (the embedded mode), a publish that holds a transcode slot also
    gets its ladder (its channel's, carried on its grant, else GOLIVE_TRANSCODE_LADDER)
    from an in-process pool of at most GOLIVE_TRANSCODE_SESSIONS sessions
    (`delivery.transcoding`). Without it, in a cluster (Redis), transcode workers make the
    ladder from the live index, and the source's end waits for theirs
    (`delivery.transcode_cluster.HandoffOutput`)."""
    gatekeeper = PlatformGatekeeper()
    grace = None
    delivering = sink_factory is None
    if sink_factory is None:
        from delivery.live import part_target, target_duration
        from delivery.pipeline import make_delivery_output
        from ingest.packaging import packager_sink_factory
        from transcoder.cmaf.packager import PackagerSettings

        if settings.GOLIVE_RECONNECT_GRACE > 0:
            grace = ReconnectGrace(settings.GOLIVE_RECONNECT_GRACE, gatekeeper.conclude)
        # Segments never outlast the announced target duration, so it never changes.
        packaging = PackagerSettings(
            part_target=part_target(), max_segment_duration=target_duration()
        )
        if transcode and settings.GOLIVE_TRANSCODE_SESSIONS > 0:
            from delivery.transcoding import TranscodePool

            pool = TranscodePool(
                settings.GOLIVE_TRANSCODE_SESSIONS, settings.GOLIVE_TRANSCODE_LADDER, packaging
            )
            sink_factory = packager_sink_factory(
                pool.output_for, packaging, grace=grace, tap=pool.tap_for
            )
        elif settings.REDIS_URL:
            from delivery.transcode_cluster import make_handoff_output

            sink_factory = packager_sink_factory(make_handoff_output, packaging, grace=grace)
        else:
            sink_factory = packager_sink_factory(make_delivery_output, packaging, grace=grace)
    server = PlatformIngest(
        gatekeeper, sink_factory, config=ingest_config(), key_attempts=key_attempt_store()
    )
    server.platform = gatekeeper
    server.grace = grace
    server.thumbnails = server.delivers = delivering
    return server
