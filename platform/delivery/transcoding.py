"""The embedded transcode pool: a ladder for each publish that holds a transcode slot,
transcoded in this process (``manage.py up``), delivered like the source.

For such a publish the source's `DeliveryOutput` is wrapped in a `TranscodedOutput`: it
passes everything on to the source's output and, beside it, feeds a
`transcoder.session.TranscodeSession` with the publish's packets (as a `PacketTap` of
the ingest's packager sink) and the source packager's cuts (``PartInfo.cut``). Each rung
the session makes is delivered by a `DeliveryOutput` of its own (``rendition`` = the
rung's name): parts into the live index, segments into the segment store, its
description (measured bandwidth, codecs, size, frame rate) into the index for the
multivariant playlist, and a VOD at the end.

Nothing of the transcoding runs on the event loop: the session's feeder and encoder
threads do it; the loop only puts packets and cuts on the session's bounded inbox, and
the rungs' outputs are called back on the loop (``call_soon_threadsafe``), where their
delivery tasks run as the source's does. At most ``capacity`` sessions run at once;
a publish beyond it (or whose grant holds no transcode slot) goes out source-only.

The source's end waits for the rungs' (up to `END_TIMEOUT`): the stream's end in the
live index is the source's, and a rung's last part must be in before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ingest.gatekeeper import Grant
from ingest.packaging import PacketTap
from transcoder.cmaf.packager import (
    InitInfo,
    PackagerOutput,
    PackagerSettings,
    PartInfo,
    SegmentInfo,
)
from transcoder.ladder import Rung
from transcoder.packets import MediaPacket
from transcoder.session import SessionStats, TranscodeSession

from .live import live_index, segment_store
from .pipeline import DeliveryOutput

log = logging.getLogger(__name__)

# How long the source's end waits for its rungs' (flushing the encoders, the last
# uploads), before ending the stream regardless.
END_TIMEOUT = 15.0


class _LoopOutput:
    """A rung's `PackagerOutput`, callable from any thread: each call is carried out on
    the event loop, in order, by the rung's `DeliveryOutput` (made there at the first
    call, as it needs the running loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, make: Callable[[], DeliveryOutput]):
        self._loop = loop
        self._make = make
        self.output: DeliveryOutput | None = None

    def init(self, info: InitInfo, data: bytes) -> None:
        self._call("init", info, data)

    def part(self, info: PartInfo, data: bytes) -> None:
        self._call("part", info, data)

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self._call("segment", info, data)

    def end(self) -> None:
        self._call("end")

    def _call(self, method: str, *args: Any) -> None:
        self._loop.call_soon_threadsafe(self._apply, method, args)

    def _apply(self, method: str, args: tuple[Any, ...]) -> None:
        if self.output is None:
            self.output = self._make()
        getattr(self.output, method)(*args)


class TranscodedOutput:
    """The source's output with the publish's transcode session beside it: a
    `PackagerOutput` for the source's packager and a `PacketTap` for the ingest."""

    def __init__(
        self,
        source: DeliveryOutput,
        ladder: Sequence[Rung],
        settings: PackagerSettings,
        on_finished: Callable[[TranscodedOutput], None] = lambda _output: None,
    ) -> None:
        self.source = source
        self.loop = asyncio.get_running_loop()
        self.rungs: dict[str, _LoopOutput] = {}
        self.finished = asyncio.Event()
        self.stats: SessionStats | None = None
        self._on_finished = on_finished
        self._ending: asyncio.Task[None] | None = None
        self.session = TranscodeSession(
            ladder,
            self._rung_output,
            settings,
            name=f"{source.grant.channel} (session {source.grant.session_id})",
            on_end=self._session_ended,
        )

    # The source packager's output.
    def init(self, info: InitInfo, data: bytes) -> None:
        self.source.init(info, data)

    def part(self, info: PartInfo, data: bytes) -> None:
        self.source.part(info, data)
        if info.cut is not None:
            self.session.cut(info.cut)

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self.source.segment(info, data)

    def end(self) -> None:
        self.session.end()
        self._ending = self.loop.create_task(self._end_after_rungs())

    # The ingest's packet tap.
    def media(self, packet: MediaPacket) -> None:
        self.session.media(packet)

    def stop(self) -> None:
        # The publisher is gone; a reconnect continues the source only.
        self.session.end()

    # Called from the session's threads.
    def _rung_output(self, name: str) -> PackagerOutput:
        grant, index, store = self.source.grant, self.source.index, self.source.store
        output = _LoopOutput(
            self.loop, lambda: DeliveryOutput(grant, index, store, rendition=name)
        )
        self.rungs[name] = output
        return output

    def _session_ended(self, stats: SessionStats) -> None:
        self.loop.call_soon_threadsafe(self._finish, stats)

    def _finish(self, stats: SessionStats) -> None:
        self.stats = stats
        log.info(
            "%s: transcoding ended: %d packets, %d dropped (behind), rungs %s%s",
            self.session.name, stats.packets_in, stats.dropped, ", ".join(stats.rungs) or "-",
            f", error {stats.error}" if stats.error else "",
        )
        self.finished.set()
        self._on_finished(self)

    async def _end_after_rungs(self) -> None:
        try:
            await asyncio.wait_for(self.finished.wait(), END_TIMEOUT)
        except TimeoutError:
            log.warning("%s: the rungs did not end within %.0f s", self.session.name,
                        END_TIMEOUT)
        workers = [o.output.worker for o in list(self.rungs.values()) if o.output is not None]
        if workers:
            await asyncio.wait(workers, timeout=END_TIMEOUT)
        self.source.end()


class TranscodePool:
    """Gives each admitted publish its source output, transcoded when its grant holds a
    transcode slot and fewer than ``capacity`` sessions run here."""

    def __init__(self, capacity: int, ladder: Sequence[Rung], settings: PackagerSettings):
        self.capacity = capacity
        self.ladder = tuple(ladder)
        self.settings = settings
        self.running: set[TranscodedOutput] = set()

    def output_for(self, grant: Grant) -> PackagerOutput:
        source = DeliveryOutput(grant, live_index(), segment_store())
        if not grant.transcode or not self.ladder:
            return source
        if len(self.running) >= self.capacity:
            log.warning("%s (session %d): all %d transcode sessions busy; source only",
                        grant.channel, grant.session_id, self.capacity)
            return source
        output = TranscodedOutput(source, self.ladder, self.settings, self.running.discard)
        self.running.add(output)
        return output

    def tap_for(self, grant: Grant, output: PackagerOutput) -> PacketTap | None:
        return output if isinstance(output, TranscodedOutput) else None
