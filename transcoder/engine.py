"""The transcode engine: one source video in, one H.264 stream per ladder rung out, cut to
line up with the source.

Shape (ARCHITECTURE "Transcoding"): the source is decoded once, in the caller's thread
(`Transcoder.push`); every decoded frame is handed to each rung's bounded queue; each rung
has its own thread that scales it (one `VideoReformatter` per rung: `VideoFrame.reformat`
would build a scaler per call) and encodes it with libx264 through PyAV. Codec and scaler
calls release the GIL, so the rungs run in parallel.

Alignment: the frames that start a source segment (the packager's cutting rule, mirrored
by `SegmentStarts`, or the caller's own answer) are encoded as IDR frames on every rung,
and every other frame is sent with ``pict_type`` NONE, so the encoder neither copies the
source's key frames (a decoded, reformatted frame keeps the decoder's picture type) nor
adds its own (infinite keyint, no scene cut). Each rung's packets carry the source frame's
presentation time in milliseconds, on the packager's corrected timeline (publisher clock
jumps smoothed over the same way), so rung N's segment starts where the source's does.

Falling behind: a rung's queue holds at most ``queue_frames`` decoded frames. In live use
(``shed=True``) a full queue drops its oldest frame that does not start a segment, so a
slow rung skips frames and never grows memory; every drop is counted (`RungStats`). With
``shed=False`` `push` waits instead (benchmarks, files).

No Django, no RTMP: packets in (`MediaPacket`), Annex B H.264 out (`EncodedPacket`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter

from transcoder.cmaf.packager import PackagerSettings
from transcoder.codecs import CodecConfigError, parse_avc_config, parse_hevc_config
from transcoder.ladder import Rung
from transcoder.packets import MediaPacket, TrackKind
from transcoder.timeline import Timeline

log = logging.getLogger(__name__)

# MediaPacket timestamps are milliseconds; the rungs keep that time base, so a rung frame's
# pts is the source frame's, unchanged.
TIME_BASE = Fraction(1, 1000)
# FLV codec names (MediaPacket.codec) → FFmpeg decoder and the record parser that checks
# the sequence header before FFmpeg sees it.
_DECODERS: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    "avc": ("h264", parse_avc_config),
    "hevc": ("hevc", parse_hevc_config),
}
# Consecutive undecodable packets tolerated before the source is declared garbage (a
# publisher's glitch costs a few frames; a stream that is not what it claims ends here).
_MAX_DECODE_ERRORS = 30
# Timestamps remembered per frame in flight in the decoder (B-frame reordering holds a few).
_MAX_PENDING = 256
# A rung keeps a frame of a faster source when it is at least this share of the rung's
# frame interval after the last one kept: a 30 fps source on a 30 fps rung keeps all
# (33/34 ms apart), a 60 fps one every other frame.
_FRAME_RATE_SLACK = 0.75


class TranscodeError(Exception):
    """The source cannot be transcoded (an unsupported codec, a bad sequence header, a
    stream that does not decode, media after `end`). The transcoder stops; the source
    rendition is not affected."""


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One encoded frame of a rung, as libx264 emits it.

    ``data`` is Annex B (start codes; SPS/PPS repeated before every IDR). ``pts`` and
    ``dts`` are milliseconds on the source's timeline (``pts`` is the source frame's
    presentation time; no B-frames, so ``dts == pts``). ``duration`` (ms) is the interval
    from the previous source frame: an estimate, the packager measures the real one from
    the next packet. ``keyframe`` marks an IDR, which the engine places exactly on the
    source's segment starts. ``received_at`` is the ingest's wall clock for the source
    frame (Unix seconds), for program-date-time and lag."""

    rung: str
    data: bytes
    pts: int
    dts: int
    duration: int
    keyframe: bool
    received_at: float


@dataclass(frozen=True, slots=True)
class RungStats:
    """Counters of one rung, for metrics. ``frames_in`` counts frames given to the rung
    (after frame-rate thinning), each of which is either encoded or dropped, or still
    queued. ``lag`` is media seconds between the newest frame given to the rung and the
    newest it has encoded. ``error`` is set once the rung has failed (it then stops)."""

    name: str
    frames_in: int
    frames_encoded: int
    frames_dropped: int
    frames_thinned: int
    packets_out: int
    bytes_out: int
    queued: int
    max_queued: int
    lag: float
    cpu_seconds: float
    error: str | None


