"""A transcode session fed from the live index: the source rendition's parts, followed as a
player follows the live edge, turned back into what the ingest had handed the packager.

In a cluster the session does not run beside the ingest: a worker on another machine
reads the source rendition's parts from the live index as they are published (blocking
on `LiveIndex.wait_for_part`, one pub/sub wake per part), turns each back into packets
(`transcoder.cmaf.reader`) and gives the session the packets and the part's cut: the
same msn and part index, the same span, so the rungs are cut where the source was, as in
the embedded mode. A part's cut is given once the part after it is known (it says
whether the part ended its segment); the rung's part closes on its next frame anyway.

Where to start (`plan_start`): a new ladder starts at the segment the source is building
(its parts so far are in the index: the session catches up on them faster than real
time). A restarted one (its worker died) carries on where its rungs stopped: the segment
a rung was in the middle of is listed as a gap (`EXT-X-GAP`: it cannot be finished by
another encoder), and the session re-encodes from the next one, which the source's
window still holds, so a worker's death costs each rung at most that one segment. Past
``catch_up`` segments behind the live edge it starts nearer the edge and lists the
skipped segments as gaps too.

No Django: the caller gives the index, the session and how to learn that the source
has ended (`SourceFollower`'s ``source_end``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from transcoder.cmaf.packager import Cut
from transcoder.cmaf.reader import Init, Media, read_init, read_media
from transcoder.codecs import CodecConfigError, parse_avc_config, parse_hevc_config
from transcoder.ladder import Rung, ladder_for
from transcoder.live_index import LiveIndex, RenditionWindow
from transcoder.packets import TrackKind
from transcoder.renditions import SOURCE
from transcoder.session import TranscodeSession

log = logging.getLogger(__name__)

# Segments a (re)started session re-encodes from the source's window at most before
# reaching the live edge: more would keep its rungs behind for longer than it saves.
CATCH_UP_SEGMENTS = 2
# A session this many segments behind the source's live edge gives up (`FellBehind`) and
# is started again at the edge: a rung that cannot keep up sheds whole segments.
MAX_BEHIND_SEGMENTS = 5
# How long one wait for the next part lasts before the follower looks at the source's
# end marker, its silence and its stop flag.
WAIT_SECONDS = 0.5
# A source that publishes nothing for this long is gone (its ingest died; the platform
# ends the broadcast when its lease lapses). Longer than a reconnect's grace.
SILENCE_SECONDS = 30.0
# Inbox items the follower lets wait in the session before it pauses reading.
BACKLOG_LIMIT = 200
_SIZE_PARSERS = {"avc": parse_avc_config, "hevc": parse_hevc_config}


class FellBehind(Exception):
    """The session is too far behind the source's live edge (or the source's window lost
    what it needed): start it again at the edge."""


@dataclass(frozen=True, slots=True)
class Gap:
    """A rung segment to list as missing (`LiveIndex.mark_gap`) before the session
    writes its first part: times as the source's segment ``msn`` has them."""

    rendition: str
    msn: int
    duration: float
    program_date_time: float
    discontinuity: bool = False


@dataclass(frozen=True, slots=True)
class StartPlan:
    """Where a session starts: source segment ``msn``, after listing ``gaps``;
    ``rungs`` are the ladder for the source's size; ``restart`` says a rung already
    existed (an earlier session of the broadcast published it)."""

    msn: int
    rungs: tuple[Rung, ...]
    gaps: tuple[Gap, ...]
    restart: bool


def rungs_for(init: Init, ladder: Sequence[Rung]) -> list[Rung]:
    """The rungs a source with this init segment gets (`ladder_for` its picture size, as
    `TranscodeSession` decides from the same sequence header). Raises CodecConfigError
    for a codec that cannot be transcoded or a record without a size."""
    video = init.video
    if video is None:
        return []
    parse = _SIZE_PARSERS.get(video.codec)
    if parse is None:
        raise CodecConfigError(f"video codec {video.codec!r} cannot be transcoded")
    config = parse(video.record)
    if not config.width or not config.height:
        raise CodecConfigError("the source's sequence header gives no picture size")
    return ladder_for(config.width, config.height, ladder)


