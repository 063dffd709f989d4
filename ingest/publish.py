"""One publish, from the platform's grant to its single release.

`admit` asks the gatekeeper within a time limit (an answer that comes too late is a grant
nobody uses: it is released at once). A `Publish` holds what an admitted publish has:
its grant, the media sink, the converter of its messages, its health figures and its
heartbeats. `Publish.end` ends it once, whatever asked: the sink first, then the release,
which reaches the platform even when the caller is being cancelled. No socket here: the
connection owns that and tells the publish what arrived and when.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ingest.gatekeeper import (
    EndReason,
    Gatekeeper,
    Grant,
    PublishRequest,
    Refusal,
    RefusalCode,
    StreamDescription,
)
from ingest.health import HealthMeter, StreamHealth
from ingest.media import MediaConverter
from ingest.protocol import Message
from ingest.sink import MediaSink
from transcoder.packets import TrackKind

log = logging.getLogger(__name__)

# The refusal of a publish the platform did not answer in time: it says nothing of the key.
BUSY = "busy"
# Releases of admissions that answered after their publisher was told to retry.
_LATE_RELEASES: set[asyncio.Future[None]] = set()
_VIDEO = TrackKind.VIDEO


async def admit(
    gatekeeper: Gatekeeper, request: PublishRequest, limit: float, label: str = ""
) -> Grant | Refusal:
    """The platform's answer within ``limit`` seconds, else a refusal with reason `BUSY`
    ("try again in a minute"). A grant that arrives after that, or after the caller was
    cancelled, is released at once (as connection lost): it never holds a slot."""
    admission = asyncio.ensure_future(gatekeeper.admit(request))

    def release_late_grant(done: asyncio.Future[Grant | Refusal]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        grant = done.result()
        if isinstance(grant, Grant):
            release = gatekeeper.release(
                grant, EndReason.CONNECTION_LOST, StreamDescription(), StreamHealth()
            )
            task = asyncio.ensure_future(release)
            _LATE_RELEASES.add(task)
            task.add_done_callback(_LATE_RELEASES.discard)

    try:
        async with asyncio.timeout(limit):
            return await asyncio.shield(admission)
    except asyncio.CancelledError:
        admission.add_done_callback(release_late_grant)  # the answer outlives us
        raise
    except TimeoutError:
        admission.add_done_callback(release_late_grant)
        log.warning("%s: no admission answer within %.0f s", label, limit)
        return Refusal(
            RefusalCode.REJECTED,
            BUSY,
            "golive could not check your stream key in time: try again in a minute.",
            retry_after=60,
        )


class Publish:
    """An admitted publish. The connection feeds it (`media`, `metadata`, `add_bytes`);
    it hands packets to its sink, counts health and sends heartbeats from `start` on.

    ``on_force_stop()`` is called when a heartbeat's answer says the platform wants the
    publish stopped (the connection then ends); ``on_health(health)`` after each
    heartbeat's snapshot (the connection tunes its reads to the bitrate). `end` is the
    only way a publish ends; it releases the grant exactly once.
    """

    __slots__ = (
        "_converter",
        "_ended",
        "_gatekeeper",
        "_heartbeat_interval",
        "_heartbeats",
        "_loop",
        "_on_force_stop",
        "_on_health",
        "_sink",
        "grant",
        "health",
        "label",
        "last_media",
    )

    def __init__(
        self,
        grant: Grant,
        sink: MediaSink,
        gatekeeper: Gatekeeper,
        *,
        heartbeat_interval: float,
        label: str,
        on_force_stop: Callable[[], None],
        on_health: Callable[[StreamHealth], None],
    ) -> None:
        self.grant = grant
        self.label = label
        self.health = HealthMeter()
        self._sink = sink
        self._gatekeeper = gatekeeper
        self._converter = MediaConverter(label)
        self._heartbeat_interval = heartbeat_interval
        self._on_force_stop = on_force_stop
        self._on_health = on_health
        self._loop = asyncio.get_running_loop()
        self._heartbeats: asyncio.Task[None] | None = None
        self._ended = False
        self.last_media = self._loop.time()  # the event loop's clock

    def start(self) -> None:
        """Starts the heartbeats (once the publisher has been told it is live)."""
        if self._heartbeats is None and not self._ended:
            self._heartbeats = asyncio.ensure_future(self._beat())

    @property
    def description(self) -> StreamDescription:
        """What the publisher sends; the frame rate as measured once frames came."""
        description = self._converter.description
        measured = self.health.measured_frame_rate()
        if measured is None:
            return description
        return StreamDescription(
            description.video_codec,
            description.audio_codec,
            description.width,
            description.height,
            measured,
        )

    @property
    def skipped(self) -> int:
        """Media messages skipped: codecs or packet types the ingest does not take."""
        return self._converter.skipped

    # -- per message: the hot path ----------------------------------------------------------

    def media(self, message: Message, now: float, received_at: float) -> None:
        """An audio or video message read at ``now`` (event-loop clock) and
        ``received_at`` (wall clock)."""
        self.last_media = now
        packet = self._converter.packet(message, received_at)
        if packet is None:
            return
        if not packet.sequence_header:
            if packet.kind is _VIDEO:
                self.health.video(packet.timestamp, packet.keyframe, now)
            else:
                self.health.audio()
        self._sink.media(packet)

    def metadata(self, message: Message) -> None:
        """A data message: onMetaData goes to the sink, anything else is ignored."""
        metadata = self._converter.metadata(message)
        if metadata is not None:
            self._sink.metadata(metadata)

    # -- the platform ---------------------------------------------------------------------

    async def _beat(self) -> None:
        # The first beat comes soon, so the session row shows codec and resolution early.
        await asyncio.sleep(min(1.0, self._heartbeat_interval))
        while True:
            health = self.health.snapshot(self._loop.time())
            self._on_health(health)
            try:
                answer = await self._gatekeeper.heartbeat(self.grant, self.description, health)
            except Exception:
                log.exception("%s: heartbeat failed", self.label)
                answer = True
            if answer is False:
                self._on_force_stop()
                return
            if isinstance(answer, Grant):
                self.regrant(answer)
            await asyncio.sleep(self._heartbeat_interval)

    def regrant(self, grant: Grant) -> None:
        """The platform changed the terms of this publish (the same session, e.g. given a
        transcode slot): kept for the heartbeats and the release, told to the sink.
        Ignored for another session or once ended. Idempotent."""
        current = self.grant
        if self._ended or grant.session_id != current.session_id or grant == current:
            return
        self.grant = grant
        log.info("%s: new terms for session %d (transcode %s)", self.label,
                 grant.session_id, "yes" if grant.transcode else "no")
        try:
            self._sink.regrant(grant)
        except Exception:
            log.exception("%s: media sink failed taking new terms", self.label)

    async def end(self, reason: EndReason) -> None:
        """Ends the publish: heartbeats, the sink, then the release (shielded: it reaches
        the platform even when this is cancelled, which is re-raised after at most 10 s).
        Idempotent: only the first call does anything."""
        if self._ended:
            return
        self._ended = True
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            self._heartbeats = None
        try:
            self._sink.end(reason)
        except Exception:
            log.exception("%s: media sink failed at end", self.label)
        health = self.health.snapshot(self._loop.time())
        release = asyncio.ensure_future(
            self._gatekeeper.release(self.grant, reason, self.description, health)
        )
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            await asyncio.wait([release], timeout=10)
            raise
        except Exception:
            log.exception("%s: releasing the session failed", self.label)
        log.info(
            "%s: publish ended (%s) after %d video frames, %d bytes",
            self.label,
            reason,
            health.video_frames,
            health.bytes_in,
        )
