from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.protocol.amf0 import decode_values, encode_values
from ingest.protocol.errors import ProtocolError, TruncatedInput, UnsupportedFeature
from ingest.protocol.flv import (
    LEGACY_AAC_HEADER_SIZE,
    LEGACY_VIDEO_HEADER_SIZE,
    AudioChannelOrder,
    AudioCodec,
    AudioPacketType,
    AudioTag,
    AudioTrack,
    MultichannelConfig,
    MultitrackType,
    VideoCodec,
    VideoFrameType,
    VideoPacketType,
    VideoTag,
    VideoTrack,
    find_coded_video,
    is_raw_aac,
    parse_audio,
    parse_video,
)
from tests.support.flv import encode_audio, encode_video

KEY = VideoFrameType.KEY
INTER = VideoFrameType.INTER


# Legacy video


def test_legacy_avc_sequence_header() -> None:
    tag = parse_video(b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f")

    assert (tag.codec, tag.frame_type, tag.packet_type) == (
        VideoCodec.AVC,
        KEY,
        VideoPacketType.SEQUENCE_START,
    )
    assert tag.is_sequence_header
    assert tag.is_keyframe
    assert not tag.enhanced
    assert bytes(tag.data) == b"\x01\x64\x00\x1f"


def test_legacy_avc_composition_time_is_signed_24_bit() -> None:
    tag = parse_video(b"\x27\x01\xff\xff\xd8" + b"nalu")

    assert tag.composition_time == -40
    assert tag.packet_type == VideoPacketType.CODED_FRAMES
    assert not tag.is_keyframe


def test_legacy_avc_end_of_sequence() -> None:
    assert parse_video(b"\x17\x02\x00\x00\x00").packet_type == VideoPacketType.SEQUENCE_END


def test_codec_id_12_is_the_common_hevc_extension() -> None:
    tag = parse_video(b"\x1c\x01\x00\x00\x28" + b"hevc-nalu")

    assert (tag.codec, tag.composition_time) == (VideoCodec.HEVC, 40)


def test_legacy_codecs_without_avc_header_carry_data_right_after_the_first_byte() -> None:
    tag = parse_video(b"\x24" + b"vp6")

    assert (tag.codec, tag.packet_type, bytes(tag.data)) == (
        VideoCodec.VP6,
        VideoPacketType.CODED_FRAMES,
        b"vp6",
    )


def test_unknown_legacy_codec_id_is_unsupported() -> None:
    with pytest.raises(UnsupportedFeature, match="codec id 13"):
        parse_video(b"\x1d\x00")


def test_reserved_frame_type_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="frame type"):
        parse_video(b"\x07\x00\x00\x00\x00")


def test_truncated_avc_header_is_truncated_input() -> None:
    with pytest.raises(TruncatedInput):
        parse_video(b"\x17\x01\x00")


def test_parsed_data_is_a_read_only_view_not_a_copy() -> None:
    payload = bytearray(b"\x17\x01\x00\x00\x00" + b"x" * 100)

    tag = parse_video(payload)

    assert isinstance(tag.data, memoryview)
    assert tag.data.readonly
    assert tag.data.obj is payload


# Enhanced video


def test_enhanced_hevc_coded_frames_carry_a_composition_time() -> None:
    tag = parse_video(b"\x91hvc1\x00\x00\x50" + b"nalu")

    assert tag.enhanced
    assert (tag.codec, tag.frame_type, tag.packet_type, tag.composition_time) == (
        VideoCodec.HEVC,
        KEY,
        VideoPacketType.CODED_FRAMES,
        80,
    )
    assert bytes(tag.data) == b"nalu"


def test_enhanced_av1_coded_frames_have_no_composition_time() -> None:
    tag = parse_video(b"\xa1av01" + b"\x12\x00obu")

    assert (tag.codec, tag.composition_time, bytes(tag.data)) == (
        VideoCodec.AV1,
        0,
        b"\x12\x00obu",
    )


def test_coded_frames_x_has_no_composition_time_even_for_hevc() -> None:
    tag = parse_video(b"\xa3hvc1" + b"nalu")

    assert (tag.packet_type, tag.composition_time, bytes(tag.data)) == (
        VideoPacketType.CODED_FRAMES_X,
        0,
        b"nalu",
    )


