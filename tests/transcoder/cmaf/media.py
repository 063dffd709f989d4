"""Media for the packager tests, generated (never committed), and ways to look at output.

Clips are encoded into an in-memory FLV (ffmpeg CLI for the 720p H.264/AAC source, PyAV
for the codecs the Debian CLI cannot put in FLV), demuxed with PyAV and turned into
MediaPackets the way the ingest would: sequence headers from the extradata (avcC, hvcC,
av1C, vpcC, AudioSpecificConfig, OpusHead), frames as the FLV demuxer returns them.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from transcoder.cmaf import InitInfo, Packager, PartInfo, SegmentInfo
from transcoder.cmaf.boxes import Box, children, get_box, iter_boxes
from transcoder.packets import MediaPacket, TrackKind

# Wall clock of the first packet: received_at values are this plus media time plus a
# little per-packet arrival jitter, all distinct.
WALL_CLOCK = 1_763_700_000.0

_FLV_CODECS = {
    "h264": "avc",
    "hevc": "hevc",
    "av1": "av1",
    "libdav1d": "av1",
    "libaom-av1": "av1",
    "vp9": "vp9",
    "libvpx-vp9": "vp9",
    "aac": "aac",
    "opus": "opus",
    "libopus": "opus",
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One coded frame as the ingest would see it (timestamps in ms)."""

    kind: TrackKind
    codec: str
    timestamp: int
    data: bytes = field(repr=False)
    keyframe: bool
    composition_offset: int
    received_at: float

    def packet(self, data: bytes | memoryview | None = None,
               received_at: float | None = None) -> MediaPacket:
        """The frame as the ingest hands it on (its own payload unless ``data`` is given,
        its own arrival unless ``received_at`` is)."""
        return MediaPacket(
            self.kind, self.codec, self.timestamp, self.data if data is None else data,
            keyframe=self.keyframe, composition_offset=self.composition_offset,
            received_at=self.received_at if received_at is None else received_at,
        )


@dataclass(frozen=True, slots=True)
class Clip:
    video_codec: str | None
    video_config: bytes
    audio_codec: str | None
    audio_config: bytes
    frames: tuple[Frame, ...]

    @property
    def video(self) -> list[Frame]:
        return [f for f in self.frames if f.kind is TrackKind.VIDEO]

    @property
    def audio(self) -> list[Frame]:
        return [f for f in self.frames if f.kind is TrackKind.AUDIO]

    def headers(self, timestamp: int = 0) -> list[MediaPacket]:
        packets = []
        if self.video_codec:
            packets.append(
                MediaPacket(
                    TrackKind.VIDEO,
                    self.video_codec,
                    timestamp,
                    memoryview(self.video_config),
                    sequence_header=True,
                )
            )
        if self.audio_codec:
            packets.append(
                MediaPacket(
                    TrackKind.AUDIO,
                    self.audio_codec,
                    timestamp,
                    memoryview(self.audio_config),
                    sequence_header=True,
                )
            )
        return packets

    def until(self, timestamp: int) -> Clip:
        """The frames before ``timestamp`` (ms), as if the publisher stopped there."""
        frames = tuple(f for f in self.frames if f.timestamp < timestamp)
        return Clip(
            self.video_codec, self.video_config, self.audio_codec, self.audio_config, frames
        )

    def since(self, timestamp: int) -> Clip:
        """The frames from ``timestamp`` (ms) on, as if the publisher started there."""
        frames = tuple(f for f in self.frames if f.timestamp >= timestamp)
        return Clip(
            self.video_codec, self.video_config, self.audio_codec, self.audio_config, frames
        )

    def shifted(self, milliseconds: int, seconds: float = 0.0) -> Clip:
        """The same frames later on the timeline (and on the wall clock)."""
        frames = tuple(
            Frame(
                f.kind,
                f.codec,
                f.timestamp + milliseconds,
                f.data,
                f.keyframe,
                f.composition_offset,
                f.received_at + seconds,
            )
            for f in self.frames
        )
        return Clip(
            self.video_codec, self.video_config, self.audio_codec, self.audio_config, frames
        )


