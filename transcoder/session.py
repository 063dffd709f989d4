"""One transcode session: a publish's ABR ladder, cut in step with its source rendition.

A session takes what the source rendition's packaging sees, in the ingest's order: the
publish's packets (`media`) and the cuts the source's packager made (`cut`, from its
``PartInfo.cut``). It decodes the source once and encodes every rung of the ladder
(`transcoder.engine.Transcoder`, sized by `ladder_for` on the source's first video
sequence header), and packages each rung with its own follower `Packager` fed the
source's cuts, so rung part N has the source's msn and part index. Each rung's libx264
output goes through an `AnnexBAdapter`; the source's AAC is copied into every rung (the
same audio packets are pushed to each rung's packager), so each rung is a complete muxed
rendition a player can switch to alone.

Threads: `media`, `cut` and `end` are called from the ingest's event loop and never
block: they put the item on a bounded inbox (``inbox_items``) and return. One feeder
thread per session takes it from there (decoding happens in it, encoding in the engine's
rung threads). A full inbox (the session fell behind real time) drops video until the
next key frame, and audio, counted in ``dropped``; memory never grows. A rung's packager
is touched by the feeder (audio, cuts) and by the rung's encoder thread (video), under
the rung's lock; its output is therefore called from those threads, in order.

No Django, no RTMP: the caller gives ``make_output(rung_name)`` (any `PackagerOutput`;
thread-safe, see above) and hears of the end through ``on_end``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from transcoder.cmaf.packager import Cut, InitInfo, Packager, PackagerOutput, PackagerSettings
from transcoder.codecs import CodecConfigError, parse_avc_config, parse_hevc_config
from transcoder.codecs.annexb import AnnexBAdapter
from transcoder.engine import EncodedPacket, SegmentStarts, Transcoder, TranscoderStats
from transcoder.ladder import Rung, ladder_for
from transcoder.packets import MediaPacket, TrackKind

log = logging.getLogger(__name__)

# About 5 s of a 30 fps publish with its audio: enough to ride out a slow second, small
# enough that a session that cannot keep up sheds instead of holding minutes of media.
INBOX_ITEMS = 600
# See `_RungPackaging.encoded`: more than the rounding of FLV's millisecond timestamps,
# far less than a frame.
_SLACK_MS = 2
_SIZE_PARSERS = {"avc": parse_avc_config, "hevc": parse_hevc_config}


@dataclass(frozen=True, slots=True)
class SessionStats:
    """What a session did: packets taken in and dropped (inbox full), cuts followed,
    the engine's counters, and per rung the packager's dropped packets and skipped cuts."""

    packets_in: int
    dropped: int
    cuts: int
    rungs: tuple[str, ...]
    engine: TranscoderStats | None
    packager_dropped: dict[str, int] = field(default_factory=dict)
    skipped_cuts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class _RungOutput:
    """A rung's output as the caller made it, with the rung's frame rate in its inits:
    libx264 signals the millisecond time base the engine feeds it (1000 "frames/s") in
    its SPS, which the packager would otherwise advertise as FRAME-RATE."""

    def __init__(self, output: PackagerOutput, frame_rate: float) -> None:
        self._output = output
        self.frame_rate = frame_rate
        self.part = output.part
        self.segment = output.segment
        self.end = output.end

    def init(self, info: InitInfo, data: bytes) -> None:
        self._output.init(replace(info, frame_rate=self.frame_rate), data)


class _RungPackaging:
    """A rung's Annex B adapter and follower packager, shared by two threads."""

    def __init__(self, rung: Rung, output: _RungOutput, settings: PackagerSettings) -> None:
        self.rung = rung
        self.adapter = AnnexBAdapter("avc")
        self.packager = Packager(output, settings, follow=True)
        self.lock = threading.Lock()
        self.failed = False

    def push(self, packet: MediaPacket) -> None:
        with self.lock:
            if not self.failed:
                self.packager.push(packet)

    def follow(self, cut: Cut) -> None:
        with self.lock:
            if not self.failed:
                self.packager.follow(cut)

    def encoded(self, packet: EncodedPacket, delay: int) -> None:
        # The rung's frames present at the source's presentation times; their decode
        # times are put about ``delay`` earlier, where the source's are (its B-frame
        # delay), as the cuts are in decode time. The source's millisecond timestamps
        # are rounded, so pts - delay lands up to 1 ms either side of the source frame's
        # dts; kept `_SLACK_MS` later, it is never before it and far from the next, so
        # each rung frame falls in the source frame's part.
        shift = max(delay - _SLACK_MS, 0)
        packets = self.adapter.packets(
            packet.data,
            timestamp=packet.pts - shift,
            composition_offset=shift,
            received_at=packet.received_at,
        )
        for each in packets:
            self.push(each)

    def end(self) -> None:
        with self.lock:
            self.failed = True  # nothing more goes in
            self.packager.end()

    def pause(self) -> None:
        """The publisher is gone for now: the last part and segment are emitted complete,
        the output stays open for another session to carry on (`TranscodeSession.end`)."""
        with self.lock:
            if not self.failed:
                self.failed = True  # nothing more goes in
                self.packager.pause()


