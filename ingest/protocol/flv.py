"""Bodies of RTMP audio (type 8) and video (type 9) messages: FLV tag bodies, legacy
and Enhanced RTMP (E-RTMP v2), without the FLV tag header.

Parsed `data` fields are read-only memoryviews into the payload, not copies: they
keep the payload alive, and `bytes(tag.data)` copies when that matters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TypeVar

from ingest.protocol.errors import ProtocolError, TruncatedInput, UnsupportedFeature

TYPE_AUDIO = 8
TYPE_VIDEO = 9

_EX_HEADER = 0x80
_SOUND_FORMAT_EX_HEADER = 9
_MOD_EX_TIMESTAMP_OFFSET_NANO = 0


class VideoCodec(Enum):
    H263 = "h263"
    SCREEN = "screen"
    VP6 = "vp6"
    VP6_ALPHA = "vp6a"
    SCREEN_V2 = "screen2"
    AVC = "avc"
    HEVC = "hevc"
    VVC = "vvc"
    AV1 = "av1"
    VP8 = "vp8"
    VP9 = "vp9"


class VideoFrameType(IntEnum):
    KEY = 1
    INTER = 2
    DISPOSABLE_INTER = 3
    GENERATED_KEY = 4
    COMMAND = 5


class VideoPacketType(IntEnum):
    """E-RTMP packet types; legacy AVCPacketType 0/1/2 maps onto the first three."""

    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    CODED_FRAMES_X = 3
    METADATA = 4
    MPEG2TS_SEQUENCE_START = 5
    MULTITRACK = 6
    MOD_EX = 7


class MultitrackType(IntEnum):
    ONE_TRACK = 0
    MANY_TRACKS = 1
    MANY_TRACKS_MANY_CODECS = 2


class AudioCodec(Enum):
    LPCM_PLATFORM_ENDIAN = "lpcm"
    ADPCM = "adpcm"
    MP3 = "mp3"
    LPCM_LITTLE_ENDIAN = "lpcm_le"
    NELLYMOSER_16K_MONO = "nellymoser_16k_mono"
    NELLYMOSER_8K_MONO = "nellymoser_8k_mono"
    NELLYMOSER = "nellymoser"
    G711_ALAW = "g711_alaw"
    G711_MULAW = "g711_mulaw"
    AAC = "aac"
    SPEEX = "speex"
    MP3_8K = "mp3_8k"
    DEVICE_SPECIFIC = "device_specific"
    OPUS = "opus"
    FLAC = "flac"
    AC3 = "ac3"
    EAC3 = "eac3"


class AudioPacketType(IntEnum):
    """E-RTMP audio packet types; legacy AACPacketType 0/1 maps onto the first two."""

    SEQUENCE_START = 0
    CODED_FRAMES = 1
    SEQUENCE_END = 2
    MULTICHANNEL_CONFIG = 4
    MULTITRACK = 5
    MOD_EX = 7


class AudioChannelOrder(IntEnum):
    UNSPECIFIED = 0
    NATIVE = 1
    CUSTOM = 2


_LEGACY_VIDEO_CODECS = {
    2: VideoCodec.H263,
    3: VideoCodec.SCREEN,
    4: VideoCodec.VP6,
    5: VideoCodec.VP6_ALPHA,
    6: VideoCodec.SCREEN_V2,
    7: VideoCodec.AVC,
    # Not in any Adobe spec: the HEVC extension Chinese CDNs and forks of FFmpeg use.
    12: VideoCodec.HEVC,
}
_VIDEO_FOURCCS = {
    b"avc1": VideoCodec.AVC,
    b"hvc1": VideoCodec.HEVC,
    b"vvc1": VideoCodec.VVC,
    b"av01": VideoCodec.AV1,
    b"vp08": VideoCodec.VP8,
    b"vp09": VideoCodec.VP9,
}
# Only these carry a composition time offset in CodedFrames packets.
_COMPOSITION_CODECS = frozenset({VideoCodec.AVC, VideoCodec.HEVC})

_LEGACY_AUDIO_CODECS = {
    0: AudioCodec.LPCM_PLATFORM_ENDIAN,
    1: AudioCodec.ADPCM,
    2: AudioCodec.MP3,
    3: AudioCodec.LPCM_LITTLE_ENDIAN,
    4: AudioCodec.NELLYMOSER_16K_MONO,
    5: AudioCodec.NELLYMOSER_8K_MONO,
    6: AudioCodec.NELLYMOSER,
    7: AudioCodec.G711_ALAW,
    8: AudioCodec.G711_MULAW,
    10: AudioCodec.AAC,
    11: AudioCodec.SPEEX,
    14: AudioCodec.MP3_8K,
    15: AudioCodec.DEVICE_SPECIFIC,
}
_AUDIO_FOURCCS = {
    b"mp4a": AudioCodec.AAC,
    b"Opus": AudioCodec.OPUS,
    b"fLaC": AudioCodec.FLAC,
    b"ac-3": AudioCodec.AC3,
    b"ec-3": AudioCodec.EAC3,
    b".mp3": AudioCodec.MP3,
}
_SAMPLE_RATES = (5512, 11025, 22050, 44100)

Data = bytes | memoryview
_Codec = TypeVar("_Codec", VideoCodec, AudioCodec)


@dataclass(frozen=True, slots=True)
class VideoTrack:
    track_id: int
    codec: VideoCodec
    data: Data
    composition_time: int = 0


@dataclass(frozen=True, slots=True)
class VideoTag:
    """A video message body.

    `composition_time` is the signed PTS - DTS offset in milliseconds (0 when absent).
    `timestamp_offset_ns` is E-RTMP's ModEx nanosecond offset added to the message
    timestamp. `codec` is None only for E-RTMP command frames (no FourCC). A
    multitrack tag lists its `tracks`; its top-level codec, data and composition time
    repeat the first track's so single-track consumers keep working.
    """

    codec: VideoCodec | None
    frame_type: VideoFrameType
    packet_type: VideoPacketType
    data: Data = b""
    composition_time: int = 0
    enhanced: bool = False
    command: int | None = None
    timestamp_offset_ns: int = 0
    multitrack: MultitrackType | None = None
    tracks: tuple[VideoTrack, ...] = ()

    @property
    def is_keyframe(self) -> bool:
        return (
            self.frame_type in (VideoFrameType.KEY, VideoFrameType.GENERATED_KEY)
            and self.command is None
            and self.packet_type != VideoPacketType.METADATA
        )

    @property
    def is_sequence_header(self) -> bool:
        return self.command is None and self.packet_type in (
            VideoPacketType.SEQUENCE_START,
            VideoPacketType.MPEG2TS_SEQUENCE_START,
        )


@dataclass(frozen=True, slots=True)
class MultichannelConfig:
    channel_order: AudioChannelOrder
    channel_count: int
    # One AudioChannel byte per channel, for the custom order.
    channel_mapping: bytes = b""
    # AudioChannelMask bits, for the native order.
    channel_flags: int = 0


@dataclass(frozen=True, slots=True)
class AudioTrack:
    track_id: int
    codec: AudioCodec
    data: Data
    multichannel: MultichannelConfig | None = None


@dataclass(frozen=True, slots=True)
class AudioTag:
    """An audio message body.

    `sample_rate` (Hz), `sample_size` (bits) and `channels` are the legacy header's
    flags, 0 in E-RTMP tags (the codec configuration says). Multitrack tags work as
    for `VideoTag`.
    """

    codec: AudioCodec
    packet_type: AudioPacketType
    data: Data = b""
    enhanced: bool = False
    sample_rate: int = 0
    sample_size: int = 0
    channels: int = 0
    timestamp_offset_ns: int = 0
    multichannel: MultichannelConfig | None = None
    multitrack: MultitrackType | None = None
    tracks: tuple[AudioTrack, ...] = ()

    @property
    def is_sequence_header(self) -> bool:
        return self.packet_type == AudioPacketType.SEQUENCE_START


class _Body:
    __slots__ = ("end", "pos", "view")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.pos = 0
        self.end = len(view)

    def need(self, n: int, what: str) -> int:
        pos = self.pos
        if pos + n > self.end:
            raise TruncatedInput(f"{what}: need {n} bytes, {self.end - pos} left")
        self.pos = pos + n
        return pos

    def byte(self, what: str) -> int:
        return self.view[self.need(1, what)]

    def uint(self, n: int, what: str) -> int:
        p = self.need(n, what)
        return int.from_bytes(self.view[p : p + n], "big")

    def si24(self, what: str) -> int:
        value = self.uint(3, what)
        return value - (1 << 24) if value & 0x800000 else value

    def take(self, n: int, what: str) -> memoryview:
        p = self.need(n, what)
        return self.view[p : p + n]

    def rest(self) -> memoryview:
        view = self.view[self.pos : self.end]
        self.pos = self.end
        return view


def _view(payload: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(payload)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view.toreadonly()


def _read_mod_ex(body: _Body, packet_type: int, mod_ex: int) -> tuple[int, int]:
    """Consumes ModEx packets; returns (real packet type, nanosecond timestamp offset)."""
    offset_ns = 0
    while packet_type == mod_ex:
        size = body.byte("ModEx size") + 1
        if size == 256:
            size = body.uint(2, "ModEx size") + 1
        data = body.take(size, "ModEx data")
        following = body.byte("ModEx type")
        # Unknown ModEx types are skipped: they only modify, never carry, the media.
        if following >> 4 == _MOD_EX_TIMESTAMP_OFFSET_NANO and size >= 3:
            offset_ns = int.from_bytes(data[:3], "big")
        packet_type = following & 0x0F
    return packet_type, offset_ns


def _multitrack_type(value: int) -> MultitrackType:
    try:
        return MultitrackType(value)
    except ValueError:
        raise UnsupportedFeature(f"multitrack type {value}") from None


def _video_fourcc(body: _Body) -> VideoCodec:
    fourcc = body.take(4, "video FourCC").tobytes()
    codec = _VIDEO_FOURCCS.get(fourcc)
    if codec is None:
        raise UnsupportedFeature(f"video FourCC {fourcc!r}")
    return codec


def _audio_fourcc(body: _Body) -> AudioCodec:
    fourcc = body.take(4, "audio FourCC").tobytes()
    codec = _AUDIO_FOURCCS.get(fourcc)
    if codec is None:
        raise UnsupportedFeature(f"audio FourCC {fourcc!r}")
    return codec


def _split_tracks(
    body: _Body,
    multitrack: MultitrackType,
    shared: _Codec | None,
    read_fourcc: Callable[[_Body], _Codec],
) -> list[tuple[_Codec, int, _Body]]:
    """(codec, track id, track body) for each track of a multitrack body."""
    tracks: list[tuple[_Codec, int, _Body]] = []
    while True:
        codec = shared if shared is not None else read_fourcc(body)
        track_id = body.byte("track id")
        if multitrack == MultitrackType.ONE_TRACK:
            tracks.append((codec, track_id, _Body(body.rest())))
            return tracks
        size = body.uint(3, "track size")
        tracks.append((codec, track_id, _Body(body.take(size, "track"))))
        if body.pos >= body.end:
            return tracks


def parse_video(payload: bytes | bytearray | memoryview) -> VideoTag:
    """Parse a video message body. Raises ProtocolError; UnsupportedFeature for an
    unknown codec id, FourCC or packet type."""
    body = _Body(_view(payload))
    first = body.byte("video header")
    try:
        frame_type = VideoFrameType((first >> 4) & 0x07)
    except ValueError:
        raise ProtocolError(f"reserved video frame type {(first >> 4) & 0x07}") from None
    if first & _EX_HEADER:
        return _parse_ex_video(body, frame_type, first & 0x0F)

    codec = _LEGACY_VIDEO_CODECS.get(first & 0x0F)
    if codec is None:
        raise UnsupportedFeature(f"legacy video codec id {first & 0x0F}")
    packet_type = VideoPacketType.CODED_FRAMES
    composition_time = 0
    if codec in _COMPOSITION_CODECS:
        raw_type = body.byte("AVC packet type")
        if raw_type > VideoPacketType.SEQUENCE_END:
            raise ProtocolError(f"AVC packet type {raw_type}")
        packet_type = VideoPacketType(raw_type)
        composition_time = body.si24("composition time")
    command = body.byte("video command") if frame_type == VideoFrameType.COMMAND else None
    return VideoTag(
        codec,
        frame_type,
        packet_type,
        body.rest(),
        composition_time,
        command=command,
    )


# What OBS and FFmpeg send for nearly every frame: legacy AVC/HEVC coded frames and raw
# AAC. The connection reads these few header bytes in place, as a fast path: parse_video
# and parse_audio build several objects per frame, which at ~80 frames a second per
# stream costs more than reassembling the chunks. Everything else goes through them.
LEGACY_VIDEO_HEADER_SIZE = 5  # flags, AVC packet type, 24-bit composition time
LEGACY_AAC_HEADER_SIZE = 2  # flags, AAC packet type
_CODED_FRAMES = 1  # AVC packet type 1; a plain int is compared faster than the IntEnum
_AAC_SOUND_FORMAT = 10
_AAC_RAW = 1
# The first byte of a legacy coded frame -> (codec, keyframe): frame types 1-4 (2 and 3
# are inter frames) with codec id 7 (AVC) or 12 (HEVC). Command frames (5) and reserved
# frame types are left to parse_video.
_CODED_VIDEO_FIRST_BYTES = {
    (frame_type << 4) | codec_id: (
        _LEGACY_VIDEO_CODECS[codec_id],
        frame_type in (VideoFrameType.KEY, VideoFrameType.GENERATED_KEY),
    )
    for frame_type in (
        VideoFrameType.KEY,
        VideoFrameType.INTER,
        VideoFrameType.DISPOSABLE_INTER,
        VideoFrameType.GENERATED_KEY,
    )
    for codec_id in (7, 12)
}


def find_coded_video(payload: bytes) -> tuple[VideoCodec, bool, int] | None:
    """(codec, keyframe, composition time in ms) when `payload` is a legacy AVC or HEVC
    coded frame, whose data then starts at `LEGACY_VIDEO_HEADER_SIZE`; None for any other
    body, which `parse_video` reads (or rejects). Wherever this answers, `parse_video`
    agrees. Never raises."""
    if len(payload) < LEGACY_VIDEO_HEADER_SIZE or payload[1] != _CODED_FRAMES:
        return None
    known = _CODED_VIDEO_FIRST_BYTES.get(payload[0])
    if known is None:
        return None
    composition = (payload[2] << 16) | (payload[3] << 8) | payload[4]
    if composition & 0x800000:
        composition -= 1 << 24
    return known[0], known[1], composition


def is_raw_aac(payload: bytes) -> bool:
    """Whether `payload` is a legacy AAC raw frame, whose data starts at
    `LEGACY_AAC_HEADER_SIZE` (`parse_audio` agrees). Never raises."""
    return (
        len(payload) >= LEGACY_AAC_HEADER_SIZE
        and payload[0] >> 4 == _AAC_SOUND_FORMAT
        and payload[1] == _AAC_RAW
    )


def _parse_ex_video(body: _Body, frame_type: VideoFrameType, raw_type: int) -> VideoTag:
    raw_type, offset_ns = _read_mod_ex(body, raw_type, VideoPacketType.MOD_EX)
    try:
        packet_type = VideoPacketType(raw_type)
    except ValueError:
        raise UnsupportedFeature(f"video packet type {raw_type}") from None
    if frame_type == VideoFrameType.COMMAND and packet_type != VideoPacketType.METADATA:
        return VideoTag(
            None,
            frame_type,
            packet_type,
            command=body.byte("video command"),
            enhanced=True,
            timestamp_offset_ns=offset_ns,
        )
    if packet_type != VideoPacketType.MULTITRACK:
        codec = _video_fourcc(body)
        composition_time = _read_composition(body, codec, packet_type)
        return VideoTag(
            codec,
            frame_type,
            packet_type,
            body.rest(),
            composition_time,
            enhanced=True,
            timestamp_offset_ns=offset_ns,
        )

    second = body.byte("video multitrack header")
    multitrack = _multitrack_type(second >> 4)
    try:
        packet_type = VideoPacketType(second & 0x0F)
    except ValueError:
        raise UnsupportedFeature(f"video packet type {second & 0x0F}") from None
    if packet_type in (VideoPacketType.MULTITRACK, VideoPacketType.MOD_EX):
        raise ProtocolError(f"video multitrack of packet type {packet_type.name}")
    many_codecs = multitrack == MultitrackType.MANY_TRACKS_MANY_CODECS
    shared = None if many_codecs else _video_fourcc(body)
    tracks = []
    for codec, track_id, track_body in _split_tracks(body, multitrack, shared, _video_fourcc):
        composition_time = _read_composition(track_body, codec, packet_type)
        tracks.append(VideoTrack(track_id, codec, track_body.rest(), composition_time))
    head = tracks[0]
    return VideoTag(
        head.codec,
        frame_type,
        packet_type,
        head.data,
        head.composition_time,
        enhanced=True,
        timestamp_offset_ns=offset_ns,
        multitrack=multitrack,
        tracks=tuple(tracks),
    )


def _read_composition(body: _Body, codec: VideoCodec, packet_type: VideoPacketType) -> int:
    if packet_type == VideoPacketType.CODED_FRAMES and codec in _COMPOSITION_CODECS:
        return body.si24("composition time")
    return 0


def parse_audio(payload: bytes | bytearray | memoryview) -> AudioTag:
    """Parse an audio message body. Raises ProtocolError; UnsupportedFeature for an
    unknown sound format, FourCC or packet type."""
    body = _Body(_view(payload))
    first = body.byte("audio header")
    sound_format = first >> 4
    if sound_format == _SOUND_FORMAT_EX_HEADER:
        return _parse_ex_audio(body, first & 0x0F)
    codec = _LEGACY_AUDIO_CODECS.get(sound_format)
    if codec is None:
        raise UnsupportedFeature(f"legacy sound format {sound_format}")
    packet_type = AudioPacketType.CODED_FRAMES
    if codec == AudioCodec.AAC:
        raw_type = body.byte("AAC packet type")
        if raw_type > AudioPacketType.CODED_FRAMES:
            raise ProtocolError(f"AAC packet type {raw_type}")
        packet_type = AudioPacketType(raw_type)
    return AudioTag(
        codec,
        packet_type,
        body.rest(),
        sample_rate=_SAMPLE_RATES[(first >> 2) & 0x03],
        sample_size=16 if first & 0x02 else 8,
        channels=2 if first & 0x01 else 1,
    )


def _audio_packet_type(raw_type: int) -> AudioPacketType:
    try:
        return AudioPacketType(raw_type)
    except ValueError:
        raise UnsupportedFeature(f"audio packet type {raw_type}") from None


def _read_multichannel(body: _Body, packet_type: AudioPacketType) -> MultichannelConfig | None:
    if packet_type != AudioPacketType.MULTICHANNEL_CONFIG:
        return None
    raw_order = body.byte("audio channel order")
    try:
        order = AudioChannelOrder(raw_order)
    except ValueError:
        raise UnsupportedFeature(f"audio channel order {raw_order}") from None
    count = body.byte("audio channel count")
    if order == AudioChannelOrder.CUSTOM:
        return MultichannelConfig(order, count, body.take(count, "channel mapping").tobytes())
    if order == AudioChannelOrder.NATIVE:
        return MultichannelConfig(order, count, channel_flags=body.uint(4, "channel flags"))
    return MultichannelConfig(order, count)


def _parse_ex_audio(body: _Body, raw_type: int) -> AudioTag:
    raw_type, offset_ns = _read_mod_ex(body, raw_type, AudioPacketType.MOD_EX)
    packet_type = _audio_packet_type(raw_type)
    if packet_type != AudioPacketType.MULTITRACK:
        codec = _audio_fourcc(body)
        multichannel = _read_multichannel(body, packet_type)
        return AudioTag(
            codec,
            packet_type,
            body.rest(),
            enhanced=True,
            timestamp_offset_ns=offset_ns,
            multichannel=multichannel,
        )

    second = body.byte("audio multitrack header")
    multitrack = _multitrack_type(second >> 4)
    packet_type = _audio_packet_type(second & 0x0F)
    if packet_type in (AudioPacketType.MULTITRACK, AudioPacketType.MOD_EX):
        raise ProtocolError(f"audio multitrack of packet type {packet_type.name}")
    many_codecs = multitrack == MultitrackType.MANY_TRACKS_MANY_CODECS
    shared = None if many_codecs else _audio_fourcc(body)
    audio_tracks = []
    for codec, track_id, track_body in _split_tracks(body, multitrack, shared, _audio_fourcc):
        multichannel = _read_multichannel(track_body, packet_type)
        audio_tracks.append(AudioTrack(track_id, codec, track_body.rest(), multichannel))
    first_track = audio_tracks[0]
    return AudioTag(
        first_track.codec,
        packet_type,
        first_track.data,
        enhanced=True,
        timestamp_offset_ns=offset_ns,
        multichannel=first_track.multichannel,
        multitrack=multitrack,
        tracks=tuple(audio_tracks),
    )