@dataclass(frozen=True, slots=True)
class TranscoderStats:
    packets_in: int
    frames_decoded: int
    packets_dropped: int
    decode_errors: int
    decode_cpu_seconds: float  # CPU time spent in the decoder (the caller's thread)
    rungs: tuple[RungStats, ...]


class SegmentStarts:
    """Which source video packets start a segment: the packager's cutting rule
    (`transcoder.cmaf.packager`), mirrored so the rungs' IDRs land where its segments
    start. Called with every packet of the publish, in order (sequence headers too).

    - The first key frame starts the first segment (earlier frames are dropped there).
    - A key frame at least ``min_segment_duration`` after the segment's start starts the
      next one; past ``max_segment_duration`` the next frame does, key frame or not (the
      rung then starts that segment with an IDR of its own).
    - A sequence header that differs from the last of its kind makes the next key frame
      start a segment (a new generation).
    - After `resume` (a reconnect), the first key frame starts a segment.
    Publisher clock jumps are absorbed the packager's way (`transcoder.timeline.Timeline`),
    so elapsed time keeps counting across them; ``clocks`` are those timelines, the
    packager's packet for packet (audio too), for a session that joins a publish under way.
    """

    def __init__(self, settings: PackagerSettings | None = None) -> None:
        settings = settings or PackagerSettings()
        self._min_ms = round(settings.min_segment_duration * 1000)
        self._max_ms = round(settings.max_segment_duration * 1000)
        self._start: int | None = None
        self._timeline = Timeline()
        self._audio_timeline = Timeline()
        self._headers: dict[TrackKind, bytes] = {}
        self._new_generation = False
        self._max_composition_offset = 0

    @property
    def clocks(self) -> dict[TrackKind, Timeline]:
        return {TrackKind.VIDEO: self._timeline, TrackKind.AUDIO: self._audio_timeline}

    def __call__(self, packet: MediaPacket) -> bool:
        if packet.sequence_header:
            self._header(packet)
            return False
        if packet.kind is not TrackKind.VIDEO:
            if TrackKind.AUDIO in self._headers:  # as the packager's audio clock runs
                self._audio_timeline.correct(packet.timestamp)
            return False
        now = self._timeline.correct(packet.timestamp)
        self._max_composition_offset = max(self._max_composition_offset, packet.composition_offset)
        if self._start is None or self._new_generation:
            if not packet.keyframe:
                return False
            self._new_generation = False
            self._start = now
            return True
        elapsed = now - self._start
        if (packet.keyframe and elapsed >= self._min_ms) or elapsed >= self._max_ms:
            self._start = now
            return True
        return False

    def _header(self, packet: MediaPacket) -> None:
        record = bytes(packet.data)
        previous = self._headers.get(packet.kind)
        if previous is not None and previous != record:
            self._new_generation = True
        self._headers[packet.kind] = record

    def resume(self) -> None:
        """A reconnect continues the publish (`Packager.resume`): its clock restarts and
        its first key frame starts a segment."""
        self._timeline.rebase = self._audio_timeline.rebase = self._max_composition_offset
        self._new_generation = True


class _Queued:
    __slots__ = ("frame", "received_at", "start")

    def __init__(self, frame: av.VideoFrame, start: bool, received_at: float) -> None:
        self.frame = frame
        self.start = start
        self.received_at = received_at