_MEDIA, _CUT, _END = 0, 1, 2


class TranscodeSession:
    """The ladder of one publish (see the module's docstring).

    ``ladder`` is the configured ladder; the rungs used are ``ladder_for`` the source's
    size (never upscaled; a source no taller than every rung gets none and the session
    only passes time). ``settings`` are the source's packaging settings (the followers
    use the same part target). ``on_end(stats)`` is called from the feeder thread once
    every rung's packager has ended (its output's ``end`` called) or paused (`end` with
    ``pause``), or the session gave up.
    ``shed`` is the engine's: a rung that falls behind skips frames (live) rather than
    making the session wait (``False``: files and tests pushed faster than real time).

    ``starts`` joins a publish under way (a source-only broadcast upgraded to its ladder):
    the packager's cutting rule that has seen every packet of the publish so far, which
    the session carries on with, and whose clock the rungs' timestamps continue. Give the
    session the publish's current sequence headers first (audio, then video); decoding
    starts at the next key frame, and each rung's first segment at the first source
    segment that starts after it (its packager drops what comes before).
    """

    def __init__(
        self,
        ladder: Sequence[Rung],
        make_output: Callable[[str], PackagerOutput],
        settings: PackagerSettings,
        *,
        name: str = "session",
        on_end: Callable[[SessionStats], None] | None = None,
        inbox_items: int = INBOX_ITEMS,
        threads_per_rung: int = 1,
        preset: str = "veryfast",
        shed: bool = True,
        starts: SegmentStarts | None = None,
    ) -> None:
        self.name = name
        self._shed = shed
        self._ladder = tuple(ladder)
        self._make_output = make_output
        self._settings = settings
        self._on_end = on_end
        self._threads_per_rung = threads_per_rung
        self._preset = preset
        self._inbox: queue.Queue[tuple[int, object, bool]] = queue.Queue(inbox_items)
        # The packager's cutting rule, run on every packet in arrival order before the
        # inbox, so a packet dropped there never misplaces a rung's IDR.
        self._starts = starts or SegmentStarts(settings)
        # Joining: the packager's clocks as they stand before our first packet. Our
        # packets are put on them here, so the engine and the rungs' packagers (whose own
        # clocks start where they first see a packet) get the source's media times even
        # when the publisher's clock jumped before we joined.
        self._clocks = (
            {kind: clock.copy() for kind, clock in starts.clocks.items()}
            if starts is not None else None
        )
        self._skipping_video = False
        self._ending = False
        self._engine: Transcoder | None = None
        self._rungs: dict[str, _RungPackaging] = {}
        self._audio_header: MediaPacket | None = None
        self._start = False  # whether the packet being pushed starts a segment
        # The source's B-frame delay (ms): its first key frame's composition offset.
        self._delay = -1
        self._error: str | None = None
        self.packets_in = self.dropped = self.cuts = 0
        self._thread = threading.Thread(target=self._run, name=f"transcode-{name}", daemon=True)
        self._thread.start()

    # -- the ingest's side (never blocks) -----------------------------------------------

    def media(self, packet: MediaPacket, start: bool | None = None) -> None:
        """One packet of the publish, as the source's packager got it. Its data is copied
        (the ingest may reuse the buffer). ``start`` says whether it starts a source
        segment, when the caller knows (it read the source's parts); else the packager's
        cutting rule decides."""
        if self._ending:
            return
        self.packets_in += 1
        rule = self._starts(packet)
        start = rule if start is None else start
        timestamp = packet.timestamp
        if self._clocks is not None and not packet.sequence_header:
            timestamp = self._clocks[packet.kind].correct(timestamp)  # dropped or not
        video = packet.kind is TrackKind.VIDEO and not packet.sequence_header
        if video and self._skipping_video:
            if not packet.keyframe:
                self.dropped += 1
                return
            self._skipping_video = False
        copied = MediaPacket(
            packet.kind, packet.codec, timestamp, bytes(packet.data), packet.keyframe,
            packet.sequence_header, packet.composition_offset, packet.received_at,
        )
        if not self._offer((_MEDIA, copied, start)):
            self.dropped += 1
            if video:
                self._skipping_video = True  # the decoder needs a key frame after a gap

    def cut(self, cut: Cut) -> None:
        """The source packager's cut of its newest part."""
        if self._ending:
            return
        if not self._offer((_CUT, cut, False)):
            # A lost cut costs the rungs that part; they line up again at a segment.
            log.warning("%s: transcode inbox full, cut %d.%d lost", self.name, cut.msn,
                        cut.index)

    def end(self, *, pause: bool = False) -> None:
        """The publish ended: flush and end every rung. With ``pause`` (the publisher
        dropped, and may reconnect within the grace) each rung's last part and segment are
        emitted complete but its output is not ended: a session joining the reconnected
        publish (``starts`` = this one's `segment_starts`, resumed) carries it on. Returns
        at once; the session ends in its thread and then calls ``on_end``."""
        if self._ending:
            return
        self._ending = True
        # The end must get in even behind a full inbox: it waits for room in a helper
        # thread rather than in the caller's (an event loop).
        threading.Thread(target=self._inbox.put, args=((_END, pause, False),),
                         name=f"transcode-{self.name}-end", daemon=True).start()

    @property
    def segment_starts(self) -> SegmentStarts:
        """The cutting rule this session has run over every packet it was given (on the
        caller's side of the inbox): what a session carrying on after it joins with."""
        return self._starts

    @property
    def backlog(self) -> int:
        """Items waiting in the inbox: a caller that can wait (one reading the source from
        the live index) keeps this low instead of letting the inbox drop."""
        return self._inbox.qsize()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the session's thread; whether it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stats(self) -> SessionStats:
        engine = self._engine
        return SessionStats(
            packets_in=self.packets_in,
            dropped=self.dropped,
            cuts=self.cuts,
            rungs=tuple(self._rungs),
            engine=engine.stats() if engine is not None else None,
            packager_dropped={n: r.packager.dropped for n, r in self._rungs.items()},
            skipped_cuts={n: r.packager.skipped_cuts for n, r in self._rungs.items()},
            error=self._error,
        )

    def _offer(self, item: tuple[int, object, bool]) -> bool:
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            return False
        return True

    # -- the feeder thread ----------------------------------------------------------------

    def _run(self) -> None:
        pause = False
        try:
            while True:
                kind, value, start = self._inbox.get()
                if kind == _END:
                    pause = bool(value)
                    break
                if self._error is not None:
                    continue  # failed: drain until the end comes
                try:
                    if kind == _MEDIA:
                        self._media(value, start)  # type: ignore[arg-type]
                    else:
                        self._cut(value)  # type: ignore[arg-type]
                except Exception as error:
                    log.exception("%s: transcoding stopped", self.name)
                    self._error = f"{type(error).__name__}: {error}"
                    self._close()
            self._finish(pause)
        finally:
            if self._on_end is not None:
                try:
                    self._on_end(self.stats())
                except Exception:
                    log.exception("%s: on_end failed", self.name)

    def _media(self, packet: MediaPacket, start: bool) -> None:
        if packet.kind is TrackKind.AUDIO:
            if packet.sequence_header:
                self._audio_header = packet
            for rung in self._rungs.values():
                rung.push(packet)
            return
        if packet.sequence_header and self._engine is None:
            self._open(packet)
        if self._engine is not None:
            if self._delay < 0 and packet.keyframe and not packet.sequence_header:
                # Fixed for the session, so the rungs' decode times never go back.
                self._delay = packet.composition_offset
            self._start = start
            self._engine.push(packet)

    def _open(self, header: MediaPacket) -> None:
        """The ladder for the source's size, its packagers and the engine."""
        parse = _SIZE_PARSERS.get(header.codec)
        if parse is None:
            raise CodecConfigError(f"video codec {header.codec!r} cannot be transcoded")
        config = parse(bytes(header.data))
        if not config.width or not config.height:
            raise CodecConfigError("the source's sequence header gives no picture size")
        rungs = ladder_for(config.width, config.height, self._ladder)
        log.info("%s: source %dx%d, rungs %s", self.name, config.width, config.height,
                 ", ".join(r.name for r in rungs) or "none (nothing below the source)")
        # A rung's frame rate is its cap, or the source's when lower (when it says).
        source_rate = float(config.frame_rate) if config.frame_rate else None
        for rung in rungs:
            rate = min(rung.fps, source_rate) if source_rate else rung.fps
            output = _RungOutput(self._make_output(rung.name), rate)
            packaging = _RungPackaging(rung, output, self._settings)
            if self._audio_header is not None:
                packaging.push(self._audio_header)
            self._rungs[rung.name] = packaging
        if rungs:
            self._engine = Transcoder(
                rungs,
                self._deliver,
                is_segment_start=lambda _packet: self._start,
                on_error=self._rung_failed,
                threads_per_rung=self._threads_per_rung,
                preset=self._preset,
                shed=self._shed,
            )

    def _cut(self, cut: Cut) -> None:
        self.cuts += 1
        for rung in self._rungs.values():
            rung.follow(cut)

    def _deliver(self, packet: EncodedPacket) -> None:
        self._rungs[packet.rung].encoded(packet, max(self._delay, 0))

    def _rung_failed(self, name: str, error: BaseException) -> None:
        # The engine has logged it and stopped the rung; its rendition ends here.
        rung = self._rungs[name]
        try:
            rung.end()
        except Exception:
            log.exception("%s: rung %s could not be ended", self.name, name)

    def _finish(self, pause: bool) -> None:
        engine = self._engine
        if engine is not None and self._error is None:
            try:
                engine.end()  # every frame pushed is encoded and delivered
            except Exception:
                log.exception("%s: flushing the transcoder failed", self.name)
                engine.close()
        self._end_rungs(pause=pause and self._error is None)

    def _close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._end_rungs()

    def _end_rungs(self, *, pause: bool = False) -> None:
        for name, rung in self._rungs.items():
            if rung.failed:
                continue
            try:
                if pause:
                    rung.pause()
                else:
                    rung.end()
            except Exception:
                log.exception("%s: rung %s failed at its end", self.name, name)