async def plan_start(
    index: LiveIndex, stream: str, ladder: Sequence[Rung], *, catch_up: int = CATCH_UP_SEGMENTS
) -> StartPlan | None:
    """Where a session for ``stream`` starts (see the module's docstring); None while the
    source has no part to start from yet. Raises CodecConfigError (see `rungs_for`)."""
    source = await index.snapshot(stream, SOURCE)
    if source is None or source.next_msn is None or source.ended:
        return None
    init_data = await index.get_init(stream, SOURCE, source.init_version)
    if init_data is None:
        return None
    rungs = rungs_for(read_init(init_data), ladder)
    # The newest segment whose first part is in the index: the live edge to start from.
    if source.parts:
        edge = source.next_msn
    elif source.segments and source.segments[-1].parts and not source.segments[-1].gap:
        edge = source.segments[-1].msn
    else:
        return None
    earliest = max(edge - catch_up, source.media_sequence)
    nexts: dict[str, int] = {}
    start = None
    for rung in rungs:
        window = await index.snapshot(stream, rung.name)
        if window is None or window.next_msn is None:
            continue
        nexts[rung.name] = window.next_msn
        # A segment the rung is in the middle of cannot be finished by another encoder.
        resume = window.next_msn + (1 if window.parts else 0)
        start = resume if start is None else max(start, resume)
    start = edge if start is None else min(max(start, earliest), edge)
    gaps = [
        _gap(source, rung, msn)
        for rung, first in nexts.items()
        for msn in range(first, start)
    ]
    return StartPlan(start, tuple(rungs), tuple(gaps), restart=bool(nexts))


def _gap(source: RenditionWindow, rendition: str, msn: int) -> Gap:
    for segment in source.segments:
        if segment.msn == msn:
            return Gap(rendition, msn, segment.duration, segment.program_date_time,
                       segment.discontinuity)
    # Trimmed from the source's window already (a long outage): its place, roughly.
    first = source.segments[0] if source.segments else None
    duration = float(source.target_duration)
    if first is None:
        return Gap(rendition, msn, duration, time.time())
    return Gap(rendition, msn, duration,
               first.program_date_time - (first.msn - msn) * duration)


class _Where(enum.Enum):
    AVAILABLE = enum.auto()
    SEGMENT_DONE = enum.auto()
    NOT_YET = enum.auto()
    TRIMMED = enum.auto()
    GAP = enum.auto()


@dataclass(slots=True)
class _Fed:
    msn: int
    index: int
    media: Media