class _FrameQueue:
    """A bounded queue of decoded frames for one rung. ``put`` sheds (drops the oldest
    frame that starts no segment) or waits when full; ``None`` ends the queue."""

    def __init__(self, capacity: int, shed: bool) -> None:
        self._items: deque[_Queued | None] = deque()
        self._capacity = capacity
        self._shed = shed
        self._ready = threading.Condition()
        self.max_depth = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: _Queued) -> int:
        """Returns how many frames were dropped to make room (0 or 1)."""
        with self._ready:
            dropped = 0
            if self._shed and len(self._items) >= self._capacity:
                if not self._drop_plain():
                    # Every queued frame starts a segment (a rung over a segment behind):
                    # a plain frame gives way; a new start replaces the stalest one.
                    if not item.start:
                        return 1
                    self._items.popleft()
                dropped = 1
            while len(self._items) >= self._capacity and not self.closed:
                self._ready.wait()  # without shedding, push waits for the rung
            if self.closed:
                return 1
            self._items.append(item)
            self.max_depth = max(self.max_depth, len(self._items))
            self._ready.notify_all()
            return dropped

    def _drop_plain(self) -> bool:
        """Drop the oldest queued frame that starts no segment (a skipped frame costs a
        stutter; a lost segment start would cost the rung its alignment)."""
        for index, queued in enumerate(self._items):
            if queued is not None and not queued.start:
                del self._items[index]
                return True
        return False

    def end(self) -> None:
        with self._ready:
            self._items.append(None)
            self._ready.notify_all()

    def close(self) -> None:
        """Discard what is queued and end; a waiting `put` returns."""
        with self._ready:
            self.closed = True
            self._items.clear()
            self._items.append(None)
            self._ready.notify_all()

    def get(self) -> _Queued | None:
        with self._ready:
            while not self._items:
                self._ready.wait()
            item = self._items.popleft()
            self._ready.notify_all()
            return item


Deliver = Callable[[EncodedPacket], None]
OnError = Callable[[str, BaseException], None]


class _RungWorker:
    """One rung: its queue, scaler, encoder and thread."""

    def __init__(
        self,
        rung: Rung,
        deliver: Deliver,
        on_error: OnError | None,
        *,
        threads: int,
        preset: str,
        queue_frames: int,
        shed: bool,
        interpolation: Interpolation,
    ) -> None:
        self.rung = rung
        self._deliver = deliver
        self._on_error = on_error
        self._queue = _FrameQueue(queue_frames, shed)
        self._reformatter = VideoReformatter()
        self._interpolation = interpolation
        self._encoder = open_encoder(rung, threads=threads, preset=preset)
        self._min_interval = 1000 / rung.fps * _FRAME_RATE_SLACK
        self._last_kept: int | None = None
        self._pending: dict[int, tuple[float, int]] = {}
        self._last_pts: int | None = None
        self.frames_in = self.frames_encoded = self.frames_dropped = self.frames_thinned = 0
        self.packets_out = self.bytes_out = 0
        self.newest_in: int | None = None
        self._first_in = 0
        self.newest_out: int | None = None
        self.error: BaseException | None = None
        self.cpu_seconds = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"transcode-{rung.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    # -- the decoding thread's side ---------------------------------------------------

    def offer(self, frame: av.VideoFrame, start: bool, received_at: float) -> None:
        if self.error is not None or self._queue.closed:
            return
        pts = frame.pts
        if not start and self._last_kept is not None and pts - self._last_kept < self._min_interval:
            self.frames_thinned += 1
            return
        self._last_kept = pts
        self.frames_in += 1
        if self.newest_in is None:
            self._first_in = pts
        self.newest_in = pts
        self.frames_dropped += self._queue.put(_Queued(frame, start, received_at))

    def finish(self) -> None:
        self._queue.end()

    def abort(self) -> None:
        self._queue.close()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> RungStats:
        lag = 0.0
        if self.newest_in is not None:
            newest_out = self.newest_out if self.newest_out is not None else -1_000_000_000
            lag = max(0, self.newest_in - max(newest_out, self._first_in)) / 1000
        error = self.error
        return RungStats(
            name=self.rung.name,
            frames_in=self.frames_in,
            frames_encoded=self.frames_encoded,
            frames_dropped=self.frames_dropped,
            frames_thinned=self.frames_thinned,
            packets_out=self.packets_out,
            bytes_out=self.bytes_out,
            queued=len(self._queue),
            max_queued=self._queue.max_depth,
            lag=lag,
            cpu_seconds=self.cpu_seconds,
            error=f"{type(error).__name__}: {error}" if error is not None else None,
        )

    # -- the rung's thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                self._encode(item)
                self.cpu_seconds = time.thread_time()
            if not self._queue.closed:
                self._emit(self._encoder.encode(None))
            self.cpu_seconds = time.thread_time()
        except Exception as error:  # reported, never silent; the other rungs go on
            self.error = error
            self._queue.close()
            log.exception("rung %s failed; it stops, the other rungs go on", self.rung.name)
            if self._on_error is not None:
                try:
                    self._on_error(self.rung.name, error)
                except Exception:
                    log.exception("the error handler of rung %s failed", self.rung.name)

    def _encode(self, item: _Queued) -> None:
        source = item.frame
        rung = self.rung
        frame = self._reformatter.reformat(
            source, rung.width, rung.height, format="yuv420p", interpolation=self._interpolation
        )
        pts = source.pts
        frame.pts = pts
        frame.time_base = TIME_BASE
        # I on a segment start (with forced-idr, an IDR); NONE elsewhere so the encoder
        # neither follows the source's picture types nor chooses key frames itself.
        frame.pict_type = PictureType.I if item.start else PictureType.NONE
        duration = pts - self._last_pts if self._last_pts is not None else round(1000 / rung.fps)
        self._last_pts = pts
        self._pending[pts] = (item.received_at, duration)
        self._emit(self._encoder.encode(frame))
        self.frames_encoded += 1

    def _emit(self, packets: Sequence[av.Packet]) -> None:
        for packet in packets:
            pts = packet.pts
            received_at, duration = self._pending.pop(pts, (0.0, 0))
            encoded = EncodedPacket(
                rung=self.rung.name,
                data=bytes(packet),
                pts=pts,
                dts=packet.dts if packet.dts is not None else pts,
                duration=duration,
                keyframe=bool(packet.is_keyframe),
                received_at=received_at,
            )
            self.newest_out = pts
            self.packets_out += 1
            self.bytes_out += len(encoded.data)
            self._deliver(encoded)
        if len(self._pending) > _MAX_PENDING:  # frames the encoder never returned
            newest = max(self._pending)
            self._pending = {pts: v for pts, v in self._pending.items() if pts >= newest - 1000}