@pytest.mark.parametrize(
    ("fourcc", "codec"),
    [
        (b"avc1", VideoCodec.AVC),
        (b"hvc1", VideoCodec.HEVC),
        (b"av01", VideoCodec.AV1),
        (b"vp09", VideoCodec.VP9),
    ],
)
def test_enhanced_sequence_start_recognises_each_fourcc(fourcc: bytes, codec: VideoCodec) -> None:
    tag = parse_video(b"\x90" + fourcc + b"config")

    assert (tag.codec, tag.is_sequence_header, bytes(tag.data)) == (codec, True, b"config")


def test_metadata_packet_ignores_the_command_frame_type_ffmpeg_writes() -> None:
    body = encode_values("colorInfo", {"colorConfig": {"bitDepth": 8.0}})

    tag = parse_video(b"\xd4hvc1" + body)

    assert tag.packet_type == VideoPacketType.METADATA
    assert tag.command is None
    assert not tag.is_keyframe
    assert decode_values(tag.data) == ["colorInfo", {"colorConfig": {"bitDepth": 8.0}}]


def test_enhanced_command_frame_carries_only_the_command() -> None:
    tag = parse_video(b"\xd1\x01")

    assert (tag.codec, tag.command, tag.is_keyframe) == (None, 1, False)


def test_mod_ex_timestamp_offset_precedes_the_real_packet_type() -> None:
    tag = parse_video(b"\x97\x02\x07\xa1\x20\x01hvc1\x00\x00\x00nalu")

    assert tag.timestamp_offset_ns == 0x07A120
    assert (tag.packet_type, tag.codec, bytes(tag.data)) == (
        VideoPacketType.CODED_FRAMES,
        VideoCodec.HEVC,
        b"nalu",
    )


def test_mod_ex_with_a_16_bit_size_and_an_unknown_type_is_skipped() -> None:
    mod_ex = b"\xff" + (299).to_bytes(2, "big") + bytes(300) + b"\x53"

    tag = parse_video(b"\x97" + mod_ex + b"av01obu")

    assert (tag.packet_type, tag.timestamp_offset_ns) == (VideoPacketType.CODED_FRAMES_X, 0)


def test_one_track_multitrack_has_a_track_id_and_no_size() -> None:
    tag = parse_video(b"\x96\x01hvc1\x02\x00\x00\x28nalu")

    assert tag.multitrack == MultitrackType.ONE_TRACK
    assert tag.tracks == (VideoTrack(2, VideoCodec.HEVC, b"nalu", 40),)
    assert (tag.codec, bytes(tag.data), tag.composition_time) == (VideoCodec.HEVC, b"nalu", 40)


def test_many_tracks_share_one_codec_and_carry_sizes() -> None:
    body = b"\x96\x11avc1" + b"\x00\x00\x00\x05\x00\x00\x00ab" + b"\x01\x00\x00\x04\x00\x00\x00c"

    tag = parse_video(body)

    assert tag.multitrack == MultitrackType.MANY_TRACKS
    assert tag.tracks == (
        VideoTrack(0, VideoCodec.AVC, b"ab"),
        VideoTrack(1, VideoCodec.AVC, b"c"),
    )


def test_many_tracks_many_codecs_name_a_codec_per_track() -> None:
    body = b"\x96\x20" + b"hvc1\x00\x00\x00\x03cfg" + b"av01\x01\x00\x00\x02ob"

    tag = parse_video(body)

    assert tag.packet_type == VideoPacketType.SEQUENCE_START
    assert [(t.track_id, t.codec, bytes(t.data)) for t in tag.tracks] == [
        (0, VideoCodec.HEVC, b"cfg"),
        (1, VideoCodec.AV1, b"ob"),
    ]


def test_track_size_beyond_the_payload_is_truncated_input() -> None:
    with pytest.raises(TruncatedInput):
        parse_video(b"\x96\x13av01\x00\x00\x01\x00ob")


def test_unknown_fourcc_is_unsupported() -> None:
    with pytest.raises(UnsupportedFeature, match="FourCC"):
        parse_video(b"\x91xxxx\x00\x00\x00")


def test_unknown_enhanced_packet_type_is_unsupported() -> None:
    with pytest.raises(UnsupportedFeature, match="packet type 9"):
        parse_video(b"\x99hvc1")


# The fast path the connection takes for the common bodies


def _parsed_video(payload: bytes) -> VideoTag | None:
    try:
        return parse_video(payload)
    except ProtocolError:
        return None


def _parsed_audio(payload: bytes) -> AudioTag | None:
    try:
        return parse_audio(payload)
    except ProtocolError:
        return None


