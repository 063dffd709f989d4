"""The embedded transcode pool: a ladder for each publish that holds a transcode slot,
transcoded in this process (``manage.py up``), delivered like the source.

Every publish's source `DeliveryOutput` is wrapped in a `TranscodedOutput` (when its ladder
has rungs: the channel's own, `Grant.ladder`, else the pool's default): it passes
everything on to the source's output and, once the publish has a transcode session,
feeds it the publish's packets (as a `PacketTap` of the ingest's packager sink) and the
source packager's cuts (``PartInfo.cut``). Each rung the session
makes is delivered by a `DeliveryOutput` of its own (``rendition`` = the rung's name):
parts into the live index, segments into the segment store, its description (measured
bandwidth, codecs, size, frame rate) into the index for the multivariant playlist, and a
VOD at the end.

Degrade, then upgrade: a publish whose grant holds no transcode slot goes out
source-only, and so does one whose grant holds a slot while ``capacity`` sessions already
run here (it waits, oldest first, for one to end). When the platform gives a live publish
a slot (`streams.broadcasts.rebalance_transcodes`, told through the heartbeat's answer or
the ingest's housekeeping: the ingest's `regrant`), its session starts there and then,
joining the publish under way: the output has run the packager's cutting rule over every
packet (a few comparisons each) and kept the latest sequence headers, so the rungs start
at the source's next segment, cut as the source is, and the multivariant playlist lists
them from their first init segment.

Nothing of the transcoding runs on the event loop: the session's feeder and encoder
threads do it; the loop only puts packets and cuts on the session's bounded inbox, and
the rungs' outputs are called back on the loop (``call_soon_threadsafe``), where their
delivery tasks run as the source's does.

The source's end waits for the rungs' (up to `END_TIMEOUT`): the stream's end in the
live index is the source's, and a rung's last part must be in before it.

`/metrics` (this process's registry): sessions running and waiting, upgrades, and what
sessions that fell behind real time shed (packets dropped from their inbox, frames a rung
skipped) with each rung's lag.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.gatekeeper import Grant
from ingest.packaging import PacketTap
from transcoder.cmaf.packager import (
    InitInfo,
    PackagerOutput,
    PackagerSettings,
    PartInfo,
    SegmentInfo,
)
from transcoder.engine import SegmentStarts
from transcoder.ladder import Rung
from transcoder.packets import MediaPacket, TrackKind
from transcoder.session import SessionStats, TranscodeSession

from .live import live_index, segment_store
from .pipeline import DeliveryOutput
from .rung_output import LoopOutput

log = logging.getLogger(__name__)

# How long the source's end waits for its rungs' (flushing the encoders, the last
# uploads), before ending the stream regardless.
END_TIMEOUT = 15.0


class TranscodedOutput:
    """The source's output with room for the publish's transcode session beside it: a
    `PackagerOutput` for the source's packager and a `PacketTap` for the ingest.

    The session starts with `start`: at once (before the first packet), or later, joining
    the publish (see the module's docstring). ``on_regrant(output)`` hears that the
    platform gave the publish a transcode slot; ``on_finished(output)`` that it needs no
    session slot any more (its session ended, or the publish went without one)."""

    def __init__(
        self,
        source: DeliveryOutput,
        ladder: Sequence[Rung],
        settings: PackagerSettings,
        on_finished: Callable[[TranscodedOutput], None] = lambda _output: None,
        on_regrant: Callable[[TranscodedOutput], None] = lambda _output: None,
    ) -> None:
        self.source = source
        self.grant = source.grant
        self.loop = asyncio.get_running_loop()
        self.rungs: dict[str, LoopOutput] = {}
        self.finished = asyncio.Event()
        self.stats: SessionStats | None = None
        self.session: TranscodeSession | None = None
        self.joined = False  # the session started after the publish did
        self.gone = False  # the publisher left: no session starts any more
        self._ladder = tuple(ladder)
        self._settings = settings
        self._on_finished = on_finished
        self._on_regrant = on_regrant
        self._ending: asyncio.Task[None] | None = None
        # The publisher dropped with a session running: its rungs are paused, not ended
        # (`rejoin` carries them on); ``_pause_done`` once that session has finished.
        self._paused = False
        self._pause_done = asyncio.Event()
        self._generation = 0  # which session's end `_finish` hears of
        self.earlier_stats: list[SessionStats] = []  # sessions before reconnects
        # Until a session starts: what one joining the publish needs.
        self._starts: SegmentStarts | None = SegmentStarts(settings)
        self._seen = False
        self._headers: dict[TrackKind, MediaPacket] = {}

    @property
    def name(self) -> str:
        return f"{self.grant.channel} (session {self.grant.session_id})"

    def start(self) -> bool:
        """Starts the publish's session (on the loop): True if it runs (or ran) now,
        False if the publisher has gone meanwhile."""
        if self.session is not None:
            return True
        if self.gone:
            return False
        joining = self._seen
        self.session = session = self._session(self._starts if joining else None)
        self._starts = None
        self.joined = joining
        for kind in (TrackKind.AUDIO, TrackKind.VIDEO):  # audio first: see TranscodeSession
            header = self._headers.pop(kind, None)
            if header is not None:
                session.media(header)
        if joining:
            log.info("%s: upgraded to the quality ladder while live", self.name)
        return True

    def _session(self, starts: SegmentStarts | None) -> TranscodeSession:
        self._generation += 1
        generation = self._generation
        return TranscodeSession(
            self._ladder,
            self._rung_output,
            self._settings,
            name=self.name,
            on_end=lambda stats: self._session_ended(generation, stats),
            starts=starts,
        )

    def rejoin(self, grant: Grant) -> PacketTap | None:
        """The publisher reconnected within the grace, and its packager carries on
        (`ingest.packaging.ReconnectGrace`): so does the ladder. The session before it
        paused its rungs at the drop (their last part and segment complete, playlists
        open); a new one joins the resumed publish with the cutting rule the last one ran
        (resumed as the packager is: its clock continues, its first key frame starts a
        segment), so each rung's next segment is the source's next and its timeline the
        source's. Its deliveries wait for the last session's to be in. The publish keeps
        its session slot here meanwhile. None when there is nothing to carry on (no
        session ran at the drop, or the grant holds no transcode slot any more)."""
        self.grant = grant
        old = self.session
        if not self._paused or old is None or not grant.transcode:
            return None
        starts = old.segment_starts
        starts.resume()
        if not self._pause_done.is_set():
            for output in self.rungs.values():
                output.hold()  # released when the last session has delivered its last
        self._paused = False
        self._pause_done = asyncio.Event()
        self.session = self._session(starts)
        log.info("%s: the quality ladder carries on after the reconnect", self.name)
        return self

    # The source packager's output.
    def init(self, info: InitInfo, data: bytes) -> None:
        self.source.init(info, data)

    def part(self, info: PartInfo, data: bytes) -> None:
        self.source.part(info, data)
        if info.cut is not None and self.session is not None:
            self.session.cut(info.cut)

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self.source.segment(info, data)

    def end(self) -> None:
        if self.session is None:
            self._leave()
            self.source.end()
            return
        if self._paused:  # the publisher never came back: the paused rungs end now
            self._ending = self.loop.create_task(self._end_paused())
            return
        self.session.end()
        self._ending = self.loop.create_task(self._end_after_rungs())

    # The ingest's packet tap.
    def media(self, packet: MediaPacket) -> None:
        session = self.session
        if session is not None:
            session.media(packet)
            return
        starts = self._starts
        if starts is None:
            return
        self._seen = True
        starts(packet)
        if packet.sequence_header:
            self._headers[packet.kind] = MediaPacket(
                packet.kind, packet.codec, packet.timestamp, bytes(packet.data),
                sequence_header=True,
            )

    def regrant(self, grant: Grant) -> None:
        self.grant = grant
        if grant.transcode and self.session is None and not self.gone:
            self._on_regrant(self)

    def stop(self) -> None:
        # The publisher is gone, for good or until a reconnect within the grace: the
        # session pauses its rungs (`rejoin` carries them on; `end` ends them).
        if self.session is None:
            self._leave()
            return
        if self._ending is not None:
            return  # ended for good already (`end`: the publish is over)
        self._paused = True
        self.session.end(pause=True)

    def _leave(self) -> None:
        """Without a session, the publish is done with the pool."""
        if not self.gone:
            self.gone = True
            self._starts = None
            self._headers.clear()
            self._on_finished(self)

    # Called from the session's threads.
    def _rung_output(self, name: str) -> PackagerOutput:
        output = self.rungs.get(name)  # a rung carried on after a reconnect
        if output is None:
            grant, index, store = self.source.grant, self.source.index, self.source.store
            output = LoopOutput(
                self.loop, lambda: DeliveryOutput(grant, index, store, rendition=name)
            )
            self.rungs[name] = output
        return output

    def _session_ended(self, generation: int, stats: SessionStats) -> None:
        self.loop.call_soon_threadsafe(self._finish, generation, stats)

    def _finish(self, generation: int, stats: SessionStats) -> None:
        # On the loop, after every delivery the session made (scheduled before this).
        if generation != self._generation:
            # The session before a reconnect, paused: the next one's deliveries go in now.
            self._add_paused(stats)
            for output in self.rungs.values():
                output.release()
            return
        if self._paused:
            self._add_paused(stats)
            self._pause_done.set()
            return
        self.stats = stats
        self.gone = True
        log.info(
            "%s: transcoding ended: %d packets, %d dropped (behind), rungs %s%s",
            self.name, stats.packets_in, stats.dropped, ", ".join(stats.rungs) or "-",
            f", error {stats.error}" if stats.error else "",
        )
        self.finished.set()
        self._on_finished(self)

    def _add_paused(self, stats: SessionStats) -> None:
        self.earlier_stats.append(stats)
        log.info("%s: transcoding paused (publisher gone): %d packets, %d dropped (behind)",
                 self.name, stats.packets_in, stats.dropped)

    async def _end_paused(self) -> None:
        """The end of a publish whose publisher dropped with a session running and never
        came back: once that session has paused its rungs, they end, then the source."""
        try:
            await asyncio.wait_for(self._pause_done.wait(), END_TIMEOUT)
        except TimeoutError:
            log.warning("%s: the rungs did not pause within %.0f s", self.name, END_TIMEOUT)
        for output in self.rungs.values():
            output.end()
        self.gone = True
        self.finished.set()
        self._on_finished(self)
        await self._end_after_rungs()

    async def _end_after_rungs(self) -> None:
        try:
            await asyncio.wait_for(self.finished.wait(), END_TIMEOUT)
        except TimeoutError:
            log.warning("%s: the rungs did not end within %.0f s", self.name, END_TIMEOUT)
        workers = [o.output.worker for o in list(self.rungs.values()) if o.output is not None]
        if workers:
            await asyncio.wait(workers, timeout=END_TIMEOUT)
        self.source.end()


class TranscodePool:
    """Gives each admitted publish its source output, transcoded while its grant holds a
    transcode slot and a session is free here (at most ``capacity`` run at once; publishes
    granted a slot beyond that wait for one, oldest first). A publish's ladder is its
    grant's (the channel's own), else ``ladder`` (the platform's)."""

    def __init__(self, capacity: int, ladder: Sequence[Rung], settings: PackagerSettings):
        self.capacity = capacity
        self.ladder = tuple(ladder)
        self.settings = settings
        self.running: set[TranscodedOutput] = set()
        self.waiting: list[TranscodedOutput] = []
        self.totals = _Totals()
        _POOLS.add(self)

    def output_for(self, grant: Grant) -> PackagerOutput:
        source = DeliveryOutput(grant, live_index(), segment_store())
        ladder = self.ladder if grant.ladder is None else grant.ladder
        if not ladder:
            return source
        output = TranscodedOutput(
            source, ladder, self.settings, on_finished=self._finished,
            on_regrant=self._want,
        )
        if grant.transcode:
            self._want(output)
        return output

    def tap_for(self, grant: Grant, output: PackagerOutput) -> PacketTap | None:
        return output if isinstance(output, TranscodedOutput) else None

    def _want(self, output: TranscodedOutput) -> None:
        """``output``'s publish holds a transcode slot: its session starts now, or when
        one here is free."""
        if output in self.running or output in self.waiting:
            return
        if len(self.running) < self.capacity:
            self._start(output)
            return
        self.waiting.append(output)
        log.warning("%s: all %d transcode sessions busy; source only until one ends",
                    output.name, self.capacity)

    def _start(self, output: TranscodedOutput) -> None:
        if output.start():
            self.running.add(output)
            if output.joined:
                self.totals.upgrades += 1

    def _finished(self, output: TranscodedOutput) -> None:
        if output in self.waiting:
            self.waiting.remove(output)
        if output in self.running:
            self.running.discard(output)
            for stats in [*output.earlier_stats, *filter(None, [output.stats])]:
                self.totals.add(stats)
        while self.waiting and len(self.running) < self.capacity:
            self._start(self.waiting.pop(0))


class _Totals:
    """What the pool's ended sessions did, for counters that never go back."""

    def __init__(self) -> None:
        self.upgrades = 0
        self.packets_dropped = 0
        self.frames_shed: dict[str, int] = {}

    def add(self, stats: SessionStats) -> None:
        self.packets_dropped += stats.dropped
        for rung in stats.engine.rungs if stats.engine is not None else ():
            self.frames_shed[rung.name] = self.frames_shed.get(rung.name, 0) + rung.frames_dropped


_POOLS: weakref.WeakSet[TranscodePool] = weakref.WeakSet()


class TranscodeCollector(Collector):
    """This process's transcode pools, read at each scrape (nothing when it has none)."""

    def collect(self) -> Iterator[Metric]:
        pools = list(_POOLS)
        if not pools:
            return
        running = [output for pool in pools for output in pool.running]
        yield GaugeMetricFamily(
            "golive_transcode_sessions", "Transcode sessions running in this process.",
            value=len(running),
        )
        yield GaugeMetricFamily(
            "golive_transcode_sessions_capacity",
            "Transcode sessions this process runs at most (GOLIVE_TRANSCODE_SESSIONS).",
            value=sum(pool.capacity for pool in pools),
        )
        yield GaugeMetricFamily(
            "golive_transcode_sessions_waiting",
            "Live publishes holding a transcode slot that wait, source-only, for a session "
            "here.",
            value=sum(len(pool.waiting) for pool in pools),
        )
        yield CounterMetricFamily(
            "golive_transcode_upgrades",
            "Source-only publishes whose ladder started while they were live.",
            value=sum(pool.totals.upgrades for pool in pools),
        )
        dropped = sum(pool.totals.packets_dropped for pool in pools)
        shed: dict[str, int] = {}
        lag: dict[str, float] = {}
        for pool in pools:
            for name, count in pool.totals.frames_shed.items():
                shed[name] = shed.get(name, 0) + count
        for output in running:
            assert output.session is not None
            stats = output.session.stats()
            dropped += stats.dropped
            for rung in stats.engine.rungs if stats.engine is not None else ():
                shed[rung.name] = shed.get(rung.name, 0) + rung.frames_dropped
                lag[rung.name] = max(lag.get(rung.name, 0.0), rung.lag)
        yield CounterMetricFamily(
            "golive_transcode_packets_dropped",
            "Packets transcode sessions dropped from their full inbox: the session fell "
            "behind real time (video then skips to the next key frame).",
            value=dropped,
        )
        frames = CounterMetricFamily(
            "golive_transcode_frames_shed",
            "Frames a rung skipped because its encoder fell behind real time.",
            labels=["rung"],
        )
        for name, count in sorted(shed.items()):
            frames.add_metric([name], count)
        yield frames
        behind = GaugeMetricFamily(
            "golive_transcode_lag_seconds",
            "Media seconds the furthest-behind running session's rung is behind its "
            "newest decoded frame.",
            labels=["rung"],
        )
        for name, seconds in sorted(lag.items()):
            behind.add_metric([name], seconds)
        yield behind


REGISTRY.register(TranscodeCollector())
