"""The ingest's MediaSink in front of a Packager: a broken packager never breaks a publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from ingest.gatekeeper import EndReason, Grant
from ingest.sink import MediaPacket, SinkFactory
from transcoder.cmaf.packager import Packager, PackagerOutput, PackagerSettings
from transcoder.metadata import StreamMetadata

log = logging.getLogger(__name__)


class PacketTap(Protocol):
    """Something else that wants a publish's packets as its packager takes them (the
    platform's transcode session). Called from the ingest's event loop: must not block.
    ``regrant`` brings the platform's new terms for the publish (a transcode slot).
    ``stop`` says the publish is gone (for now: a reconnect continues the source, not
    the tap)."""

    def media(self, packet: MediaPacket) -> None: ...

    def regrant(self, grant: Grant) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class Rejoinable(Protocol):
    """A packager output whose tap can carry on when the publisher reconnects within the
    grace (the platform's transcoded output: its ladder goes on): ``rejoin`` gives the
    tap for the new connection's packets, or None."""

    def rejoin(self, grant: Grant) -> PacketTap | None: ...


class PackagerSink:
    """Feeds one publish to a Packager.

    Any exception from the packager or its output is logged once, and packaging of this
    publish stops there: the ingest connection (and the publisher's stream) carry on
    untouched, the sink drops what follows. ``failed`` tells whether that happened. The
    packager's work per packet is a few microseconds of pure Python; the output must not
    block either (the ingest calls this from its event loop).
    """

    def __init__(
        self,
        packager: Packager,
        label: str = "",
        *,
        grant: Grant | None = None,
        grace: ReconnectGrace | None = None,
        tap: PacketTap | None = None,
    ) -> None:
        self._packager: Packager | None = packager
        self._tap = tap
        self._label = label
        self._grant = grant
        self._grace = grace
        self.failed = False

    def metadata(self, metadata: StreamMetadata) -> None:
        if self._packager is not None:
            try:
                self._packager.metadata(metadata)
            except Exception:
                self._fail("metadata")

    def media(self, packet: MediaPacket) -> None:
        if self._packager is not None:
            try:
                self._packager.push(packet)
            except Exception:
                self._fail("media")
                return
            if self._tap is not None:
                try:
                    self._tap.media(packet)
                except Exception:
                    # A broken tap loses its own output only, never the source's.
                    log.exception("%s: the packet tap failed", self._label or "publish")
                    self._tap = None

    def regrant(self, grant: Grant) -> None:
        self._grant = grant
        if self._tap is not None:
            try:
                self._tap.regrant(grant)
            except Exception:
                log.exception("%s: the packet tap failed", self._label or "publish")
                self._tap = None

    def end(self, reason: EndReason) -> None:
        try:
            self._end_packager(reason)
        finally:
            # After the packager: what its pause or end emitted reaches the tap's side first.
            self._stop_tap()

    def _stop_tap(self) -> None:
        if self._tap is not None:
            try:
                self._tap.stop()
            except Exception:
                log.exception("%s: the packet tap failed at end", self._label or "publish")
            self._tap = None

    def _end_packager(self, reason: EndReason) -> None:
        if self._packager is not None:
            if self._grace is not None and self._grant is not None and reason.resumable:
                try:
                    self._packager.pause()  # viewers get the last part now
                except Exception:
                    self._fail(f"end ({reason.value})")
                    return
                self._grace.park(self._grant, self._packager)
                self._packager = None
                return
            try:
                self._packager.end()
            except Exception:
                self._fail(f"end ({reason.value})")
            self._packager = None

    def _fail(self, stage: str) -> None:
        log.exception("%s: packaging stopped at %s", self._label or "publish", stage)
        self._packager = None
        self.failed = True


class ReconnectGrace:
    """Holds the packager of a publish that dropped, for ``seconds``, so that a reconnect
    the platform admits into the same session carries on where it stopped: same parts,
    segments and media sequence, a continuous timeline, one playlist and one VOD.

    When the time is up, ``conclude(grant)`` asks the platform whether the session is
    over (True: the packager is ended, which flushes its last part and segment and ends
    the playlist) or was resumed meanwhile (False: the reconnect is about to take it; it
    is kept for another period). Time only, no I/O per packet.
    """

    def __init__(self, seconds: float, conclude: Callable[[Grant], Awaitable[bool]]) -> None:
        self.seconds = seconds
        self._conclude = conclude
        self._parked: dict[int, tuple[Grant, Packager, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._parked)

    def park(self, grant: Grant, packager: Packager) -> None:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.seconds, self._expire, grant.session_id)
        self._parked[grant.session_id] = (grant, packager, timer)

    def take(self, session_id: int) -> Packager | None:
        """The packager parked for ``session_id``, resumed, or None."""
        parked = self._parked.pop(session_id, None)
        if parked is None:
            return None
        _, packager, timer = parked
        timer.cancel()
        packager.resume()
        return packager

    def end_all(self) -> None:
        """Ends every parked packager now (server shutdown)."""
        for session_id in list(self._parked):
            self._end(session_id)

    def _expire(self, session_id: int) -> None:
        task = asyncio.ensure_future(self._decide(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, session_id: int) -> None:
        parked = self._parked.get(session_id)
        if parked is None:
            return
        try:
            over = await self._conclude(parked[0])
        except Exception:
            log.exception("session %d: could not conclude its grace period", session_id)
            over = True  # the platform's lease expiry closes the row; free the memory
        if session_id not in self._parked:
            return  # taken by the reconnect meanwhile
        if over:
            self._end(session_id)
        else:
            self.park(parked[0], parked[1])

    def _end(self, session_id: int) -> None:
        grant, packager, timer = self._parked.pop(session_id)
        timer.cancel()
        try:
            packager.end()
        except Exception:
            log.exception("%s (session %d): packaging failed at end", grant.channel, session_id)


def packager_sink_factory(
    make_output: Callable[[Grant], PackagerOutput],
    settings: PackagerSettings | None = None,
    *,
    grace: ReconnectGrace | None = None,
    tap: Callable[[Grant, PackagerOutput], PacketTap | None] | None = None,
) -> SinkFactory:
    """A SinkFactory for the ingest: one Packager per admitted publish, writing to the
    output ``make_output(grant)`` returns; with ``grace``, a reconnect into a session whose
    packager is parked there continues it instead. ``tap(grant, output)`` may give a
    `PacketTap` that gets the new publish's packets too; a reconnect's comes from its
    output's `Rejoinable.rejoin`, when it has one."""

    def factory(grant: Grant) -> PackagerSink:
        packager = grace.take(grant.session_id) if grace is not None else None
        packet_tap = None
        if packager is None:
            output = make_output(grant)
            packager = Packager(output, settings)
            packet_tap = tap(grant, output) if tap is not None else None
        elif isinstance(packager.output, Rejoinable):
            try:
                packet_tap = packager.output.rejoin(grant)
            except Exception:
                # The reconnect goes on source-only; the source never pays for the tap.
                log.exception("%s (session %d): the packet tap could not carry on",
                              grant.channel, grant.session_id)
        return PackagerSink(
            packager,
            label=f"{grant.channel} (session {grant.session_id})",
            grant=grant,
            grace=grace,
            tap=packet_tap,
        )

    return factory