def encode_flv_cli(
    seconds: float,
    width: int = 1280,
    height: int = 720,
    rate: int = 30,
    sample_rate: int = 48000,
) -> bytes:
    """H.264 (2 s GOP, B-frames) + AAC stereo in FLV, from the ffmpeg CLI, in memory."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileNotFoundError("ffmpeg is not installed (apt-get install ffmpeg)")
    gop = str(2 * rate)
    command = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    command += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={rate}"]
    command += [
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate={sample_rate}",
        "-t",
        str(seconds),
    ]
    # ultrafast turns B-frames off; -bf 2 puts them back so composition offsets are real.
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-pix_fmt", "yuv420p"]
    command += ["-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
    command += ["-c:a", "aac", "-ac", "2", "-b:a", "96k", "-f", "flv", "pipe:1"]
    return subprocess.run(command, check=True, capture_output=True).stdout


def encode_flv_pyav(
    video_encoder: str | None,
    audio_encoder: str | None,
    frames: int = 45,
    width: int = 320,
    height: int = 240,
    rate: int = 30,
    options: dict[str, str] | None = None,
) -> bytes:
    """A small clip in (Enhanced) FLV written by PyAV's FFmpeg: HEVC, AV1, VP9, Opus."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flv") as output:
        video: Any = None
        audio: Any = None
        if video_encoder:
            video = output.add_stream(video_encoder, rate=rate, options=options or {})
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.codec_context.gop_size = rate  # a key frame every second
        if audio_encoder:
            audio = output.add_stream(audio_encoder, rate=48000, layout="stereo")
        if video is not None:
            for index in range(frames):
                frame = av.VideoFrame(width, height, "yuv420p")
                for number, plane in enumerate(frame.planes):
                    plane.update(bytes([(index * 7 + number * 50) % 256]) * plane.buffer_size)
                frame.pts = index
                output.mux(video.encode(frame))
            output.mux(video.encode())
        if audio is not None:
            context = audio.codec_context
            samples = context.frame_size or 960
            count = frames * 48000 // rate // samples + 1
            for index in range(count):
                sound = av.AudioFrame(format=context.format.name, layout="stereo", samples=samples)
                for plane in sound.planes:
                    plane.update(bytes(plane.buffer_size))
                sound.sample_rate = 48000
                sound.pts = index * samples
                output.mux(audio.encode(sound))
            output.mux(audio.encode())
    return buffer.getvalue()


def demux_flv(data: bytes, wall_clock: float = WALL_CLOCK) -> Clip:
    """The FLV's frames in arrival order: interleaved by timestamp, as a publisher sends."""
    frames: list[tuple[int, int, Frame]] = []
    video_codec = audio_codec = None
    video_config = audio_config = b""
    with av.open(io.BytesIO(data), format="flv") as container:
        for stream in container.streams:
            codec = _FLV_CODECS[stream.codec_context.name]
            if stream.type == "video":
                video_codec, video_config = codec, bytes(stream.codec_context.extradata or b"")
            else:
                audio_codec, audio_config = codec, bytes(stream.codec_context.extradata or b"")
        for order, packet in enumerate(container.demux()):
            if not packet.size or packet.dts is None:
                continue
            assert packet.time_base == Fraction(1, 1000)
            video = packet.stream.type == "video"
            frame = Frame(
                kind=TrackKind.VIDEO if video else TrackKind.AUDIO,
                codec=video_codec if video else audio_codec,  # type: ignore[arg-type]
                timestamp=packet.dts,
                data=bytes(packet),
                keyframe=bool(packet.is_keyframe) if video else False,
                composition_offset=packet.pts - packet.dts if video else 0,
                received_at=0.0,
            )
            frames.append((packet.dts, order, frame))
    frames.sort(key=lambda item: item[:2])
    arrived = tuple(
        Frame(
            f.kind,
            f.codec,
            f.timestamp,
            f.data,
            f.keyframe,
            f.composition_offset,
            wall_clock + f.timestamp / 1000 + 0.2 + index * 1e-4,
        )
        for index, (_, _, f) in enumerate(frames)
    )
    return Clip(video_codec, video_config, audio_codec, audio_config, arrived)


def feed(packager: Packager, clip: Clip, headers: bool = True, end: bool = True) -> None:
    """Push a clip as the ingest does: every payload is a view of one reused buffer,
    overwritten by the next packet, so a packager that kept a view instead of a copy
    would write garbage."""
    buffer = bytearray(max((len(f.data) for f in clip.frames), default=0))
    if headers:
        for header in clip.headers(clip.frames[0].timestamp if clip.frames else 0):
            packager.push(header)
    for frame in clip.frames:
        size = len(frame.data)
        buffer[:size] = frame.data
        packager.push(frame.packet(memoryview(buffer)[:size]))
        buffer[:size] = bytes(size)
    if end:
        packager.end()


