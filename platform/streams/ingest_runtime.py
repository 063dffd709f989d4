"""Builds the RTMP ingest with the platform's gatekeeper, for `ingest` and `up`."""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from ingest.gatekeeper import EndReason
from ingest.packaging import ReconnectGrace
from ingest.server import IngestConfig, IngestServer
from ingest.sink import SinkFactory
from quotas import slots

from . import broadcasts
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
    reaped) and drops their publishers; every `REAP_EVERY` checks it frees the slots of
    lapsed leases (of any node: that is how a dead node's streams end) and upgrades
    source-only streams when transcode slots are free, and reconciles the Redis slot ledger
    with the leases (quotas.slots). Stopping also ends the broadcasts
    still waiting for their streamer.
    """

    STOP_CHECK = 1.0
    REAP_EVERY = 2

    platform: PlatformGatekeeper
    grace: ReconnectGrace | None = None
    # Directory thumbnails of this node's broadcasts (when it packages them).
    thumbnails = False
    _housekeeping: asyncio.Task[None] | None = None
    _thumbnails: asyncio.Task[None] | None = None

    async def start(self, host: str = "0.0.0.0", port: int = 1935) -> None:
        # The slot ledger from the leases before the first publish: claims a crashed run
        # left behind are dropped now, not at the first housekeeping.
        await self.platform.workers.wrap(slots.reconcile)()
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
        if self.grace is not None:
            self.grace.end_all()
            await self.platform.workers.wrap(broadcasts.conclude_graces)(settings.GOLIVE_NODE_NAME)
        await self.platform.aclose()

    async def _keep_house(self) -> None:
        workers = self.platform.workers
        ended_among = workers.wrap(broadcasts.ended_among)
        reap = workers.wrap(broadcasts.reap_expired_leases)
        rebalance = workers.wrap(broadcasts.rebalance_transcodes)
        reconcile = workers.wrap(slots.reconcile)
        tick = 0
        while True:
            await asyncio.sleep(self.STOP_CHECK)
            tick += 1
            try:
                live = {c.grant.session_id: c for c in self.connections if c.grant is not None}
                for session_id in await ended_among(live):
                    live[session_id].stop(EndReason.FORCE_STOPPED)
                if tick % self.REAP_EVERY == 0:
                    await reap()
                    await rebalance()
                    await reconcile()
            except Exception:
                log.exception("ingest housekeeping failed; retrying")


def build_ingest_server(
    sink_factory: SinkFactory | None = None, *, transcode: bool = False
) -> PlatformIngest:
    """The ingest with the platform's gatekeeper; by default every admitted publish is
    packaged (CMAF) and delivered (live index, segment store, VOD), and a streamer who
    drops may reconnect into the same broadcast for GOLIVE_RECONNECT_GRACE seconds.

    With ``transcode`` (the embedded mode), a publish that holds a transcode slot also
    gets its ladder (GOLIVE_TRANSCODE_LADDER) from an in-process pool of at most
    GOLIVE_TRANSCODE_SESSIONS sessions (`delivery.transcoding`)."""
    gatekeeper = PlatformGatekeeper()
    grace = None
    delivering = sink_factory is None
    if sink_factory is None:
        from delivery.live import PART_TARGET, target_duration
        from delivery.pipeline import make_delivery_output
        from ingest.packaging import packager_sink_factory
        from transcoder.cmaf.packager import PackagerSettings

        if settings.GOLIVE_RECONNECT_GRACE > 0:
            grace = ReconnectGrace(settings.GOLIVE_RECONNECT_GRACE, gatekeeper.conclude)
        # Segments never outlast the announced target duration, so it never changes.
        packaging = PackagerSettings(
            part_target=PART_TARGET, max_segment_duration=target_duration()
        )
        if transcode and settings.GOLIVE_TRANSCODE_SESSIONS > 0:
            from delivery.transcoding import TranscodePool

            pool = TranscodePool(
                settings.GOLIVE_TRANSCODE_SESSIONS, settings.GOLIVE_TRANSCODE_LADDER, packaging
            )
            sink_factory = packager_sink_factory(
                pool.output_for, packaging, grace=grace, tap=pool.tap_for
            )
        else:
            sink_factory = packager_sink_factory(make_delivery_output, packaging, grace=grace)
    server = PlatformIngest(gatekeeper, sink_factory, config=ingest_config())
    server.platform = gatekeeper
    server.grace = grace
    server.thumbnails = delivering
    return server
