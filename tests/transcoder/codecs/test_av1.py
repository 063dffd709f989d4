"""transcoder.codecs.av1: av1C records from SVT-AV1, crafted sequence headers, FFmpeg's
DASH muxer as an oracle for the codec string."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import pytest

from tests.support.bitstreams import (
    AV1C_HEADER,
    BitWriter,
    av1c,
    full_sequence_header,
    leb128,
    rest_of_sequence_header,
    sequence_header_obu,
    write_pq_colour,
)
from tests.support.encoders import encode_dash, encode_video, find_box
from transcoder.codecs import CodecConfigError, VideoConfig, parse_av1_config, parse_video_config


@pytest.mark.parametrize(
    ("encoder", "width", "height", "pix_fmt", "codec_string"),
    [
        # seq_level_idx from the AV1 level table's MaxPicSize: 2.1 (1), 3.0 (4), 3.1 (5), 4.0 (8).
        ("libsvtav1", 642, 362, "yuv420p", "av01.0.01M.08"),
        ("libsvtav1", 854, 480, "yuv420p", "av01.0.04M.08"),
        ("libsvtav1", 1280, 720, "yuv420p", "av01.0.05M.08"),
        ("libsvtav1", 1920, 1080, "yuv420p10le", "av01.0.08M.10"),
        ("libaom-av1", 642, 362, "yuv420p", "av01.0.01M.08"),
    ],
    ids=lambda value: str(value),
)
def test_av1_size_comes_from_the_sequence_header(
    encoder: str, width: int, height: int, pix_fmt: str, codec_string: str
) -> None:
    options = (("cpu-used", "8"), ("usage", "realtime")) if encoder == "libaom-av1" else ()
    config = parse_av1_config(encode_video(encoder, width, height, pix_fmt, options))

    assert (config.codec, config.width, config.height) == ("av1", width, height)
    assert config.codec_string == codec_string
    assert config.bit_depth == int(codec_string[-2:])


def _write_srgb_colour(w: BitWriter) -> None:  # profile 1: no monochrome bit
    w.flag(0).flag(1).u(8, 1).u(8, 13).u(8, 0)  # 8-bit sRGB: range and subsampling implied


def _write_undescribed_colour(w: BitWriter) -> None:
    w.flag(0).flag(0).flag(0).flag(0).u(2, 1)  # 8-bit, limited range, chroma position 1


def test_av1_sequence_header_with_timing_decoder_model_and_operating_points() -> None:
    record = av1c(AV1C_HEADER, sequence_header_obu(full_sequence_header(1)))
    decoder = av.CodecContext.create("av1", "r")
    decoder.extradata = record
    decoder.open()  # FFmpeg's native AV1 decoder reads the sequence header on open

    config = parse_av1_config(record)

    assert config == VideoConfig(
        codec="av1",
        codec_string="av01.0.09H.10.0.110.09.16.09.1",
        width=1920,
        height=1080,
        frame_rate=Fraction(60000, 1001),
        profile=0,
        level=9,
        bit_depth=10,
    )
    assert (decoder.width, decoder.height) == (1920, 1080)


@pytest.mark.parametrize(
    ("ticks_per_picture", "frame_rate"),
    [(None, None), (2, Fraction(30000, 1001)), (3, Fraction(20000, 1001))],
)
def test_av1_frame_rate_needs_an_equal_picture_interval(
    ticks_per_picture: int | None, frame_rate: Fraction | None
) -> None:
    record = av1c(AV1C_HEADER, sequence_header_obu(full_sequence_header(ticks_per_picture)))

    assert parse_av1_config(record).frame_rate == frame_rate


@pytest.mark.parametrize(
    ("av1c_header", "profile", "colour", "codec_string"),
    [
        ("81044c00", 0, write_pq_colour, "av01.0.04M.10.0.110.09.16.09.1"),
        ("81240000", 1, _write_srgb_colour, "av01.1.04M.08.0.000.01.13.00.1"),
        ("81040c00", 0, _write_undescribed_colour, "av01.0.04M.08"),
    ],
    ids=["pq", "srgb", "undescribed"],
)
def test_av1_reduced_still_picture_header_is_parsed(
    av1c_header: str, profile: int, colour: Callable[[BitWriter], None], codec_string: str
) -> None:
    w = BitWriter().u(3, profile).flag(1).flag(1).u(5, 4)  # still picture, reduced, level 3.0
    w.u(4, 10).u(4, 10).u(11, 999).u(11, 749)
    obu = sequence_header_obu(rest_of_sequence_header(w, True, colour))

    config = parse_av1_config(av1c(bytes.fromhex(av1c_header), obu))

    assert (config.width, config.height, config.frame_rate) == (1000, 750, None)
    assert config.codec_string == codec_string


def test_av1_config_obus_may_use_extensions_and_omit_the_last_size() -> None:
    payload = full_sequence_header(1)
    metadata = bytes([0x2A]) + leb128(3) + b"\x01\x02\x03"  # metadata OBU, with size
    padded_size = bytes([0x80 | len(payload) & 0x7F, 0x80 | len(payload) >> 7, 0x00])
    with_extension = bytes([0x0E, 0x00]) + padded_size + payload  # non-minimal leb128
    without_size = bytes([0x08]) + payload  # runs to the end of the record

    for obus in (metadata + with_extension, metadata + without_size):
        assert parse_av1_config(AV1C_HEADER + obus).width == 1920


@pytest.mark.parametrize(
    ("header", "codec_string", "bit_depth"),
    [
        ("814c0c00", "av01.2.12M.08", 8),
        ("814cec00", "av01.2.12H.12", 12),  # professional profile, high tier, 12-bit
        ("812fcc00", "av01.1.15H.10", 10),
    ],
)
def test_av1_codec_string_spells_profile_level_tier_and_depth(
    header: str, codec_string: str, bit_depth: int
) -> None:
    config = parse_av1_config(bytes.fromhex(header))

    assert (config.codec_string, config.bit_depth, config.width) == (codec_string, bit_depth, None)


@pytest.mark.parametrize(
    "header",
    ["81ace000", "010c0c00", "82080c00", "8108"],
    ids=["profile-5", "marker", "version-2", "short"],
)
def test_av1_records_that_cannot_be_right_are_rejected(header: str) -> None:
    with pytest.raises(CodecConfigError):
        parse_av1_config(bytes.fromhex(header))


@pytest.mark.parametrize(
    ("pix_fmt", "hdr", "codec_string"),
    [
        ("yuv420p", False, "av01.0.01M.08"),
        ("yuv420p10le", True, "av01.0.01M.10.0.110.09.16.09.1"),
    ],
    ids=["av1", "av1-hdr"],
)
def test_av1_codec_strings_match_ffmpeg_dash(
    tmp_path: Path, pix_fmt: str, hdr: bool, codec_string: str
) -> None:
    # PyAV's hlsenc names no AV1 codec, but the DASH muxer does, with the same rules.
    codecs, init = encode_dash(tmp_path, "libsvtav1", pix_fmt, hdr)

    config = parse_video_config("av01", find_box(init, b"av1C"))

    assert config.codec_string == codec_string
    assert codecs == codec_string