# First bytes around the legacy AVC (7) and HEVC (12) codec ids, every frame type, with
# and without the E-RTMP header bit; then the packet type; then anything.
video_bodies = st.builds(
    lambda first, packet_type, rest: bytes((first, packet_type)) + rest,
    st.sampled_from([(high << 4) | low for high in range(16) for low in (2, 6, 7, 12, 13)]),
    st.integers(0, 4) | st.integers(0, 255),
    st.binary(max_size=8),
) | st.binary(max_size=8)


@given(video_bodies)
@settings(max_examples=2000)
def test_the_video_fast_path_agrees_with_parse_video(payload: bytes) -> None:
    fast = find_coded_video(payload)
    tag = _parsed_video(payload)
    if fast is None:
        # Declined only what is not a legacy AVC/HEVC coded frame.
        assert (
            tag is None
            or tag.enhanced
            or tag.codec not in (VideoCodec.AVC, VideoCodec.HEVC)
            or tag.packet_type != VideoPacketType.CODED_FRAMES
            or tag.command is not None
        )
        return
    assert tag is not None
    assert not tag.enhanced
    assert tag.packet_type == VideoPacketType.CODED_FRAMES
    assert (tag.codec, tag.is_keyframe, tag.composition_time) == fast
    assert bytes(tag.data) == payload[LEGACY_VIDEO_HEADER_SIZE:]


@given(
    st.builds(
        lambda first, packet_type, rest: bytes((first, packet_type)) + rest,
        st.integers(0, 255),
        st.integers(0, 3),
        st.binary(max_size=8),
    )
    | st.binary(max_size=3)
)
@settings(max_examples=2000)
def test_the_aac_fast_path_agrees_with_parse_audio(payload: bytes) -> None:
    tag = _parsed_audio(payload)
    if is_raw_aac(payload):
        assert tag is not None
        assert (tag.codec, tag.packet_type, tag.enhanced) == (
            AudioCodec.AAC,
            AudioPacketType.CODED_FRAMES,
            False,
        )
        assert bytes(tag.data) == payload[LEGACY_AAC_HEADER_SIZE:]
    else:
        assert (
            tag is None
            or tag.enhanced
            or tag.codec != AudioCodec.AAC
            or tag.packet_type != AudioPacketType.CODED_FRAMES
        )


def test_the_fast_path_takes_what_ffmpeg_and_obs_send() -> None:
    assert find_coded_video(b"\x17\x01\x00\x00\x42nalu") == (VideoCodec.AVC, True, 0x42)
    assert find_coded_video(b"\x2c\x01\xff\xff\xd8nalu") == (VideoCodec.HEVC, False, -40)
    assert find_coded_video(b"\x17\x00\x00\x00\x00avcC") is None  # sequence header
    assert is_raw_aac(b"\xaf\x01\x21\x00")
    assert not is_raw_aac(b"\xaf\x00\x12\x10")  # AudioSpecificConfig


# Audio


def test_legacy_aac_sequence_header_and_raw_frames() -> None:
    header = parse_audio(b"\xaf\x00\x12\x10")
    raw = parse_audio(b"\xaf\x01\x21\x00")

    assert (header.codec, header.is_sequence_header, bytes(header.data)) == (
        AudioCodec.AAC,
        True,
        b"\x12\x10",
    )
    assert (header.sample_rate, header.sample_size, header.channels) == (44100, 16, 2)
    assert raw.packet_type == AudioPacketType.CODED_FRAMES
    assert not raw.is_sequence_header


@pytest.mark.parametrize(
    ("first", "codec", "rate", "size", "channels"),
    [
        (0x2E, AudioCodec.MP3, 44100, 16, 1),
        (0x22, AudioCodec.MP3, 5512, 16, 1),
        (0x72, AudioCodec.G711_ALAW, 5512, 16, 1),
        (0xB6, AudioCodec.SPEEX, 11025, 16, 1),
        (0x0D, AudioCodec.LPCM_PLATFORM_ENDIAN, 44100, 8, 2),
    ],
)
def test_legacy_sound_formats_are_recognised_by_name(
    first: int, codec: AudioCodec, rate: int, size: int, channels: int
) -> None:
    tag = parse_audio(bytes((first,)) + b"frame")

    assert (tag.codec, tag.sample_rate, tag.sample_size, tag.channels) == (
        codec,
        rate,
        size,
        channels,
    )
    assert bytes(tag.data) == b"frame"


