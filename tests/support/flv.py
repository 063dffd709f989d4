"""FLV tag bodies from tags: the inverse of `ingest.protocol.flv`'s parsers, for tests
(round trips, hand-made Enhanced RTMP messages). The server never writes FLV."""

from __future__ import annotations

from ingest.protocol.flv import (
    _AUDIO_FOURCCS,
    _COMPOSITION_CODECS,
    _EX_HEADER,
    _LEGACY_AUDIO_CODECS,
    _LEGACY_VIDEO_CODECS,
    _MOD_EX_TIMESTAMP_OFFSET_NANO,
    _SAMPLE_RATES,
    _SOUND_FORMAT_EX_HEADER,
    _VIDEO_FOURCCS,
    AudioChannelOrder,
    AudioCodec,
    AudioPacketType,
    AudioTag,
    MultichannelConfig,
    MultitrackType,
    VideoCodec,
    VideoPacketType,
    VideoTag,
)

_LEGACY_VIDEO_IDS = {codec: codec_id for codec_id, codec in _LEGACY_VIDEO_CODECS.items()}
_VIDEO_FOURCC_BYTES = {codec: fourcc for fourcc, codec in _VIDEO_FOURCCS.items()}
_LEGACY_AUDIO_IDS = {codec: codec_id for codec_id, codec in _LEGACY_AUDIO_CODECS.items()}
_AUDIO_FOURCC_BYTES = {codec: fourcc for fourcc, codec in _AUDIO_FOURCCS.items()}


def _si24(value: int) -> bytes:
    if not -(1 << 23) <= value < (1 << 23):
        raise ValueError(f"composition time {value} does not fit 24 bits")
    return (value & 0xFFFFFF).to_bytes(3, "big")


def _mod_ex_prefix(first: int, offset_ns: int, next_type: int, mod_ex: int) -> bytes:
    if not offset_ns:
        return bytes((first | next_type,))
    if not 0 <= offset_ns < (1 << 24):
        raise ValueError(f"timestamp offset {offset_ns} ns does not fit 24 bits")
    return (
        bytes((first | mod_ex, 2))
        + offset_ns.to_bytes(3, "big")
        + bytes(((_MOD_EX_TIMESTAMP_OFFSET_NANO << 4) | next_type,))
    )


def _check_tracks(multitrack: MultitrackType, count: int) -> None:
    if count == 0 or (multitrack == MultitrackType.ONE_TRACK and count != 1):
        raise ValueError(f"{multitrack.name} with {count} tracks")


def _shared_codec(codecs: set[VideoCodec] | set[AudioCodec], multitrack: MultitrackType) -> None:
    if multitrack != MultitrackType.MANY_TRACKS_MANY_CODECS and len(codecs) != 1:
        raise ValueError(f"{multitrack.name} tracks must share one codec")


def encode_video(tag: VideoTag) -> bytes:
    """The message body for `tag`. Raises ValueError for what the format cannot carry
    (a codec without a legacy id in a legacy tag, mismatched multitrack codecs)."""
    if not tag.enhanced:
        if tag.codec is None or tag.codec not in _LEGACY_VIDEO_IDS:
            raise ValueError(f"{tag.codec} has no legacy FLV codec id")
        out = bytearray(((tag.frame_type << 4) | _LEGACY_VIDEO_IDS[tag.codec],))
        if tag.codec in _COMPOSITION_CODECS:
            if tag.packet_type > VideoPacketType.SEQUENCE_END:
                raise ValueError(f"legacy AVC/HEVC cannot carry {tag.packet_type.name}")
            out.append(tag.packet_type)
            out += _si24(tag.composition_time)
        if tag.command is not None:
            out.append(tag.command)
        out += tag.data
        return bytes(out)

    first = _EX_HEADER | (tag.frame_type << 4)
    if tag.command is not None:
        out = bytearray(
            _mod_ex_prefix(first, tag.timestamp_offset_ns, tag.packet_type, VideoPacketType.MOD_EX)
        )
        out.append(tag.command)
        return bytes(out)
    if tag.multitrack is None:
        if tag.codec is None:
            raise ValueError("an E-RTMP video tag needs a codec")
        out = bytearray(
            _mod_ex_prefix(first, tag.timestamp_offset_ns, tag.packet_type, VideoPacketType.MOD_EX)
        )
        out += _VIDEO_FOURCC_BYTES[tag.codec]
        if tag.packet_type == VideoPacketType.CODED_FRAMES and tag.codec in _COMPOSITION_CODECS:
            out += _si24(tag.composition_time)
        out += tag.data
        return bytes(out)

    multitrack = tag.multitrack
    _check_tracks(multitrack, len(tag.tracks))
    _shared_codec({track.codec for track in tag.tracks}, multitrack)
    out = bytearray(
        _mod_ex_prefix(
            first, tag.timestamp_offset_ns, VideoPacketType.MULTITRACK, VideoPacketType.MOD_EX
        )
    )
    out.append((multitrack << 4) | tag.packet_type)
    if multitrack != MultitrackType.MANY_TRACKS_MANY_CODECS:
        out += _VIDEO_FOURCC_BYTES[tag.tracks[0].codec]
    for track in tag.tracks:
        if multitrack == MultitrackType.MANY_TRACKS_MANY_CODECS:
            out += _VIDEO_FOURCC_BYTES[track.codec]
        out.append(track.track_id)
        track_body = bytearray()
        if tag.packet_type == VideoPacketType.CODED_FRAMES and track.codec in _COMPOSITION_CODECS:
            track_body += _si24(track.composition_time)
        track_body += track.data
        if multitrack != MultitrackType.ONE_TRACK:
            out += len(track_body).to_bytes(3, "big")
        out += track_body
    return bytes(out)