@dataclass
class Collector:
    """A PackagerOutput that keeps everything, checking the call order as it goes."""

    inits: list[tuple[InitInfo, bytes]] = field(default_factory=list)
    parts: list[tuple[PartInfo, bytes]] = field(default_factory=list)
    segments: list[tuple[SegmentInfo, bytes]] = field(default_factory=list)
    ended: bool = False
    calls: list[str] = field(default_factory=list)

    def init(self, info: InitInfo, data: bytes) -> None:
        assert not self.ended
        self.calls.append("init")
        self.inits.append((info, data))

    def part(self, info: PartInfo, data: bytes) -> None:
        assert not self.ended
        assert self.inits
        self.calls.append("part")
        self.parts.append((info, data))

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        assert not self.ended
        assert self.calls[-1] == "part", "a segment follows its last part"
        self.calls.append("segment")
        self.segments.append((info, data))

    def end(self) -> None:
        assert not self.ended
        self.calls.append("end")
        self.ended = True

    def init_for(self, segment: SegmentInfo) -> bytes:
        return self.inits[segment.generation][1]


# ---------------------------------------------------------------------------------------
# Reading fragments back


@dataclass(frozen=True, slots=True)
class Run:
    """One traf: a track's samples in a fragment (times in the track's ticks)."""

    track_id: int
    base_time: int
    data_offset: int  # of the first sample, from the start of the bytes read
    durations: tuple[int, ...]
    sizes: tuple[int, ...]
    flags: tuple[int, ...]
    composition_offsets: tuple[int, ...]

    @property
    def first_is_sync(self) -> bool:
        return not self.flags[0] & 0x0001_0000

    def samples(self, data: bytes) -> list[bytes]:
        out, position = [], self.data_offset
        for size in self.sizes:
            out.append(data[position : position + size])
            position += size
        return out


def read_fragments(data: bytes) -> list[list[Run]]:
    """Every moof's runs, checking the moof/mdat layout and that the data offsets point
    inside the following mdat."""
    fragments: list[list[Run]] = []
    boxes = list(iter_boxes(data))
    assert [b.kind for b in boxes] == ["moof", "mdat"] * (len(boxes) // 2), boxes
    for moof, mdat in zip(boxes[::2], boxes[1::2], strict=True):
        runs = []
        for traf in children(data, moof):
            if traf.kind != "traf":
                continue
            runs.append(_read_traf(data, traf, moof, mdat))
        fragments.append(runs)
    return fragments


def _read_traf(data: bytes, traf: Box, moof: Box, mdat: Box) -> Run:
    tfhd = get_box(data, "tfhd", traf.payload, traf.end)
    tfhd_flags = int.from_bytes(data[tfhd.payload + 1 : tfhd.payload + 4], "big")
    assert tfhd_flags & 0x02_0000, "default-base-is-moof"
    (track_id,) = struct.unpack_from(">I", data, tfhd.payload + 4)
    default_flags = 0
    if tfhd_flags & 0x20:
        (default_flags,) = struct.unpack_from(">I", data, tfhd.payload + 8)
    tfdt = get_box(data, "tfdt", traf.payload, traf.end)
    version = data[tfdt.payload]
    base = struct.unpack_from(">Q" if version else ">I", data, tfdt.payload + 4)[0]
    trun = get_box(data, "trun", traf.payload, traf.end)
    trun_version = data[trun.payload]
    flags = int.from_bytes(data[trun.payload + 1 : trun.payload + 4], "big")
    count, offset = struct.unpack_from(">Ii", data, trun.payload + 4)
    assert flags & 0x1
    position = trun.payload + 12
    durations, sizes, sample_flags, offsets = [], [], [], []
    for _ in range(count):
        for bit, values, fmt in (
            (0x100, durations, ">I"),
            (0x200, sizes, ">I"),
            (0x400, sample_flags, ">I"),
            (0x800, offsets, ">i" if trun_version else ">I"),
        ):
            if flags & bit:
                values.append(struct.unpack_from(fmt, data, position)[0])
                position += 4
    assert position == trun.end
    assert mdat.payload <= moof.start + offset
    assert moof.start + offset + sum(sizes) <= mdat.end
    return Run(
        track_id,
        base,
        moof.start + offset,
        tuple(durations),
        tuple(sizes),
        tuple(sample_flags) if sample_flags else (default_flags,) * count,
        tuple(offsets) if offsets else (0,) * count,
    )


def decode(data: bytes) -> tuple[list[Any], list[Any]]:
    """All video and audio frames PyAV decodes from an fMP4 (init + fragments)."""
    video: list[Any] = []
    audio: list[Any] = []
    with av.open(io.BytesIO(data), format="mp4") as container:
        for packet in container.demux():
            frames = video if packet.stream.type == "video" else audio
            frames.extend(packet.decode())
    return video, audio
