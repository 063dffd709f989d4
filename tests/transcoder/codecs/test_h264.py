"""transcoder.codecs.h264: avcC records from x264, crafted SPSs, FFmpeg's hlsenc as an
oracle for the codec string."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from tests.support.bitstreams import BitWriter, avcc, crafted_avc_sps, escape
from tests.support.encoders import encode_hls, encode_video
from transcoder.codecs import (
    CodecConfigError,
    VideoConfig,
    parse_aac_config,
    parse_avc_config,
    parse_video_config,
)


@pytest.mark.parametrize(
    ("width", "height"), [(1920, 1080), (854, 480), (1280, 720), (642, 362)], ids=str
)
def test_x264_picture_size_is_read_after_cropping(width: int, height: int) -> None:
    config = parse_avc_config(encode_video("libx264", width, height))

    assert (config.codec, config.width, config.height) == ("h264", width, height)


def test_x264_high_profile_at_level_3_1_is_avc1_64001f() -> None:
    record = encode_video("libx264", 1280, 720, options=(("profile", "high"), ("level", "3.1")))

    assert parse_avc_config(record) == VideoConfig(
        codec="h264",
        codec_string="avc1.64001f",
        width=1280,
        height=720,
        frame_rate=Fraction(30),
        profile=100,
        level=31,
        bit_depth=8,
    )


def test_x264_in_flv_gives_the_same_record_as_in_mp4() -> None:
    record = encode_video("libx264", 854, 480, container="flv")

    # 854x480 is exactly level 3.0's 1620 macroblocks, but 30 of them a second exceed its
    # 40500 macroblocks/s: x264 picks 3.1.
    assert parse_video_config("avc1", record).codec_string == "avc1.64001f"
    assert record == encode_video("libx264", 854, 480)


@pytest.mark.parametrize("rate", [Fraction(25), Fraction(30000, 1001), Fraction(60)], ids=str)
def test_x264_frame_rate_comes_from_vui_timing(rate: Fraction) -> None:
    assert parse_avc_config(encode_video("libx264", 642, 362, rate=rate)).frame_rate == rate


@pytest.mark.parametrize(
    ("pix_fmt", "profile", "codec_string", "bit_depth"),
    [
        ("yuv420p10le", 110, "avc1.6e001e", 10),
        ("yuv422p", 122, "avc1.7a001e", 8),
        ("yuv444p", 244, "avc1.f4001e", 8),
    ],
)
def test_x264_high_profiles_crop_in_chroma_units(
    pix_fmt: str, profile: int, codec_string: str, bit_depth: int
) -> None:
    record = encode_video("libx264", 642, 362, pix_fmt, options=(("level", "3.0"),))

    config = parse_avc_config(record)

    assert (config.width, config.height) == (642, 362)
    assert (config.profile, config.codec_string, config.bit_depth) == (
        profile,
        codec_string,
        bit_depth,
    )
    assert config.frame_rate == 30


@pytest.mark.parametrize(
    "options",
    [
        (("x264-params", "interlaced=1"),),  # frame_mbs_only_flag 0: heights count field pairs
        (("x264-params", "cqm=jvt"),),  # scaling lists that select the default matrices
        (("x264-params", "cqm4iy=6,12,19,26,12,19,26,31,19,26,31,35,26,31,35,40"),),
        (("bf", "0"),),  # pic_order_cnt_type 2
        (("profile", "baseline"),),  # no high-profile fields at all
    ],
    ids=["interlaced", "jvt-matrices", "custom-matrix", "poc-type-2", "baseline"],
)
def test_x264_sps_variants_keep_size_and_frame_rate(options: tuple[tuple[str, str]]) -> None:
    config = parse_avc_config(encode_video("libx264", 1920, 1080, options=options))

    # The frame rate sits at the end of the SPS: right only if every field before it was.
    assert (config.width, config.height, config.frame_rate) == (1920, 1080, 30)


def test_crafted_high_422_sps_with_poc_type_1_and_scaling_lists_is_parsed() -> None:
    assert parse_avc_config(avcc(crafted_avc_sps())) == VideoConfig(
        codec="h264",
        codec_string="avc1.7a0028",
        width=642,
        height=362,
        frame_rate=Fraction(25),
        profile=122,
        level=40,
        bit_depth=10,
    )


def test_emulation_prevention_bytes_are_removed_before_reading_the_sps() -> None:
    sps = crafted_avc_sps()
    assert b"\x00\x00\x03" in sps  # the timing fields' zero bytes needed escaping

    assert parse_avc_config(avcc(sps)).frame_rate == 25


def test_a_truncated_vui_costs_only_the_frame_rate() -> None:
    sps = crafted_avc_sps()
    config = parse_avc_config(avcc(sps[:-9]))

    assert (config.width, config.height, config.frame_rate) == (642, 362, None)


def test_an_avcc_without_sps_still_gives_the_codec_string() -> None:
    config = parse_avc_config(bytes.fromhex("014d4028ffe000"))

    assert (config.codec_string, config.width, config.height) == ("avc1.4d4028", None, None)


def test_cropping_away_the_whole_picture_is_an_error() -> None:
    w = BitWriter().u(8, 66).u(8, 0xC0).u(8, 30).ue(0).ue(0).ue(2).ue(1).flag(0)
    w.ue(0).ue(0).flag(1).flag(1).flag(1).ue(0).ue(8).ue(0).ue(0).flag(0)  # 16 px, crop 16

    with pytest.raises(CodecConfigError, match="cropping"):
        parse_avc_config(avcc(b"\x67" + escape(w.rbsp())))


def test_h264_codec_string_matches_ffmpeg_hlsenc(tmp_path: Path) -> None:
    codecs, video_record, audio_record = encode_hls(
        tmp_path, "libx264", {"profile": "main", "level": "4.0"}
    )

    ours = [
        parse_avc_config(video_record).codec_string,
        parse_aac_config(audio_record).codec_string,
    ]
    assert ours == ["avc1.4d4028", "mp4a.40.2"]
    assert codecs == ",".join(ours)