def test_reserved_sound_formats_are_unsupported() -> None:
    with pytest.raises(UnsupportedFeature):
        parse_audio(b"\xc0")


@pytest.mark.parametrize(
    ("fourcc", "codec"),
    [
        (b"mp4a", AudioCodec.AAC),
        (b"Opus", AudioCodec.OPUS),
        (b"fLaC", AudioCodec.FLAC),
        (b"ac-3", AudioCodec.AC3),
        (b"ec-3", AudioCodec.EAC3),
        (b".mp3", AudioCodec.MP3),
    ],
)
def test_enhanced_audio_recognises_each_fourcc(fourcc: bytes, codec: AudioCodec) -> None:
    tag = parse_audio(b"\x91" + fourcc + b"frame")

    assert tag.enhanced
    assert (tag.codec, tag.packet_type, bytes(tag.data)) == (
        codec,
        AudioPacketType.CODED_FRAMES,
        b"frame",
    )


def test_enhanced_audio_multichannel_config_native_and_custom() -> None:
    native = parse_audio(b"\x94Opus\x01\x06\x00\x00\x00\x3f")
    custom = parse_audio(b"\x94Opus\x02\x02\x01\x00")

    assert native.multichannel == MultichannelConfig(
        AudioChannelOrder.NATIVE, 6, channel_flags=0x3F
    )
    assert custom.multichannel == MultichannelConfig(AudioChannelOrder.CUSTOM, 2, b"\x01\x00")


def test_enhanced_audio_multitrack_and_mod_ex() -> None:
    tag = parse_audio(b"\x97\x02\x00\x00\x10\x05\x10Opus\x00\x00\x00\x01a\x01\x00\x00\x02bc")

    assert tag.timestamp_offset_ns == 16
    assert tag.multitrack == MultitrackType.MANY_TRACKS
    assert tag.tracks == (
        AudioTrack(0, AudioCodec.OPUS, b"a"),
        AudioTrack(1, AudioCodec.OPUS, b"bc"),
    )


def test_empty_bodies_are_truncated_input() -> None:
    with pytest.raises(TruncatedInput):
        parse_audio(b"")
    with pytest.raises(TruncatedInput):
        parse_video(b"")


# Round trips

_video_codecs = st.sampled_from(
    [VideoCodec.AVC, VideoCodec.HEVC, VideoCodec.AV1, VideoCodec.VP9, VideoCodec.VP8]
)
_composition = st.integers(-(1 << 23), (1 << 23) - 1)
_frame_types = st.sampled_from([KEY, INTER, VideoFrameType.DISPOSABLE_INTER])
_media_packets = st.sampled_from(
    [
        VideoPacketType.SEQUENCE_START,
        VideoPacketType.CODED_FRAMES,
        VideoPacketType.SEQUENCE_END,
        VideoPacketType.CODED_FRAMES_X,
        VideoPacketType.METADATA,
        VideoPacketType.MPEG2TS_SEQUENCE_START,
    ]
)


def _composition_for(codec: VideoCodec, packet_type: VideoPacketType, value: int) -> int:
    has = packet_type == VideoPacketType.CODED_FRAMES and codec in (VideoCodec.AVC, VideoCodec.HEVC)
    return value if has else 0


@st.composite
def video_tags(draw: st.DrawFn) -> VideoTag:
    frame_type = draw(_frame_types)
    offset = draw(st.sampled_from([0, 0, 1, 999_999]))
    if draw(st.booleans()):
        codec = draw(st.sampled_from([VideoCodec.AVC, VideoCodec.HEVC]))
        packet_type = draw(st.sampled_from(list(VideoPacketType)[:3]))
        return VideoTag(
            codec, frame_type, packet_type, draw(st.binary(max_size=20)), draw(_composition)
        )
    packet_type = draw(_media_packets)
    if draw(st.booleans()):
        codec = draw(_video_codecs)
        return VideoTag(
            codec,
            frame_type,
            packet_type,
            draw(st.binary(max_size=20)),
            _composition_for(codec, packet_type, draw(_composition)),
            enhanced=True,
            timestamp_offset_ns=offset,
        )
    multitrack = draw(st.sampled_from(list(MultitrackType)))
    count = 1 if multitrack == MultitrackType.ONE_TRACK else draw(st.integers(1, 4))
    shared = draw(_video_codecs)
    tracks = []
    for track_id in draw(st.lists(st.integers(0, 255), min_size=count, max_size=count)):
        codec = (
            draw(_video_codecs) if multitrack == MultitrackType.MANY_TRACKS_MANY_CODECS else shared
        )
        tracks.append(
            VideoTrack(
                track_id,
                codec,
                draw(st.binary(max_size=20)),
                _composition_for(codec, packet_type, draw(_composition)),
            )
        )
    first = tracks[0]
    return VideoTag(
        first.codec,
        frame_type,
        packet_type,
        first.data,
        first.composition_time,
        enhanced=True,
        timestamp_offset_ns=offset,
        multitrack=multitrack,
        tracks=tuple(tracks),
    )


