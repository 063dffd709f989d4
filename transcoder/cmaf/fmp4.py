"""Fragmented MP4 (CMAF) writing: the init segment from sequence headers, and fragments.

Hand-written rather than PyAV's mp4 muxer, for two reasons found with PyAV 16.1:
- PyAV cannot add an output stream without opening a codec context: ``start_encoding()``
  opens an *encoder* for every stream (a codec-less ``add_mux_stream`` came later, PyAV
  PR #2184, and is not in 16.1).
  For H.264 that is libx264, which replaces the publisher's avcC with its own Annex B
  headers (another profile); the mov muxer then "converts" our length-prefixed samples as
  Annex B: 3.4 MB of video came out as 37 KB. HEVC/AV1/VP9 would open x265/aom/vpx.
- PyAV muxes only through ``av_interleaved_write_frame`` and has no way to call
  ``av_write_frame(ctx, NULL)``, the ``frag_custom`` flush with which FFmpeg's own hlsenc
  and dashenc cut a fragment exactly where they choose. Automatic cuts (``frag_keyframe``,
  ``frag_duration``) follow the muxer's per-track rule, and the interleaver holds packets
  back until every stream has one queued, so we could not tell when a part was complete.
  A muxer per part (the trailer flushes) re-bases timestamps per muxer: with
  ``frag_discont`` the first fragment's tfdt came out as the first *pts*, later ones as dts.
The boxes needed are few and fixed (ISO/IEC 14496-12 8.8, ISO/IEC 14496-15, the AV1, VP9
and Opus ISOBMFF bindings), and writing them ourselves keeps the per-packet path to a few
Python operations. The tests have PyAV's FFmpeg open and decode every init segment,
part and segment written, for each codec.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from transcoder.cmaf.boxes import box, full_box
from transcoder.codecs import (
    CodecConfigError,
    parse_aac_config,
    parse_opus_head,
    parse_video_config,
)
from transcoder.codecs.audio import AAC_SAMPLING_FREQUENCIES
from transcoder.codecs.bits import BitReader
from transcoder.packets import TrackKind

VIDEO_TIMESCALE = 90_000  # MPEG's clock: milliseconds map to it exactly (x90)
OPUS_TIMESCALE = 48_000  # Opus always decodes at 48 kHz (RFC 7845)

# Sample flags (ISO/IEC 14496-12 8.8.3.1): a sync sample depends on no other
# (sample_depends_on = 2); any other sample depends on others and is not a sync sample.
SYNC_SAMPLE_FLAGS = 0x0200_0000
NON_SYNC_SAMPLE_FLAGS = 0x0101_0000

# tfhd / trun flags (8.8.7, 8.8.8)
_TFHD_DEFAULT_BASE_IS_MOOF = 0x02_0000
_TFHD_DEFAULT_SAMPLE_FLAGS = 0x00_0020
_TRUN_DATA_OFFSET = 0x001
_TRUN_DURATION = 0x100
_TRUN_SIZE = 0x200
_TRUN_FLAGS = 0x400
_TRUN_COMPOSITION_OFFSET = 0x800
_VIDEO_TRUN = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE | _TRUN_FLAGS
_VIDEO_TRUN |= _TRUN_COMPOSITION_OFFSET
_AUDIO_TRUN = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE

_U32 = struct.Struct(">I")
_VIDEO_ENTRY = struct.Struct(">IIIi")  # duration, size, flags, signed composition offset
_AUDIO_ENTRY = struct.Struct(">II")  # duration, size
_TRUN_HEAD = struct.Struct(">I4sIIi")  # size, type, version|flags, count, data offset
_TFDT = struct.Struct(">I4sIQ")  # size, type, version|flags, base media decode time
_VIDEO_TFHD = struct.Struct(">I4sII")  # size, type, version|flags, track id
_AUDIO_TFHD = struct.Struct(">I4sIII")  # ... and default sample flags
_MFHD = struct.Struct(">I4sII")  # size, type, version|flags, sequence number
_BOX_HEAD = struct.Struct(">I4s")

_UNITY_MATRIX = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # ISO 639-2 "und", packed as three 5-bit letters

# FLV codec name -> (FourCC for transcoder.codecs, sample entry, configuration box)
_VIDEO_ENTRIES = {
    "avc": ("avc1", b"avc1", b"avcC"),
    # hvc1, not hev1: parameter sets are in the sample entry (Apple players require hvc1).
    "hevc": ("hvc1", b"hvc1", b"hvcC"),
    "av1": ("av01", b"av01", b"av1C"),
    "vp9": ("vp09", b"vp09", b"vpcC"),
}
AUDIO_CODECS = frozenset({"aac", "opus"})
VIDEO_CODECS = frozenset(_VIDEO_ENTRIES)


class UnsupportedCodec(ValueError):
    """A codec the packager cannot put in fMP4, or a sequence header it cannot read."""


@dataclass(frozen=True, slots=True)
class TrackFormat:
    """One track of the init segment, built from a sequence header.

    ``timescale`` is the track's clock in ticks per second: every decode time, duration
    and composition offset of its samples is in these ticks. ``frame_duration`` is the
    fixed duration of one coded audio frame in ticks when the codec has one (AAC), else
    None. ``record`` is the sequence header as received, to notice a change.
    """

    track_id: int
    kind: TrackKind
    codec: str
    codec_string: str
    timescale: int
    sample_entry: bytes = b""
    record: bytes = b""
    width: int | None = None
    height: int | None = None
    frame_rate: Fraction | None = None
    sample_rate: int | None = None
    channels: int | None = None
    frame_duration: int | None = None


class Sample:
    """One coded frame on its way into a fragment.

    Mutable (unlike the packager's values) because a sample's duration is only known when
    the next sample of its track arrives. Times are in the track's timescale ticks;
    ``data`` is owned by the sample (a copy of the publisher's bytes).
    """

    __slots__ = ("composition_offset", "data", "dts", "duration", "received_at", "sync")

    def __init__(
        self,
        data: bytes,
        dts: int,
        sync: bool,
        composition_offset: int = 0,
        received_at: float = 0.0,
    ) -> None:
        self.data = data
        self.dts = dts
        self.duration = 0
        self.sync = sync
        self.composition_offset = composition_offset
        self.received_at = received_at


# ---------------------------------------------------------------------------------------
# Track formats from sequence headers


def video_format(
    track_id: int,
    codec: str,
    record: bytes,
    keyframe: bytes | memoryview | None = None,
    size_hint: tuple[int, int] | None = None,
) -> TrackFormat:
    """Describe a video track from its FLV codec name and configuration record.

    Display size comes from the record (SPS), else from ``keyframe`` (VP9 signals it in
    key frames only), else from ``size_hint`` (onMetaData). Raises UnsupportedCodec.
    """
    entry = _VIDEO_ENTRIES.get(codec)
    if entry is None:
        raise UnsupportedCodec(f"video codec {codec!r} cannot be packaged in fMP4")
    fourcc, entry_type, config_type = entry
    try:
        config = parse_video_config(fourcc, record)
    except CodecConfigError as error:
        raise UnsupportedCodec(f"unreadable {fourcc} sequence header: {error}") from error
    width, height = config.width, config.height
    if (width is None or height is None) and codec == "vp9" and keyframe is not None:
        size = vp9_frame_size(keyframe)
        if size is not None:
            width, height = size
    if (width is None or height is None) and size_hint is not None:
        width, height = size_hint
    sample_entry = _visual_sample_entry(
        entry_type, width or 0, height or 0, box(config_type, record)
    )
    return TrackFormat(
        track_id=track_id,
        kind=TrackKind.VIDEO,
        codec=codec,
        codec_string=config.codec_string,
        timescale=VIDEO_TIMESCALE,
        sample_entry=sample_entry,
        record=record,
        width=width,
        height=height,
        frame_rate=config.frame_rate,
    )


def audio_format(track_id: int, codec: str, record: bytes) -> TrackFormat:
    """Describe an audio track from its FLV codec name and configuration record
    (AudioSpecificConfig or OpusHead). Raises UnsupportedCodec."""
    try:
        if codec == "aac":
            config = parse_aac_config(record)
            core_rate, frame_samples = _aac_core(record)
        elif codec == "opus":
            config = parse_opus_head(record)
        else:
            raise UnsupportedCodec(f"audio codec {codec!r} cannot be packaged in fMP4")
    except CodecConfigError as error:
        raise UnsupportedCodec(f"unreadable {codec} sequence header: {error}") from error
    channels = config.channels or 2
    if codec == "opus":
        return TrackFormat(
            track_id=track_id,
            kind=TrackKind.AUDIO,
            codec=codec,
            codec_string=config.codec_string,
            timescale=OPUS_TIMESCALE,
            sample_entry=_audio_sample_entry(b"Opus", channels, OPUS_TIMESCALE, _dops(record)),
            record=record,
            sample_rate=OPUS_TIMESCALE,
            channels=channels,
        )
    rate = config.sample_rate or core_rate
    return TrackFormat(
        track_id=track_id,
        kind=TrackKind.AUDIO,
        codec=codec,
        codec_string=config.codec_string,
        # The decoder's output rate, so one tick is one output sample; with SBR a frame
        # of 1024 core samples lasts 2048 ticks.
        timescale=rate,
        sample_entry=_audio_sample_entry(b"mp4a", channels, rate, _esds(record)),
        record=record,
        sample_rate=rate,
        channels=channels,
        frame_duration=frame_samples * rate // core_rate,
    )


# Object types whose GASpecificConfig starts with frameLengthFlag (1024 or 960 samples).
_AAC_GENERAL_AUDIO = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})


def _aac_core(record: bytes) -> tuple[int, int]:
    """(core sampling rate, samples per frame) of an AudioSpecificConfig."""
    r = BitReader(record)

    def object_type() -> int:
        aot = r.u(5)
        return 32 + r.u(6) if aot == 31 else aot

    def rate() -> int:
        index = r.u(4)
        if index == 15:
            return r.u(24)
        if index >= len(AAC_SAMPLING_FREQUENCIES):
            raise CodecConfigError(f"reserved samplingFrequencyIndex {index}")
        return AAC_SAMPLING_FREQUENCIES[index]

    aot = object_type()
    core_rate = rate()
    r.skip(4)  # channelConfiguration
    if aot in (5, 29):  # explicit SBR/PS: extension rate, then the core object type
        rate()
        aot = object_type()
        if aot == 22:
            r.skip(4)
    frame_samples = 1024
    if aot in _AAC_GENERAL_AUDIO and r.flag():  # frameLengthFlag
        frame_samples = 960
    if core_rate <= 0:
        raise CodecConfigError("AAC sampling rate of 0 Hz")
    return core_rate, frame_samples


def vp9_frame_size(frame: bytes | memoryview) -> tuple[int, int] | None:
    """Display (render) size from a VP9 key frame's uncompressed header (VP9 spec 6.2),
    or None when the frame is not a key frame or is too short."""
    try:
        r = BitReader(bytes(frame[:32]))
        if r.u(2) != 2:  # frame_marker
            return None
        low, high = r.u(1), r.u(1)
        profile = high << 1 | low
        if profile == 3:
            r.skip(1)
        if r.flag() or r.flag():  # show_existing_frame, or frame_type 1 (not a key frame)
            return None
        r.skip(2)  # show_frame, error_resilient_mode
        if r.u(24) != 0x498342:  # frame_sync_code
            return None
        if profile >= 2:
            r.skip(1)  # ten_or_twelve_bit
        color_space = r.u(3)
        if color_space != 7:  # not CS_RGB
            r.skip(1)  # color_range
            if profile in (1, 3):
                r.skip(3)  # subsampling_x, subsampling_y, reserved_zero
        elif profile in (1, 3):
            r.skip(1)
        width, height = r.u(16) + 1, r.u(16) + 1
        if r.flag():  # render_and_frame_size_different
            width, height = r.u(16) + 1, r.u(16) + 1
        return width, height
    except CodecConfigError:
        return None


def _visual_sample_entry(kind: bytes, width: int, height: int, config: bytes) -> bytes:
    return box(
        kind,
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),  # pre_defined, reserved, pre_defined[3]
        struct.pack(">HHII", width & 0xFFFF, height & 0xFFFF, 0x480000, 0x480000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),  # depth, pre_defined
        config,
    )


def _audio_sample_entry(kind: bytes, channels: int, rate: int, config: bytes) -> bytes:
    # samplerate is 16.16 fixed point; rates above 65535 Hz do not fit and are left 0,
    # the decoder reads the real one from the configuration box.
    fixed_rate = rate << 16 if rate < 0x10000 else 0
    return box(
        kind,
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(8),  # reserved
        struct.pack(">HH", channels, 16),  # channelcount, samplesize
        bytes(4),  # pre_defined, reserved
        struct.pack(">I", fixed_rate),
        config,
    )


def _descriptor(tag: int, *payload: bytes) -> bytes:
    """An MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3) with its expandable size field."""
    body = b"".join(payload)
    size = len(body)
    length = bytearray([size & 0x7F])
    size >>= 7
    while size:
        length.insert(0, 0x80 | (size & 0x7F))
        size >>= 7
    return bytes([tag]) + bytes(length) + body


def _esds(audio_specific_config: bytes) -> bytes:
    decoder_specific = _descriptor(0x05, audio_specific_config)
    # objectTypeIndication 0x40 (MPEG-4 Audio), streamType 5 (audio) << 2 | reserved 1;
    # buffer size and bitrates 0: unknown before the stream has run.
    decoder_config = _descriptor(0x04, bytes([0x40, 0x15]), bytes(11), decoder_specific)
    sl_config = _descriptor(0x06, b"\x02")  # predefined: MP4
    es = _descriptor(0x03, struct.pack(">HB", 0, 0), decoder_config, sl_config)
    return full_box(b"esds", 0, 0, es)


def _dops(opus_head: bytes) -> bytes:
    """OpusSpecificBox (Opus in ISOBMFF 4.3.2): OpusHead's fields, big-endian."""
    channels = opus_head[9]
    pre_skip, input_rate, gain = struct.unpack_from("<HIh", opus_head, 10)
    family = opus_head[18]
    body = struct.pack(">BBHIhB", 0, channels, pre_skip, input_rate, gain, family)
    if family != 0:
        body += opus_head[19 : 21 + channels]  # stream count, coupled count, mapping
    return box(b"dOps", body)


# ---------------------------------------------------------------------------------------
# Init segment


def write_init(tracks: Sequence[TrackFormat]) -> bytes:
    """ftyp + moov for fragmented tracks (no samples in moov; mvex/trex per track)."""
    # iso6: default-base-is-moof, tfdt v1 and signed composition offsets (trun v1). No
    # cmfc brand: audio and video muxed in one file is not a CMAF track (one track each),
    # though every fragment has the CMAF chunk layout hls.js and Safari play.
    ftyp = box(b"ftyp", b"iso6", _U32.pack(0), b"iso6mp41")
    next_track = max(track.track_id for track in tracks) + 1
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, 0),  # times, timescale (ms), duration unknown
        struct.pack(">iH", 0x10000, 0x100),  # rate 1.0, volume 1.0
        bytes(10),
        _UNITY_MATRIX,
        bytes(24),
        _U32.pack(next_track),
    )
    traks = [_trak(track) for track in tracks]
    trexs = [
        full_box(b"trex", 0, 0, struct.pack(">IIIII", track.track_id, 1, 0, 0, 0))
        for track in tracks
    ]
    return ftyp + box(b"moov", mvhd, *traks, box(b"mvex", *trexs))


