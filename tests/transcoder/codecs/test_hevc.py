"""transcoder.codecs.hevc: hvcC records from x265, crafted VPS and SPS read as FFmpeg reads
them, FFmpeg's hlsenc as an oracle for the codec string."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from tests.support.bitstreams import (
    CRAFTED_HVCC_HEADER,
    HVCC_MAIN_HEADER,
    crafted_hevc_sps,
    crafted_hevc_vps,
    hvcc,
    hvcc_nals,
)
from tests.support.encoders import X265_FAST, encode_hls, encode_video
from transcoder.codecs import VideoConfig, parse_hevc_config
from transcoder.codecs.hevc import parse_hevc_sps


@pytest.mark.parametrize(
    ("width", "height", "codec_string"),
    [
        (1920, 1080, "hvc1.1.6.L120.90"),
        (854, 480, "hvc1.1.6.L90.90"),
        (1280, 720, "hvc1.1.6.L93.90"),
        (642, 362, "hvc1.1.6.L63.90"),
    ],
    ids=str,
)
def test_x265_picture_size_is_read_through_the_conformance_window(
    width: int, height: int, codec_string: str
) -> None:
    # x265 picks the lowest level whose MaxLumaPs holds the picture (H.265 Table A.8),
    # and writes progressive_source and frame_only constraint flags (0x90).
    config = parse_hevc_config(encode_video("libx265", width, height, options=X265_FAST))

    assert config == VideoConfig(
        codec="hevc",
        codec_string=codec_string,
        width=width,
        height=height,
        frame_rate=Fraction(30),
        profile=1,
        level=int(codec_string.split(".")[3][1:]),
        bit_depth=8,
    )


@pytest.mark.parametrize(
    ("pix_fmt", "codec_string", "bit_depth"),
    [
        ("yuv420p10le", "hvc1.2.4.L63.90", 10),  # Main 10
        # Range extensions: max_12bit/10bit/8bit and 4:2:2 or 4:2:0 constraint flags spill
        # into the second constraint byte with general_lower_bit_rate_constraint_flag.
        ("yuv444p", "hvc1.4.10.L63.9E.08", 8),
        ("yuv422p", "hvc1.4.10.L63.9D.08", 8),
    ],
)
def test_x265_profiles_give_bit_depth_and_codec_string(
    pix_fmt: str, codec_string: str, bit_depth: int
) -> None:
    config = parse_hevc_config(encode_video("libx265", 642, 362, pix_fmt, options=X265_FAST))

    assert (config.width, config.height) == (642, 362)
    assert (config.codec_string, config.bit_depth) == (codec_string, bit_depth)


@pytest.mark.parametrize("rate", [Fraction(25), Fraction(30000, 1001)], ids=str)
def test_x265_frame_rate_comes_from_the_sps_vui(rate: Fraction) -> None:
    record = encode_video("libx265", 642, 362, options=X265_FAST, rate=rate)
    sps = next(nal for nal in hvcc_nals(record) if nal[0] >> 1 == 33)

    # x265 signals timing in the SPS VUI only (its VPS has none).
    assert parse_hevc_sps(sps).frame_rate == rate
    assert parse_hevc_config(record).frame_rate == rate


def test_x265_temporal_sub_layers_are_skipped_in_profile_tier_level() -> None:
    record = encode_video(
        "libx265", 642, 362, options=(*X265_FAST, ("x265-params", "temporal-layers=3"))
    )
    sps = next(nal for nal in hvcc_nals(record) if nal[0] >> 1 == 33)
    assert (sps[2] >> 1) & 0x07 == 2  # sps_max_sub_layers_minus1

    config = parse_hevc_config(record)

    assert (config.width, config.height, config.frame_rate) == (642, 362, 30)


def _open_hevc_decoder(record: bytes) -> Any:
    decoder = av.CodecContext.create("hevc", "r")
    decoder.extradata = record
    decoder.open()  # FFmpeg exports the first SPS's parameters on open
    return decoder


def test_crafted_hevc_sps_is_read_as_ffmpeg_reads_it() -> None:
    record = hvcc(
        CRAFTED_HVCC_HEADER, (32, crafted_hevc_vps(timing=False)), (33, crafted_hevc_sps(True))
    )
    decoder = _open_hevc_decoder(record)

    config = parse_hevc_config(record)

    assert config == VideoConfig(
        codec="hevc",
        codec_string="hvc1.4.10.L93.9D.08",
        width=642,
        height=362,
        frame_rate=Fraction(60000, 1001),
        profile=4,
        level=93,
        bit_depth=10,
    )
    assert (decoder.width, decoder.height) == (config.width, config.height)
    assert decoder.framerate == config.frame_rate


@pytest.mark.parametrize("sps_timing", [True, False])
def test_hevc_vps_timing_wins_over_the_sps_as_in_ffmpeg(sps_timing: bool) -> None:
    record = hvcc(
        CRAFTED_HVCC_HEADER,
        (32, crafted_hevc_vps(timing=True)),
        (33, crafted_hevc_sps(sps_timing)),
    )

    assert parse_hevc_config(record).frame_rate == 25
    assert _open_hevc_decoder(record).framerate == 25


def test_hevc_frame_rate_falls_back_to_the_record_average() -> None:
    header = CRAFTED_HVCC_HEADER[:19] + (50 * 256).to_bytes(2, "big") + CRAFTED_HVCC_HEADER[21:]
    record = hvcc(header, (32, crafted_hevc_vps(timing=False)), (33, crafted_hevc_sps(False)))

    assert parse_hevc_config(record).frame_rate == 50


@pytest.mark.parametrize(
    ("first_bytes", "codec_string"),
    [
        ("0101", "hvc1.1.6.L93.90"),
        ("0161", "hvc1.A1.6.H93.90"),  # profile space 1, high tier
        ("01c2", "hvc1.C2.6.L93.90"),  # profile space 3
    ],
)
def test_hevc_codec_string_spells_profile_space_and_tier(
    first_bytes: str, codec_string: str
) -> None:
    record = bytes.fromhex(first_bytes) + HVCC_MAIN_HEADER[2:] + b"\x00"

    config = parse_hevc_config(record)

    assert (config.codec_string, config.width, config.height) == (codec_string, None, None)


def test_hevc_codec_string_keeps_one_constraint_byte_when_all_are_zero() -> None:
    header = bytearray(HVCC_MAIN_HEADER)
    header[6] = 0

    assert parse_hevc_config(bytes(header) + b"\x00").codec_string == "hvc1.1.6.L93.00"


def test_hevc_codec_string_matches_ffmpeg_hlsenc(tmp_path: Path) -> None:
    codecs, video_record, _ = encode_hls(tmp_path, "libx265", dict(X265_FAST), codec_tag="hvc1")

    ours = parse_hevc_config(video_record).codec_string
    assert ours == "hvc1.1.6.L63.90"
    # FFmpeg prints hexadecimal digits in lower case (only the 'L' is a letter here).
    assert codecs.split(",")[0].upper() == ours.upper()