class SourceFollower:
    """Feeds ``session`` from the source rendition of ``stream`` in ``index``, from the
    first part of source segment ``start_msn`` on, until the source ends.

    ``source_end()`` returns the (msn, part index) of the source's last part once its
    publish has ended (None before), for when the stream itself is not ended yet (the
    ingest waits for the rungs before it ends the stream). ``run`` returns why it
    stopped ("ended", "silent", "stopped"); it gives the session its last cut but does
    not end it. Raises FellBehind.
    """

    def __init__(
        self,
        index: LiveIndex,
        stream: str,
        session: TranscodeSession,
        *,
        start_msn: int,
        source_end: Callable[[], Awaitable[tuple[int, int] | None]],
        wait: float = WAIT_SECONDS,
        silence: float = SILENCE_SECONDS,
        max_behind: int = MAX_BEHIND_SEGMENTS,
        backlog_limit: int = BACKLOG_LIMIT,
    ) -> None:
        self.index = index
        self.stream = stream
        self.session = session
        self.start_msn = start_msn
        self.source_end = source_end
        self.wait = wait
        self.silence = silence
        self.max_behind = max_behind
        self.backlog_limit = backlog_limit
        self.parts = 0
        self._init: Init | None = None
        self._init_version: int | None = None
        self._anchor: tuple[int, float] | None = None
        self._pending: _Fed | None = None

    async def run(self, stop: asyncio.Event) -> str:
        msn, index = self.start_msn, 0
        progress = time.monotonic()
        while not stop.is_set():
            window = await self.index.snapshot(self.stream, SOURCE)
            if window is None:
                self._finish()
                return "gone"
            where, pdt = _locate(window, msn, index)
            if where is _Where.AVAILABLE:
                await self._feed(window, msn, index, pdt, stop)
                index += 1
                progress = time.monotonic()
                continue
            if where is _Where.SEGMENT_DONE:
                msn, index = msn + 1, 0
                continue
            if where is _Where.TRIMMED:
                raise FellBehind(f"segment {msn} left the source's window")
            if where is _Where.GAP:
                raise FellBehind(f"the source lists segment {msn} as a gap")
            if window.next_msn is not None and window.next_msn - msn > self.max_behind:
                raise FellBehind(f"segment {msn}, the source is at {window.next_msn}")
            if window.ended:
                self._finish()
                return "ended"
            if await self.index.wait_for_part(self.stream, SOURCE, msn, index, self.wait):
                continue
            end = await self.source_end()
            if end is not None and end < (msn, index):
                self._finish()
                return "ended"
            if time.monotonic() - progress > self.silence:
                self._finish()
                return "silent"
        return "stopped"

    async def _feed(
        self, window: RenditionWindow, msn: int, index: int, pdt: float | None,
        stop: asyncio.Event,
    ) -> None:
        if self._init is None or (index == 0 and window.init_version != self._init_version):
            data = await self.index.get_init(self.stream, SOURCE, window.init_version)
            if data is None:
                raise FellBehind("the source's init segment is gone")
            changed = self._init is not None
            self._init, self._init_version = read_init(data), window.init_version
            if changed:
                log.info("%s: the source's init segment changed at segment %d", self.stream, msn)
            headers = self._init.headers()
        else:
            headers = []
        data = await self.index.get_part(self.stream, SOURCE, msn, index)
        if data is None:
            raise FellBehind(f"part {msn}.{index} left the source's window")
        if index == 0 or self._anchor is None:
            # Program-date-time is the ingest's wall clock at the segment's first frame;
            # the frames after it are placed by media time.
            media = read_media(self._init, data, starts_at=pdt if pdt is not None else time.time())
            self._anchor = (media.start, media.packets[0].received_at if media.packets else 0.0)
        else:
            media = read_media(self._init, data, anchor=self._anchor)
        pending = self._pending
        if pending is not None:
            self._cut(pending, last=pending.msn != msn)
        # The inbox is the feeder thread's queue: nothing to await but its length.
        while self.session.backlog > self.backlog_limit and not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        session = self.session
        for header in headers:
            session.media(header, start=False)
        starts = index == 0 and media.independent
        for packet in media.packets:
            start = starts and packet.kind is TrackKind.VIDEO and packet.keyframe
            if start:
                starts = False
            session.media(packet, start=start)
        self._pending = _Fed(msn, index, media)
        self.parts += 1

    def _cut(self, fed: _Fed, *, last: bool) -> None:
        self.session.cut(Cut(fed.msn, fed.index, fed.media.start, fed.media.end, last))

    def _finish(self) -> None:
        """The source has ended: its last part's cut, which ends its segment."""
        if self._pending is not None:
            self._cut(self._pending, last=True)
            self._pending = None


def _locate(window: RenditionWindow, msn: int, index: int) -> tuple[_Where, float | None]:
    """Where part ``index`` of segment ``msn`` stands in the source's window, and the
    program-date-time of its segment when it is there."""
    if window.next_msn is None:
        return _Where.NOT_YET, None
    if msn == window.next_msn:
        if index < len(window.parts):
            return _Where.AVAILABLE, window.current_program_date_time
        return _Where.NOT_YET, None
    if msn > window.next_msn:
        return _Where.NOT_YET, None
    if msn < window.media_sequence:
        return _Where.TRIMMED, None
    segment = window.segments[msn - window.media_sequence]
    if segment.gap:
        return _Where.GAP, None
    if index < len(segment.parts):
        return _Where.AVAILABLE, segment.program_date_time
    return _Where.SEGMENT_DONE, None