def _trak(track: TrackFormat) -> bytes:
    video = track.kind is TrackKind.VIDEO
    width = (track.width or 0) << 16 if video else 0
    height = (track.height or 0) << 16 if video else 0
    tkhd = full_box(
        b"tkhd",
        0,
        0x3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, track.track_id, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x100, 0),  # layer, group, volume
        _UNITY_MATRIX,
        struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF),
    )
    mdhd = full_box(
        b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, 0, _LANGUAGE_UND, 0)
    )
    handler, name = (b"vide", b"golive video\0") if video else (b"soun", b"golive audio\0")
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name)
    media_header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, _U32.pack(1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, _U32.pack(1), track.sample_entry),
        full_box(b"stts", 0, 0, _U32.pack(0)),
        full_box(b"stsc", 0, 0, _U32.pack(0)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, _U32.pack(0)),
    )
    minf = box(b"minf", media_header, dinf, stbl)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))


# ---------------------------------------------------------------------------------------
# Fragments


def write_fragment(
    sequence_number: int, runs: Sequence[tuple[TrackFormat, Sequence[Sample]]]
) -> bytes:
    """One moof + mdat holding each track's samples as one run, tracks in the given order.

    Empty runs are left out; at least one run must have samples. Each traf's tfdt is its
    first sample's decode time; data offsets count from the moof (default-base-is-moof),
    so the fragment is position independent and can be concatenated with others.
    """
    runs = [(track, samples) for track, samples in runs if samples]
    if not runs:
        raise ValueError("a fragment needs at least one sample")
    traf_sizes = []
    for track, samples in runs:
        video = track.kind is TrackKind.VIDEO
        entry = _VIDEO_ENTRY.size if video else _AUDIO_ENTRY.size
        tfhd = _VIDEO_TFHD.size if video else _AUDIO_TFHD.size
        traf_sizes.append(8 + tfhd + _TFDT.size + _TRUN_HEAD.size + entry * len(samples))
    moof_size = 8 + _MFHD.size + sum(traf_sizes)
    out: list[bytes] = [
        _BOX_HEAD.pack(moof_size, b"moof"),
        _MFHD.pack(_MFHD.size, b"mfhd", 0, sequence_number & 0xFFFFFFFF),
    ]
    data_offset = moof_size + 8
    payload: list[bytes] = []
    for (track, samples), traf_size in zip(runs, traf_sizes, strict=True):
        out.append(_BOX_HEAD.pack(traf_size, b"traf"))
        count = len(samples)
        if track.kind is TrackKind.VIDEO:
            out.append(
                _VIDEO_TFHD.pack(
                    _VIDEO_TFHD.size, b"tfhd", _TFHD_DEFAULT_BASE_IS_MOOF, track.track_id
                )
            )
            out.append(_TFDT.pack(_TFDT.size, b"tfdt", 1 << 24, samples[0].dts))
            trun_size = _TRUN_HEAD.size + _VIDEO_ENTRY.size * count
            # version 1: composition offsets are signed (FLV's are si24)
            out.append(
                _TRUN_HEAD.pack(trun_size, b"trun", 1 << 24 | _VIDEO_TRUN, count, data_offset)
            )
            pack = _VIDEO_ENTRY.pack
            for sample in samples:
                flags = SYNC_SAMPLE_FLAGS if sample.sync else NON_SYNC_SAMPLE_FLAGS
                out.append(
                    pack(sample.duration, len(sample.data), flags, sample.composition_offset)
                )
                payload.append(sample.data)
                data_offset += len(sample.data)
        else:
            flags = _TFHD_DEFAULT_BASE_IS_MOOF | _TFHD_DEFAULT_SAMPLE_FLAGS
            out.append(
                _AUDIO_TFHD.pack(
                    _AUDIO_TFHD.size, b"tfhd", flags, track.track_id, SYNC_SAMPLE_FLAGS
                )
            )
            out.append(_TFDT.pack(_TFDT.size, b"tfdt", 1 << 24, samples[0].dts))
            trun_size = _TRUN_HEAD.size + _AUDIO_ENTRY.size * count
            out.append(_TRUN_HEAD.pack(trun_size, b"trun", _AUDIO_TRUN, count, data_offset))
            pack = _AUDIO_ENTRY.pack
            for sample in samples:
                out.append(pack(sample.duration, len(sample.data)))
                payload.append(sample.data)
                data_offset += len(sample.data)
    mdat_size = data_offset - moof_size
    out.append(_BOX_HEAD.pack(mdat_size, b"mdat"))
    out.extend(payload)
    return b"".join(out)