def _encode_multichannel(config: MultichannelConfig | None, out: bytearray) -> None:
    if config is None:
        raise ValueError("a MultichannelConfig packet needs its configuration")
    out += bytes((config.channel_order, config.channel_count))
    if config.channel_order == AudioChannelOrder.CUSTOM:
        if len(config.channel_mapping) != config.channel_count:
            raise ValueError("custom channel mapping needs one byte per channel")
        out += config.channel_mapping
    elif config.channel_order == AudioChannelOrder.NATIVE:
        out += config.channel_flags.to_bytes(4, "big")


def encode_audio(tag: AudioTag) -> bytes:
    """The message body for `tag`. A legacy tag with sample_rate, sample_size and
    channels left at 0 gets 44.1 kHz, 16-bit stereo, the flags AAC always carries.
    Raises ValueError for what the format cannot carry."""
    if not tag.enhanced:
        codec_id = _LEGACY_AUDIO_IDS.get(tag.codec)
        if codec_id is None:
            raise ValueError(f"{tag.codec} has no legacy FLV sound format")
        rate = tag.sample_rate or 44100
        if rate not in _SAMPLE_RATES:
            raise ValueError(f"legacy FLV cannot signal {rate} Hz")
        flags = (
            (codec_id << 4)
            | (_SAMPLE_RATES.index(rate) << 2)
            | (0x02 if (tag.sample_size or 16) == 16 else 0)
            | (0x01 if (tag.channels or 2) == 2 else 0)
        )
        out = bytearray((flags,))
        if tag.codec == AudioCodec.AAC:
            if tag.packet_type > AudioPacketType.CODED_FRAMES:
                raise ValueError(f"legacy AAC cannot carry {tag.packet_type.name}")
            out.append(tag.packet_type)
        out += tag.data
        return bytes(out)

    first = _SOUND_FORMAT_EX_HEADER << 4
    if tag.multitrack is None:
        out = bytearray(
            _mod_ex_prefix(first, tag.timestamp_offset_ns, tag.packet_type, AudioPacketType.MOD_EX)
        )
        out += _AUDIO_FOURCC_BYTES[tag.codec]
        if tag.packet_type == AudioPacketType.MULTICHANNEL_CONFIG:
            _encode_multichannel(tag.multichannel, out)
        out += tag.data
        return bytes(out)

    multitrack = tag.multitrack
    _check_tracks(multitrack, len(tag.tracks))
    _shared_codec({track.codec for track in tag.tracks}, multitrack)
    out = bytearray(
        _mod_ex_prefix(
            first, tag.timestamp_offset_ns, AudioPacketType.MULTITRACK, AudioPacketType.MOD_EX
        )
    )
    out.append((multitrack << 4) | tag.packet_type)
    if multitrack != MultitrackType.MANY_TRACKS_MANY_CODECS:
        out += _AUDIO_FOURCC_BYTES[tag.tracks[0].codec]
    for track in tag.tracks:
        if multitrack == MultitrackType.MANY_TRACKS_MANY_CODECS:
            out += _AUDIO_FOURCC_BYTES[track.codec]
        out.append(track.track_id)
        track_body = bytearray()
        if tag.packet_type == AudioPacketType.MULTICHANNEL_CONFIG:
            _encode_multichannel(track.multichannel, track_body)
        track_body += track.data
        if multitrack != MultitrackType.ONE_TRACK:
            out += len(track_body).to_bytes(3, "big")
        out += track_body
    return bytes(out)