def open_encoder(rung: Rung, *, threads: int = 1, preset: str = "veryfast") -> Any:
    """A libx264 encoder for ``rung``, open, taking frames in ms (`TIME_BASE`).

    Every option is explicit because PyAV's defaults oversubscribe the cores
    (``thread_count`` 0 = x264's 1.5 x cores, sliced threads) and because the engine, not
    x264, decides where key frames go."""
    context: Any = av.CodecContext.create("libx264", "w")
    context.width = rung.width
    context.height = rung.height
    context.pix_fmt = "yuv420p"
    context.time_base = TIME_BASE
    context.framerate = Fraction(rung.fps)
    context.bit_rate = rung.bitrate
    context.thread_count = threads
    context.thread_type = "FRAME"  # x264 frame threads; SLICE would mean sliced threads
    context.max_b_frames = 0
    context.options = {
        "preset": preset,
        "profile": rung.profile,
        # An I frame asked for by the engine is an IDR (else x264 may make it a non-IDR I).
        "forced-idr": "1",
        # VBV: a peak close to the target, so the advertised BANDWIDTH holds per segment.
        "maxrate": str(rung.bitrate),
        "bufsize": str(rung.bitrate),
        "x264-params": X264_PARAMS,
    }
    context.open()
    return context


# Key frames only where the engine asks (no periodic keyint, no scene cut); no B-frames and
# no lookahead, so a frame in gives its packet out at once (the zerolatency tune would turn
# on sliced threads, which is why its parts are listed instead).
X264_PARAMS = (
    "keyint=infinite:min-keyint=1:scenecut=0:bframes=0:rc-lookahead=0:sync-lookahead=0"
    ":sliced-threads=0"
)