@settings(max_examples=300, deadline=None)
@given(video_tags())
def test_video_tags_round_trip(tag: VideoTag) -> None:
    assert parse_video(encode_video(tag)) == tag


_audio_codecs = st.sampled_from(
    [
        AudioCodec.AAC,
        AudioCodec.OPUS,
        AudioCodec.FLAC,
        AudioCodec.AC3,
        AudioCodec.EAC3,
        AudioCodec.MP3,
    ]
)
_multichannel = st.one_of(
    st.builds(MultichannelConfig, st.just(AudioChannelOrder.UNSPECIFIED), st.integers(0, 255)),
    st.builds(
        lambda flags, count: MultichannelConfig(
            AudioChannelOrder.NATIVE, count, channel_flags=flags
        ),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 255),
    ),
    st.binary(max_size=8).map(
        lambda mapping: MultichannelConfig(AudioChannelOrder.CUSTOM, len(mapping), mapping)
    ),
)


@st.composite
def audio_tags(draw: st.DrawFn) -> AudioTag:
    if draw(st.booleans()):
        codec = draw(st.sampled_from(list(AudioCodec)[:13]))
        packet_type = (
            draw(st.sampled_from([AudioPacketType.SEQUENCE_START, AudioPacketType.CODED_FRAMES]))
            if codec == AudioCodec.AAC
            else AudioPacketType.CODED_FRAMES
        )
        return AudioTag(
            codec,
            packet_type,
            draw(st.binary(max_size=20)),
            sample_rate=draw(st.sampled_from([5512, 11025, 22050, 44100])),
            sample_size=draw(st.sampled_from([8, 16])),
            channels=draw(st.sampled_from([1, 2])),
        )
    packet_type = draw(
        st.sampled_from(
            [
                AudioPacketType.SEQUENCE_START,
                AudioPacketType.CODED_FRAMES,
                AudioPacketType.SEQUENCE_END,
                AudioPacketType.MULTICHANNEL_CONFIG,
            ]
        )
    )
    offset = draw(st.sampled_from([0, 0, 5, 999_999]))

    def multichannel() -> MultichannelConfig | None:
        return draw(_multichannel) if packet_type == AudioPacketType.MULTICHANNEL_CONFIG else None

    if draw(st.booleans()):
        return AudioTag(
            draw(_audio_codecs),
            packet_type,
            draw(st.binary(max_size=20)),
            enhanced=True,
            timestamp_offset_ns=offset,
            multichannel=multichannel(),
        )
    multitrack = draw(st.sampled_from(list(MultitrackType)))
    count = 1 if multitrack == MultitrackType.ONE_TRACK else draw(st.integers(1, 4))
    shared = draw(_audio_codecs)
    tracks = tuple(
        AudioTrack(
            draw(st.integers(0, 255)),
            draw(_audio_codecs) if multitrack == MultitrackType.MANY_TRACKS_MANY_CODECS else shared,
            draw(st.binary(max_size=20)),
            multichannel(),
        )
        for _ in range(count)
    )
    return AudioTag(
        tracks[0].codec,
        packet_type,
        tracks[0].data,
        enhanced=True,
        timestamp_offset_ns=offset,
        multichannel=tracks[0].multichannel,
        multitrack=multitrack,
        tracks=tracks,
    )


@settings(max_examples=300, deadline=None)
@given(audio_tags())
def test_audio_tags_round_trip(tag: AudioTag) -> None:
    assert parse_audio(encode_audio(tag)) == tag


def test_encoder_refuses_a_legacy_tag_for_a_codec_without_a_legacy_id() -> None:
    tag: Any = VideoTag(VideoCodec.AV1, KEY, VideoPacketType.CODED_FRAMES, b"")

    with pytest.raises(ValueError, match="legacy"):
        encode_video(tag)
