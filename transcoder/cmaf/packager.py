"""The CMAF packager: one publish (video + audio muxed) in, LL-HLS parts and segments out.

Passthrough: samples are copied into fMP4 fragments as the publisher coded them; nothing
is decoded. Pure: no clocks, no I/O, no threads. Every cut is decided from media
timestamps alone, so the same packets always give the same bytes.

How the stream is cut (draft-pantos-hls-rfc8216bis 4.4.4.9, PROTOCOL-NOTES "LL-HLS"):
- The *driving* track is the video (the audio when a publish has no video). Parts and
  segments are cut between its samples, by decode time; the audio follows: an audio
  sample goes into the part whose span holds its decode time.
- A segment starts on a video key frame: at the first key frame at least
  ``min_segment_duration`` after the segment's start (every key frame, with OBS's 2 s GOP).
  A GOP longer than ``max_segment_duration`` is cut anyway (see PackagerSettings). Without
  video, segments are cut every ``audio_only_segment_duration``.
- Parts are filled greedily: a sample joins the open part if the part then stays within
  the part target; otherwise the part is closed at that sample's decode time. So every
  part is <= the target, and > target minus one frame (>= 85 % when frames last at most
  15 % of the target: 30 fps allows targets from 0.222 s). A part is also closed as soon
  as a frame arrives that would, by the previous frame's duration, not fit while the part
  already holds >= 85 % of the target: one frame less latency, never a shorter part than
  the rule allows (the previous frame's duration is read as the shorter of the last two:
  millisecond timestamps make 30 fps frames 33 or 34 ms). A segment's last part ends
  where the next key frame starts, and is exempt from the 85 %.
- A sample's duration is the distance to the next sample of its track, so a part is
  closed only when the sample after its last one has arrived, and it is emitted only
  once the audio has caught up with its end (or the video has run ``max_audio_wait``
  beyond it): a part is never emitted before all its samples are in it.
- A change of sequence headers (new encoder settings, a track appearing) starts a new
  *generation* at the next key frame: the running segment ends there, a new init segment
  is written, and the next segment carries ``discontinuity``.
- Timelines: video in 90 kHz ticks (ms x 90), audio at its sample rate, with AAC frames
  laid back to back (the ms timestamps only place them); a publisher's clock jumping
  (back > 1 s, forward > 5 s) is smoothed over so decode times always increase.

Following (a transcoded rendition, ``Packager(..., follow=True)``): the cuts are not
decided here but given, one `Cut` per part of a *leader* (the source's packager publishes
them as ``PartInfo.cut``), through `Packager.follow`. A part of the follower starts at its
first frame at or after the leader's part start and carries the leader's msn and part
index, so every rendition lines up one for one with the source; a part's duration differs
from the leader's by less than one of the follower's frames. A frame is placed only once
the cut it falls in is known: frames that run ahead of the leader's cuts wait (bounded).
The follower's timeline must be the leader's (same timestamps for the same instants).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from transcoder.cmaf.fmp4 import (
    VIDEO_CODECS,
    VIDEO_TIMESCALE,
    Sample,
    TrackFormat,
    UnsupportedCodec,
    audio_format,
    video_format,
    write_fragment,
    write_init,
)
from transcoder.metadata import StreamMetadata
from transcoder.packets import MediaPacket, TrackKind
from transcoder.timeline import Timeline

log = logging.getLogger(__name__)

_VIDEO_TRACK_ID = 1
_AUDIO_TRACK_ID = 2
# Each kind's timestamps go through a `Timeline` (transcoder.timeline): a publisher
# restarting its clock continues where it was. Smaller steps back are glitches the track
# absorbs (decode times forced to increase).
# Audio held while no track can take it (before the first key frame, during a codec
# change) and audio waiting for a video that stopped: bounded, oldest dropped first.
_MAX_HELD_AUDIO = 500
_MAX_WAITING_AUDIO = 1_000
# Video of a follower waiting for the leader's cuts: 10 s at 60 fps. A leader that falls
# this far behind its follower has stopped.
_MAX_WAITING_VIDEO = 600
_DEFAULT_FRAME_RATE = 30


class PackagerError(Exception):
    """The stream cannot be packaged (an unsupported video codec, an unreadable video
    sequence header, media after ``end()``). The packager should be dropped."""


# LL-HLS PART-TARGET, seconds: the one value for every rendition, so they cut alike. A
# viewer's latency is about PART-HOLD-BACK (two to three parts) plus the encoder's, so the
# part sets it: 0.2 s keeps glass to glass under a second (tests/bench delivery, "glass").
# 6 frames at 30 fps span exactly 200 ms in RTMP's whole milliseconds (33 + 33 + 34 ms
# twice), 5 at 25 fps and 12 at 60 fps too; at 24 fps parts hold 4 frames (167 ms).
PART_TARGET = 0.2


@dataclass(frozen=True, slots=True)
class PackagerSettings:
    """Durations in seconds.

    ``part_target`` is the LL-HLS PART-TARGET parts are cut to. ``min_segment_duration``
    keeps a publisher that sends key frames too often from making tiny segments;
    ``max_segment_duration`` bounds the segments of one that sends too few (x264's
    default 250-frame GOP, intra refresh): past it, a segment ends at the next part
    boundary and the next one starts without a key frame (its first part is not
    independent), so a publish never holds more than that much in memory.
    ``audio_only_segment_duration`` cuts segments of a publish without video.
    ``max_audio_wait`` (media time) bounds how long a part waits for audio that is late
    or missing. ``first_msn`` is the media sequence number of the first segment.
    """

    part_target: float = PART_TARGET
    min_segment_duration: float = 1.0
    max_segment_duration: float = 10.0
    audio_only_segment_duration: float = 2.0
    max_audio_wait: float = 0.5
    first_msn: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.part_target <= 10:
            raise ValueError(f"part_target {self.part_target} s is not in (0, 10]")
        if self.min_segment_duration < 0 or self.max_audio_wait < 0:
            raise ValueError("durations cannot be negative")
        if self.audio_only_segment_duration < self.part_target:
            raise ValueError("audio_only_segment_duration is shorter than a part")
        if self.max_segment_duration < max(self.min_segment_duration, self.part_target):
            raise ValueError("max_segment_duration is shorter than the minimum or a part")
        if self.first_msn < 0:
            raise ValueError("first_msn cannot be negative")


@dataclass(frozen=True, slots=True)
class InitInfo:
    """What an init segment holds. ``generation`` counts init segments of the publish from
    0; a new one follows a change of sequence headers. ``codecs`` is the HLS CODECS value
    (RFC 6381). ``frame_rate`` (frames/s) and ``bandwidth_estimate`` (bits/s, from the
    publisher's onMetaData) are None when unknown."""

    generation: int
    codecs: str
    width: int | None
    height: int | None
    frame_rate: float | None
    bandwidth_estimate: int | None


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a packager cut one part: part ``index`` of segment ``msn`` spans media time
    [``start``, ``end``) in 90 kHz ticks of the publish's timeline; ``last`` says it ends
    its segment. What a follower (`Packager.follow`) needs to cut the same part."""

    msn: int
    index: int
    start: int
    end: int
    last: bool


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One LL-HLS part (EXT-X-PART). ``msn`` is its segment's media sequence number and
    ``index`` its 0-based place in that segment. ``duration`` is in seconds (media time).
    ``independent`` says it starts with a key frame (INDEPENDENT=YES).
    ``program_date_time`` is the wall clock (Unix seconds) at which the ingest received
    the part's first frame. ``cut`` is where it was cut, for followers (None only in
    values built by hand)."""

    msn: int
    index: int
    duration: float
    independent: bool
    program_date_time: float
    cut: Cut | None = None


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A complete segment: its parts, in order, concatenated. ``duration`` is in seconds
    and is the sum of its parts'. ``program_date_time`` is the wall clock (Unix seconds)
    at which the ingest received its first frame; it starts with a key frame
    (``parts[0].independent``) unless the publisher's GOP outran ``max_segment_duration``.
    ``discontinuity`` is true for the first
    segment after a new init segment (EXT-X-DISCONTINUITY); ``generation`` names that
    init segment (InitInfo.generation)."""

    msn: int
    duration: float
    program_date_time: float
    parts: tuple[PartInfo, ...]
    discontinuity: bool
    generation: int


class PackagerOutput(Protocol):
    """Where a packager's output goes. Called synchronously from ``Packager.push`` and
    ``Packager.end``, in stream order: ``init`` before the first part that needs it; a
    segment's last ``part`` immediately followed by its ``segment``; ``end`` last.

    The ``data`` passed is a new ``bytes`` object that the receiver owns: keep it, store
    it, no copy needed. A segment's data is exactly its parts' data concatenated, a run of
    moof+mdat fragments playable after the init segment of its generation. An exception
    raised here propagates out of the packager, which is then unusable."""

    def init(self, info: InitInfo, data: bytes) -> None: ...

    def part(self, info: PartInfo, data: bytes) -> None: ...

    def segment(self, info: SegmentInfo, data: bytes) -> None: ...

    def end(self) -> None: ...


class _Track:
    """One track of a generation: a sample waiting for its duration (``pending``), and
    finished samples waiting for a part (``ready``, audio only). Times in ticks."""

    __slots__ = (
        "fallback_duration",
        "format",
        "last_dts",
        "last_duration",
        "latest",
        "pending",
        "previous_duration",
        "ready",
    )

    def __init__(self, track: TrackFormat) -> None:
        self.format = track
        self.pending: Sample | None = None
        self.ready: deque[Sample] = deque()
        self.last_dts: int | None = None
        self.last_duration: int | None = None
        self.previous_duration: int | None = None
        self.latest: int | None = None  # decode time of the newest sample received
        if track.frame_duration:
            self.fallback_duration = track.frame_duration
        elif track.kind is TrackKind.VIDEO:
            rate = track.frame_rate or _DEFAULT_FRAME_RATE
            self.fallback_duration = max(1, round(track.timescale / rate))
        else:
            self.fallback_duration = track.timescale // 50  # 20 ms, Opus's usual frame

    def push(self, sample: Sample) -> Sample | None:
        """Take the next sample (decode order); return the previous one, now with its
        duration, or None. Decode times are forced to increase."""
        last = self.last_dts
        if last is not None and sample.dts <= last:
            sample.dts = last + 1
        previous = self.pending
        if previous is not None:
            previous.duration = sample.dts - previous.dts
            self.previous_duration = self.last_duration
            self.last_duration = previous.duration
        self.pending = sample
        self.last_dts = self.latest = sample.dts
        return previous

    def finish_pending(self, until: int | None) -> Sample | None:
        """End the pending sample: it lasts until ``until`` (ticks) when given and later
        than it, else its estimated duration. Returns it, or None."""
        sample = self.pending
        if sample is None:
            return None
        self.pending = None
        estimate = self.last_duration or self.fallback_duration
        if until is not None and until > sample.dts:
            sample.duration = until - sample.dts
        else:
            sample.duration = estimate
        self.last_duration = sample.duration
        return sample

    def estimate(self) -> int:
        return self.last_duration or self.fallback_duration

    def short_estimate(self) -> int:
        """The shorter of the last two durations: millisecond timestamps make 30 fps
        frames last 33 or 34 ms, and guessing long would close parts a frame early."""
        last, previous = self.last_duration, self.previous_duration
        if last is None:
            return self.fallback_duration
        return last if previous is None or last < previous else previous


class _Generation:
    """Tracks sharing one init segment; video drives when there is one."""

    __slots__ = ("audio", "driver", "number", "start_ms", "video")

    def __init__(
        self, number: int, start_ms: int, video: _Track | None, audio: _Track | None
    ) -> None:
        self.number = number
        self.start_ms = start_ms
        self.video = video
        self.audio = audio
        driver = video or audio
        assert driver is not None
        self.driver: _Track = driver


class _Segment:
    __slots__ = (
        "datas",
        "discontinuity",
        "generation",
        "msn",
        "next_index",
        "parts",
        "pdt",
        "start",
    )

    def __init__(
        self, msn: int, start: int, pdt: float, discontinuity: bool, generation: int
    ) -> None:
        self.msn = msn
        self.start = start
        self.pdt = pdt
        self.discontinuity = discontinuity
        self.generation = generation
        self.next_index = 0
        self.parts: list[PartInfo] = []
        self.datas: list[bytes] = []


class _Part:
    __slots__ = ("end", "final", "index", "samples", "segment", "start")

    def __init__(self, segment: _Segment, index: int, start: int) -> None:
        self.segment = segment
        self.index = index
        self.start = start
        self.end = start
        self.final = False
        self.samples: list[Sample] = []


class _HeldAudio:
    __slots__ = ("data", "ms", "received_at")

    def __init__(self, data: bytes, ms: int, received_at: float) -> None:
        self.data = data
        self.ms = ms
        self.received_at = received_at


class Packager:
    """Packages one publish into CMAF parts and segments for one rendition (the source).

    Feed it with ``metadata`` (optional) and ``push`` in arrival order, then ``end``.
    Sequence headers must come before the media they describe; media before its
    sequence header, and video before the first key frame, are dropped. Raises
    PackagerError (see there) and whatever the output raises. Not thread-safe.
    """

    def __init__(
        self,
        output: PackagerOutput,
        settings: PackagerSettings | None = None,
        *,
        follow: bool = False,
    ) -> None:
        self._output = output
        self._settings = settings = settings or PackagerSettings()
        self._headers: dict[TrackKind, tuple[str, bytes]] = {}
        self._ignored_audio: str | None = None
        self._metadata = StreamMetadata()
        self._clocks = {TrackKind.VIDEO: Timeline(), TrackKind.AUDIO: Timeline()}
        self._gen: _Generation | None = None
        self._generations = 0
        self._next_msn = settings.first_msn
        self._sequence = 1  # mfhd sequence numbers, increasing over the publish
        self._discontinuity = False
        self._segment: _Segment | None = None
        self._part: _Part | None = None
        self._closed: deque[_Part] = deque()
        self._held: deque[_HeldAudio] = deque()
        self._ended = False
        self._video_stale = self._audio_stale = False
        self.dropped = 0  # packets that could not be packaged (before a key frame, ...)
        # Per-generation constants, in the driving track's ticks.
        self._part_ticks = 0
        self._min_part_ticks = 0
        self._min_segment_ticks = 0
        self._max_segment_ticks = 0
        self._audio_wait_ticks = 0
        self._without_key = False  # the next segment may start on a non-key frame
        self._max_composition_offset = 0  # ms, over the publish's video
        # Following a leader's cuts (see the module's docstring).
        self._following = follow
        self._cuts: deque[Cut] = deque()
        self._cut: Cut | None = None  # the open part's
        self._last_cut: Cut | None = None  # the newest given
        self._waiting: deque[MediaPacket] = deque()  # video ahead of the known cuts
        self._followed = False  # a segment has been started on a leader's cut
        self.skipped_cuts = 0  # leader parts no frame of ours fell in (misaligned after)
        # Followers: the first video composition offset, and whether another was seen
        # (frames reordered: B-frames). See `_on_cut`.
        self._offset: int | None = None
        self._reordered = False

    @property
    def output(self) -> PackagerOutput:
        """Where this packager writes (what it was made with)."""
        return self._output

    # -- input --------------------------------------------------------------------------

    def metadata(self, metadata: StreamMetadata) -> None:
        """The publisher's onMetaData (`transcoder.metadata.read_metadata`); a later one
        adds to an earlier one. Width, height, frame rate and data rates fill in what
        sequence headers leave unknown."""
        self._metadata = self._metadata.updated(metadata)

    def push(self, packet: MediaPacket) -> None:
        """Take one packet. ``packet.data`` is copied if kept; the packet is not."""
        if self._ended:
            raise PackagerError("media after end()")
        if self._following and packet.kind is TrackKind.VIDEO and (
            self._waiting or self._ahead_of_cuts()
        ):
            self._wait(packet)
            return
        self._take(packet)

    def follow(self, cut: Cut) -> None:
        """The leader's next cut (follow mode only), in the leader's order. Video that
        waited for it is packaged now. Raises PackagerError for a cut out of order."""
        if not self._following:
            raise PackagerError("follow() on a packager that cuts by itself")
        last = self._last_cut
        if cut.end <= cut.start or (last is not None and (
            (cut.msn, cut.index) <= (last.msn, last.index) or cut.start < last.end
        )):
            raise PackagerError(f"cut {cut.msn}.{cut.index} does not follow the one before")
        self._last_cut = cut
        self._cuts.append(cut)
        while self._waiting and not self._ahead_of_cuts():
            self._take(self._waiting.popleft())

    def _take(self, packet: MediaPacket) -> None:
        if packet.sequence_header:
            self._sequence_header(packet)
        elif packet.kind is TrackKind.VIDEO:
            self._video(packet)
        else:
            self._audio(packet)

    def end(self) -> None:
        """Flush: the last part and segment are emitted complete (the last samples get
        their track's usual duration), then ``output.end()``. Idempotent."""
        if self._ended:
            return
        self._ended = True
        while self._waiting:  # the leader has ended too: no more cuts are coming
            self._take(self._waiting.popleft())
        if self._gen is not None:
            self._finish_generation(None)
        self._output.end()

    def pause(self) -> None:
        """The publisher is gone but may come back (`resume`): the last part and segment
        are emitted complete now, as at `end`, without ending the output. Idempotent."""
        if self._ended:
            raise PackagerError("pause() after end()")
        if self._gen is not None:
            self._finish_generation(None, keep=True)

    def resume(self) -> None:
        """A new connection continues this publish (a reconnect within the grace period):
        its clock restarts wherever the encoder's does, so each track's next timestamp is
        taken to follow the last one, and the media sequence carries on from a new
        segment at its first key frame, in the same playlist. New sequence headers that
        differ start a new generation (init segment, discontinuity), as mid-publish."""
        if self._ended:
            raise PackagerError("resume() after end()")
        # B-frames: the last connection's frames present up to its largest composition
        # offset after their decode times; the new ones start after that, so no two
        # frames share a presentation time. Audio moves with video, keeping lip sync.
        for clock in self._clocks.values():
            clock.rebase = self._max_composition_offset

    # -- sequence headers ---------------------------------------------------------------

    def _sequence_header(self, packet: MediaPacket) -> None:
        kind, codec, record = packet.kind, packet.codec, bytes(packet.data)
        if self._headers.get(kind) == (codec, record):
            return  # some encoders repeat their headers
        try:
            if kind is TrackKind.VIDEO:
                if codec not in VIDEO_CODECS:
                    raise UnsupportedCodec(f"video codec {codec!r} cannot be packaged")
                video_format(_VIDEO_TRACK_ID, codec, record)  # fail now on a bad record
            else:
                audio_format(_AUDIO_TRACK_ID, codec, record)
        except UnsupportedCodec as error:
            if kind is TrackKind.VIDEO:
                raise PackagerError(str(error)) from error
            # The picture is worth keeping without the sound.
            if self._ignored_audio != codec:
                log.warning("packaging video only: %s", error)
            self._ignored_audio = codec
            self._headers.pop(kind, None)
        else:
            self._ignored_audio = None
            self._headers[kind] = (codec, record)
        self._refresh()
        gen = self._gen
        if gen is not None and gen.video is None and self._audio_stale:
            # Audio drives: the new configuration can start with the next audio frame.
            self._finish_generation(None)

    def _refresh(self) -> None:
        """Note which tracks of the running generation no longer match their sequence
        headers: a new generation starts at the next key frame."""
        gen = self._gen
        self._video_stale = gen is not None and self._stale(gen.video, TrackKind.VIDEO)
        self._audio_stale = gen is not None and self._stale(gen.audio, TrackKind.AUDIO)

    def _stale(self, track: _Track | None, kind: TrackKind) -> bool:
        header = self._headers.get(kind)
        if track is None:
            return header is not None
        return header is None or header != (track.format.codec, track.format.record)

    # -- media --------------------------------------------------------------------------

    def _video(self, packet: MediaPacket) -> None:
        if TrackKind.VIDEO not in self._headers:
            self.dropped += 1
            return
        ms = self._clocks[TrackKind.VIDEO].correct(packet.timestamp)
        gen = self._gen
        if gen is None or self._video_stale or self._audio_stale:
            if packet.keyframe:
                gen = self._start_generation(ms, packet.data)
            elif gen is None or self._video_stale:
                self.dropped += 1  # undecodable without its key frame
                return
        track = gen.video
        assert track is not None
        if packet.composition_offset > self._max_composition_offset:
            self._max_composition_offset = packet.composition_offset
        dts = ms * 90
        if self._following:
            if self._offset is None:
                self._offset = packet.composition_offset
            elif packet.composition_offset != self._offset:
                self._reordered = True
            if not self._reordered:
                dts = self._on_cut(dts, track)
        sample = Sample(
            bytes(packet.data),
            dts,
            packet.keyframe,
            packet.composition_offset * 90,
            packet.received_at,
        )
        finished = track.push(sample)
        if finished is not None:
            self._place(finished)
        self._arrived(sample)
        self._drain()

    def _audio(self, packet: MediaPacket) -> None:
        if TrackKind.AUDIO not in self._headers:
            self.dropped += 1
            return
        ms = self._clocks[TrackKind.AUDIO].correct(packet.timestamp)
        gen = self._gen
        if gen is None:
            # A follower's cuts are in video time: its audio always waits for the video.
            if TrackKind.VIDEO in self._headers or self._following:
                self._hold(packet, ms)  # until the first key frame
                return
            gen = self._start_generation(ms, None)
        elif self._audio_stale:
            self._hold(packet, ms)  # until the next key frame starts the new generation
            return
        track = gen.audio
        assert track is not None
        self._audio_sample(gen, track, bytes(packet.data), ms, packet.received_at)
        self._drain()

    def _audio_sample(
        self, gen: _Generation, track: _Track, data: bytes, ms: int, received_at: float
    ) -> None:
        if ms < gen.start_ms and gen.driver is not track:
            self.dropped += 1  # before the generation's first key frame
            return
        fmt = track.format
        dts = ms * fmt.timescale // 1000
        last = track.last_dts
        frame = fmt.frame_duration
        if frame and last is not None and abs(dts - last - frame) <= frame >> 1:
            # Millisecond timestamps jitter around the true sample count (21/21/22 ms
            # for 1024 samples at 48 kHz): keep AAC frames back to back.
            dts = last + frame
        sample = Sample(data, dts, True, 0, received_at)
        finished = track.push(sample)
        if gen.driver is track:
            if finished is not None:
                self._place(finished)
            self._arrived(sample)
        elif finished is not None:
            track.ready.append(finished)
            if len(track.ready) > _MAX_WAITING_AUDIO:
                track.ready.popleft()  # the video stopped; the audio cannot wait forever
                self.dropped += 1

    def _hold(self, packet: MediaPacket, ms: int) -> None:
        self._held.append(_HeldAudio(bytes(packet.data), ms, packet.received_at))
        if len(self._held) > _MAX_HELD_AUDIO:
            self._held.popleft()
            self.dropped += 1

    # -- generations --------------------------------------------------------------------

    def _start_generation(self, start_ms: int, keyframe: bytes | memoryview | None) -> _Generation:
        """Start a generation at ``start_ms``: finish the running one there, write the
        init segment, and give held audio to the new tracks."""
        old = self._gen
        if old is not None:
            self._finish_generation(start_ms)
        video = audio = None
        if (header := self._headers.get(TrackKind.VIDEO)) is not None and keyframe is not None:
            if (
                old is not None
                and old.video is not None
                and not self._stale(old.video, TrackKind.VIDEO)
            ):
                video = old.video
            else:
                size_hint = self._metadata.size
                fmt = video_format(_VIDEO_TRACK_ID, header[0], header[1], keyframe, size_hint)
                video = _Track(fmt)
        if (header := self._headers.get(TrackKind.AUDIO)) is not None:
            if (
                old is not None
                and old.audio is not None
                and not self._stale(old.audio, TrackKind.AUDIO)
            ):
                audio = old.audio
            else:
                audio = _Track(audio_format(_AUDIO_TRACK_ID, header[0], header[1]))
        # Every init segment after the first starts a discontinuity.
        self._discontinuity = self._generations > 0
        self._without_key = False
        self._generations += 1
        gen = self._gen = _Generation(self._generations - 1, start_ms, video, audio)
        self._refresh()
        driver = gen.driver.format
        settings = self._settings
        # Rounded down, so that a part of part_ticks never reads longer than the target
        # (the epsilon undoes binary fractions: 0.333 * 90000 = 29969.999...).
        self._part_ticks = math.floor(settings.part_target * driver.timescale + 1e-6)
        self._min_part_ticks = math.ceil(0.85 * self._part_ticks)
        segment = settings.min_segment_duration if video else settings.audio_only_segment_duration
        self._min_segment_ticks = round(segment * driver.timescale)
        self._max_segment_ticks = round(settings.max_segment_duration * driver.timescale)
        self._audio_wait_ticks = round(settings.max_audio_wait * driver.timescale)
        formats = [track.format for track in (video, audio) if track is not None]
        self._output.init(self._init_info(gen.number, formats), write_init(formats))
        if audio is not None and audio is not (old.audio if old else None):
            held, self._held = self._held, deque()
            for item in held:
                self._audio_sample(gen, audio, item.data, item.ms, item.received_at)
        else:
            self._held.clear()
        return gen

    def _finish_generation(self, until_ms: int | None, *, keep: bool = False) -> None:
        """Close the running generation's last segment and emit everything it holds.
        ``until_ms`` is where the next generation starts (None at the end of the publish):
        audio from there on stays with the audio track for the next generation. With
        ``keep`` the generation stays the running one (`pause`)."""
        gen = self._gen
        assert gen is not None
        driver = gen.driver
        until_driver = None
        if until_ms is not None and driver is gen.video:
            until_driver = until_ms * driver.format.timescale // 1000
        elif self._following and driver is gen.video and (cut := self._cut) is not None:
            # A follower's last frame ends no later than the leader's part it is in.
            pending = driver.pending
            if pending is not None and pending.dts < cut.end:
                until_driver = min(pending.dts + driver.estimate(), cut.end)
        finished = driver.finish_pending(until_driver)
        if finished is not None:
            self._place(finished)
        part = self._part
        if part is not None and part.samples:
            last = part.samples[-1]
            self._close_part(last.dts + last.duration, final=True)
        self._segment = self._part = None
        follower = gen.audio if gen.audio is not driver else None
        audio_until = None
        if follower is not None:
            if until_ms is not None:
                audio_until = until_ms * follower.format.timescale // 1000
            pending = follower.pending
            if pending is not None and (audio_until is None or pending.dts < audio_until):
                cap = pending.dts + follower.estimate()
                if audio_until is not None:
                    cap = min(cap, audio_until)
                finished = follower.finish_pending(cap)
                if finished is not None:
                    follower.ready.append(finished)
        while self._closed:
            part = self._closed.popleft()
            if self._closed:
                self._emit(part, self._follower_limit(part))
            else:
                self._emit(part, audio_until, last=True)
        if not keep:
            self._gen = None
            self._refresh()

    # -- cutting ------------------------------------------------------------------------

    def _place(self, sample: Sample) -> None:
        """Put a finished sample of the driving track into the open part (opening the
        segment and part as needed, closing a full part)."""
        if self._following:
            self._place_following(sample)
            return
        segment = self._segment
        if segment is None:
            if not sample.sync and not self._without_key:
                self.dropped += 1
                return
            self._without_key = False
            gen = self._gen
            assert gen is not None
            segment = self._segment = _Segment(
                self._next_msn, sample.dts, sample.received_at, self._discontinuity, gen.number
            )
            self._next_msn += 1
            self._discontinuity = False
        part = self._part
        if part is None:
            part = self._open_part(segment, sample.dts)
        elif part.samples and sample.dts + sample.duration - part.start > self._part_ticks:
            self._close_part(sample.dts, final=False)
            part = self._open_part(segment, sample.dts)
        part.samples.append(sample)

    # -- following ----------------------------------------------------------------------

    def _ahead_of_cuts(self) -> bool:
        """Whether the next video packet must wait: it would place the pending frame,
        and no cut known yet holds that frame."""
        gen = self._gen
        pending = gen.video.pending if gen is not None and gen.video is not None else None
        if pending is None:
            return False
        last = self._last_cut
        return last is None or pending.dts >= last.end  # both in 90 kHz ticks

    def _on_cut(self, dts: int, track: _Track) -> int:
        """A frame that would start the leader's next part late starts it on time: when
        frames before it were shed (or the millisecond clocks round apart), it is moved
        back to the cut's start, so the part before ends exactly where the leader's did
        instead of running a frame over the part target. It is shown that much earlier:
        the frame before it would otherwise be held as long. Only into a known next cut
        that follows on without a gap, never across one, and only while frames present in
        decode order (a transcoder's rungs have no B-frames): moved back past a reordered
        frame, a frame would present before it.

        When the next cut is not known yet (this rendition runs ahead of the leader's
        packager, which gives a part's cut only once the part's audio is in), a frame
        less than half a frame past the cut's end is moved back too: it is the frame the
        leader cut at, late only by the roundings (a transcoder's frames come up to 2 ms
        after the source's). The leader's cuts follow on without a gap (a lost cut drops
        such a frame either way), so it starts the next part on time once that cut
        comes."""
        cut = self._cut
        if cut is None or dts <= cut.end:
            return dts
        if not self._cuts:
            return cut.end if 2 * (dts - cut.end) < track.estimate() else dts
        following = self._cuts[0]
        if following.start == cut.end and dts < following.end:
            return cut.end
        return dts

    def _wait(self, packet: MediaPacket) -> None:
        if len(self._waiting) >= _MAX_WAITING_VIDEO:
            raise PackagerError("the leader's cuts stopped coming: too much video waits")
        self._waiting.append(
            MediaPacket(
                packet.kind, packet.codec, packet.timestamp, bytes(packet.data),
                packet.keyframe, packet.sequence_header, packet.composition_offset,
                packet.received_at,
            )
        )

    def _place_following(self, sample: Sample) -> None:
        """Put a frame into the part of the leader's cut it falls in (a new segment or part
        starts with the first frame at or after the cut's start)."""
        segment, part = self._segment, self._part
        if part is None:
            cut = self._next_cut(sample.dts)
            if cut is None:
                self.dropped += 1  # before the leader's first cut, or a late joiner's
                return
            if segment is None:
                if not self._followed and not self._starts(cut, sample):
                    self.dropped += 1  # a first segment must start where the leader's does
                    return
                gen = self._gen
                assert gen is not None
                segment = self._segment = _Segment(
                    cut.msn, sample.dts, sample.received_at, self._discontinuity, gen.number
                )
                self._next_msn = cut.msn + 1
                self._discontinuity = False
                self._followed = True
            elif cut.msn != segment.msn:
                # A leader's part went by without a frame of ours: the segment cannot be
                # finished as the leader's was. Nothing more lines up until it ends.
                self.dropped += 1
                return
            segment.next_index = cut.index
            part = self._open_part(segment, sample.dts)
            self._cut = cut
        part.samples.append(sample)

    def _next_cut(self, dts: int) -> Cut | None:
        """The cut a part starting with a frame at ``dts`` belongs to; cuts that ended
        before it are let go (counted when they should have had a part)."""
        cuts = self._cuts
        while cuts and cuts[0].end <= dts:
            cuts.popleft()
            if self._followed:
                self.skipped_cuts += 1
        if not cuts or cuts[0].start > dts:
            return None
        return cuts.popleft()

    def _starts(self, cut: Cut, sample: Sample) -> bool:
        """Whether a follower's first segment may start here: a key frame, in the first
        part of a leader's segment, within one frame of its start."""
        gen = self._gen
        assert gen is not None
        return cut.index == 0 and sample.sync and sample.dts - cut.start < gen.driver.estimate()

    def _open_part(self, segment: _Segment, start: int) -> _Part:
        part = self._part = _Part(segment, segment.next_index, start)
        segment.next_index += 1
        return part

    def _arrived(self, sample: Sample) -> None:
        """Decisions the arrival of a driving sample allows before it has a duration:
        a key frame ends the segment (and its last part) where it starts; a part already
        long enough that this frame would likely not fit is closed now."""
        if self._following:
            cut = self._cut
            if self._part is not None and cut is not None and sample.dts >= cut.end:
                self._close_part(sample.dts, final=cut.last)
                self._cut = None
            return
        segment = self._segment
        if segment is None:
            return
        dts = sample.dts
        elapsed = dts - segment.start
        if sample.sync and elapsed >= self._min_segment_ticks:
            self._close_part(dts, final=True)
            return
        if elapsed >= self._max_segment_ticks and self._part is not None:
            self._without_key = True
            self._close_part(dts, final=True)
            return
        part = self._part
        if part is not None and part.samples:
            length = dts - part.start
            estimate = self._driver_estimate()
            if length >= self._min_part_ticks and length + estimate > self._part_ticks:
                self._close_part(dts, final=False)

    def _driver_estimate(self) -> int:
        gen = self._gen
        assert gen is not None
        return gen.driver.short_estimate()

    def _close_part(self, end: int, final: bool) -> None:
        part = self._part
        assert part is not None
        part.end = end
        part.final = final
        self._closed.append(part)
        self._part = None
        if final:
            self._segment = None

    # -- output -------------------------------------------------------------------------

    def _follower_limit(self, part: _Part) -> int | None:
        """A part's end in the audio track's ticks (audio before it belongs to it)."""
        gen = self._gen
        assert gen is not None
        follower = gen.audio
        if follower is None or follower is gen.driver:
            return None
        return part.end * follower.format.timescale // gen.driver.format.timescale

    def _drain(self) -> None:
        """Emit closed parts whose audio is complete, in order."""
        gen = self._gen
        assert gen is not None
        follower = gen.audio if gen.audio is not gen.driver else None
        closed = self._closed
        while closed:
            part = closed[0]
            limit = self._follower_limit(part)
            if follower is not None and limit is not None:
                latest = follower.latest
                waited = (gen.driver.latest or 0) - part.end >= self._audio_wait_ticks
                # A stale audio track gets no more audio: nothing to wait for.
                if (latest is None or latest < limit) and not waited and not self._audio_stale:
                    return
            closed.popleft()
            self._emit(part, limit)

    def _emit(self, part: _Part, audio_until: int | None, last: bool = False) -> None:
        gen = self._gen
        assert gen is not None
        driver = gen.driver
        runs: list[tuple[TrackFormat, list[Sample]]] = [(driver.format, part.samples)]
        follower = gen.audio if gen.audio is not driver else None
        if follower is not None and follower.ready:
            ready = follower.ready
            audio: list[Sample] = []
            if audio_until is None:
                if last:
                    audio.extend(ready)
                    ready.clear()
            else:
                while ready and ready[0].dts < audio_until:
                    audio.append(ready.popleft())
            runs.append((follower.format, audio))
        data = write_fragment(self._sequence, runs)
        self._sequence += 1
        segment = part.segment
        timescale = driver.format.timescale
        first = part.samples[0]
        info = PartInfo(
            msn=segment.msn,
            index=part.index,
            duration=(part.end - part.start) / timescale,
            independent=first.sync,
            program_date_time=first.received_at,
            cut=Cut(
                segment.msn,
                part.index,
                part.start * VIDEO_TIMESCALE // timescale,
                part.end * VIDEO_TIMESCALE // timescale,
                part.final,
            ),
        )
        self._output.part(info, data)
        segment.parts.append(info)
        segment.datas.append(data)
        if part.final:
            self._output.segment(
                SegmentInfo(
                    msn=segment.msn,
                    duration=(part.end - segment.start) / timescale,
                    program_date_time=segment.pdt,
                    parts=tuple(segment.parts),
                    discontinuity=segment.discontinuity,
                    generation=segment.generation,
                ),
                b"".join(segment.datas),
            )
            segment.datas.clear()

    # -- init info ----------------------------------------------------------------------

    def _init_info(self, generation: int, formats: list[TrackFormat]) -> InitInfo:
        video = next((f for f in formats if f.kind is TrackKind.VIDEO), None)
        frame_rate: float | None = None
        if video is not None:
            known = float(video.frame_rate) if video.frame_rate else None
            frame_rate = known or self._metadata.frame_rate
        return InitInfo(
            generation=generation,
            codecs=",".join(f.codec_string for f in formats),
            width=video.width if video else None,
            height=video.height if video else None,
            frame_rate=frame_rate,
            bandwidth_estimate=self._metadata.bandwidth_estimate,
        )


__all__ = [
    "VIDEO_TIMESCALE",
    "Cut",
    "InitInfo",
    "Packager",
    "PackagerError",
    "PackagerOutput",
    "PackagerSettings",
    "PartInfo",
    "SegmentInfo",
]