class Transcoder:
    """Decodes one source video and encodes it into ``rungs``.

    ``deliver`` is called from the rung's own thread with each `EncodedPacket`, a rung's
    packets in order; it should hand them on quickly (a slow ``deliver`` is a slow rung).
    ``is_segment_start`` answers, for every packet pushed (sequence headers and audio
    too, in order), whether it is a video frame that starts a source segment; by default
    `SegmentStarts`, the packager's rule. ``on_error`` hears of a rung that failed (its
    exception), which stops while the others go on; it is also logged and in `stats`.

    Not thread-safe: `push`, `end` and `close` come from one thread (the caller's, where
    decoding happens; never an event loop's).
    """

    def __init__(
        self,
        rungs: Sequence[Rung],
        deliver: Deliver,
        *,
        is_segment_start: Callable[[MediaPacket], bool] | None = None,
        on_error: OnError | None = None,
        threads_per_rung: int = 1,
        decode_threads: int = 1,
        preset: str = "veryfast",
        queue_frames: int = 15,
        shed: bool = True,
        interpolation: Interpolation = Interpolation.BICUBIC,
    ) -> None:
        if queue_frames < 2:
            raise ValueError("queue_frames must be at least 2")
        if threads_per_rung < 1 or decode_threads < 1:
            raise ValueError("thread counts must be at least 1 (0 would mean one per core)")
        names = [rung.name for rung in rungs]
        if len(set(names)) != len(names):
            raise ValueError(f"rung names repeat: {names}")
        self._is_segment_start = is_segment_start or SegmentStarts()
        self._decode_threads = decode_threads
        self._workers = [
            _RungWorker(
                rung,
                deliver,
                on_error,
                threads=threads_per_rung,
                preset=preset,
                queue_frames=queue_frames,
                shed=shed,
                interpolation=interpolation,
            )
            for rung in rungs
        ]
        self._decoder: Any = None
        self._codec: str | None = None
        self._record: bytes | None = None
        self._waiting_for_key = True
        self._timeline = Timeline()
        self._max_composition_offset = 0
        self._starts: set[int] = set()
        self._received: dict[int, float] = {}
        self._consecutive_errors = 0
        self._ended = False
        self.packets_in = self.frames_decoded = self.packets_dropped = self.decode_errors = 0
        self.decode_cpu_seconds = 0.0
        for worker in self._workers:
            worker.start()

    @property
    def rungs(self) -> tuple[Rung, ...]:
        return tuple(worker.rung for worker in self._workers)

    def push(self, packet: MediaPacket) -> None:
        """Take one packet of the publish (audio is ignored: it is copied, not transcoded).

        Raises TranscodeError when the video cannot be transcoded (see there); the
        transcoder should then be closed."""
        if self._ended:
            raise TranscodeError("media after end()")
        start = self._is_segment_start(packet)
        if packet.kind is not TrackKind.VIDEO:
            return
        if packet.sequence_header:
            self._sequence_header(packet)
            return
        self.packets_in += 1
        if self._decoder is None or (self._waiting_for_key and not packet.keyframe):
            self.packets_dropped += 1  # undecodable without its sequence header / key frame
            return
        self._waiting_for_key = False
        dts = self._timeline.correct(packet.timestamp)
        self._max_composition_offset = max(self._max_composition_offset, packet.composition_offset)
        pts = dts + packet.composition_offset
        if start:
            self._starts.add(pts)
        self._received[pts] = packet.received_at
        self._decode(self._to_av_packet(packet, dts, pts))

    def end(self) -> TranscoderStats:
        """Flush: decode and encode everything pushed, wait for every rung to deliver its
        last packet, stop the threads. Returns the final counters."""
        if not self._ended:
            self._ended = True
            if self._decoder is not None:
                self._flush_decoder()
            for worker in self._workers:
                worker.finish()
            for worker in self._workers:
                worker.join()
        return self.stats()

    def close(self, timeout: float = 5.0) -> None:
        """Stop now, dropping what is queued (the publish ended abruptly, or an error).
        Waits up to ``timeout`` seconds per rung for the frame in hand; a rung stuck in
        ``deliver`` is left behind (its thread is a daemon) and logged. Idempotent."""
        self._ended = True
        for worker in self._workers:
            worker.abort()
        for worker in self._workers:
            worker.join(timeout)
            if worker.alive:
                log.warning("rung %s did not stop within %.1f s", worker.rung.name, timeout)

    def resume(self) -> None:
        """A new connection continues the publish (`Packager.resume`, called alongside):
        the old connection's frames are encoded, its clock is followed on from where it
        stopped, and decoding restarts at the new connection's first key frame. With the
        default `SegmentStarts`, that key frame starts a segment, as in the packager."""
        if self._ended:
            raise TranscodeError("resume() after end()")
        if self._decoder is not None:
            self._flush_decoder()
        self._waiting_for_key = True
        self._timeline.rebase = self._max_composition_offset
        if isinstance(self._is_segment_start, SegmentStarts):
            self._is_segment_start.resume()

    def stop_rung(self, name: str) -> None:
        """Shed a whole rung (the top one, when the machine cannot keep up): it stops
        taking frames and its thread ends after the frame in hand."""
        for worker in self._workers:
            if worker.rung.name == name:
                worker.abort()
                return
        raise KeyError(name)

    def stats(self) -> TranscoderStats:
        return TranscoderStats(
            packets_in=self.packets_in,
            frames_decoded=self.frames_decoded,
            packets_dropped=self.packets_dropped,
            decode_errors=self.decode_errors,
            decode_cpu_seconds=self.decode_cpu_seconds,
            rungs=tuple(worker.stats() for worker in self._workers),
        )

    # -- decoding -----------------------------------------------------------------------

    def _sequence_header(self, packet: MediaPacket) -> None:
        record = bytes(packet.data)
        if packet.codec == self._codec and record == self._record:
            return  # some encoders repeat their headers
        decoder_name, parse = _DECODERS.get(packet.codec, (None, None))
        if decoder_name is None or parse is None:
            raise TranscodeError(
                f"video codec {packet.codec!r} cannot be transcoded "
                f"(supported: {', '.join(sorted(_DECODERS))})"
            )
        try:
            parse(record)
        except CodecConfigError as error:
            raise TranscodeError(f"bad {packet.codec} sequence header: {error}") from None
        if self._decoder is not None:
            self._flush_decoder()  # frames of the old configuration go out first
        decoder: Any = av.CodecContext.create(decoder_name, "r")
        decoder.extradata = record
        decoder.thread_count = self._decode_threads
        decoder.thread_type = "SLICE"  # frame threads would add a frame of delay each
        self._decoder = decoder
        self._codec, self._record = packet.codec, record
        self._waiting_for_key = True

    @staticmethod
    def _to_av_packet(packet: MediaPacket, dts: int, pts: int) -> av.Packet:
        av_packet = av.Packet(bytes(packet.data))
        av_packet.pts = pts
        av_packet.dts = dts
        av_packet.time_base = TIME_BASE
        return av_packet

    def _decode(self, packet: av.Packet | None) -> None:
        started = time.thread_time()
        try:
            frames = self._decoder.decode(packet)
        except av.error.FFmpegError as error:
            if packet is None:
                return  # flushing a decoder that never had a good frame
            self.decode_errors += 1
            self._consecutive_errors += 1
            if self._consecutive_errors >= _MAX_DECODE_ERRORS:
                raise TranscodeError(
                    f"the source video does not decode ({self._consecutive_errors} packets "
                    f"in a row failed; last: {error})"
                ) from None
            return
        finally:
            self.decode_cpu_seconds += time.thread_time() - started
        self._consecutive_errors = 0
        for frame in frames:
            self._dispatch(frame)

    def _flush_decoder(self) -> None:
        """Decode what the decoder holds; it then takes packets again."""
        self._decode(None)
        self._decoder.flush_buffers()

    def _dispatch(self, frame: av.VideoFrame) -> None:
        pts = frame.pts
        if pts is None:
            self.packets_dropped += 1
            return
        self.frames_decoded += 1
        frame.time_base = TIME_BASE
        start = pts in self._starts
        if start:
            self._starts.discard(pts)
        received_at = self._received.pop(pts, 0.0)
        if len(self._received) > _MAX_PENDING or len(self._starts) > _MAX_PENDING:
            # Packets the decoder never returned a frame for (corrupt ones): forget them.
            self._received = {k: v for k, v in self._received.items() if k > pts}
            self._starts = {k for k in self._starts if k > pts}
        for worker in self._workers:
            worker.offer(frame, start, received_at)
