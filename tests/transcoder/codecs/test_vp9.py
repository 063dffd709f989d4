"""transcoder.codecs.vp9: vpcC records from libvpx in Enhanced FLV, FFmpeg's DASH muxer
as an oracle for the codec string."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.encoders import encode_dash, encode_video, find_box
from transcoder.codecs import CodecConfigError, parse_video_config, parse_vp9_config


@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "codec_string"),
    [
        # VP9 levels by MaxPicSize: 2.1 holds 245760 luma samples, 3.1 983040.
        (642, 362, "yuv420p", "vp09.00.21.08"),
        (1280, 720, "yuv420p", "vp09.00.31.08"),
        (642, 362, "yuv444p", "vp09.01.21.08"),  # profile 1 is 8-bit 4:4:4
    ],
)
def test_vp9_vpcc_from_enhanced_flv_gives_the_codec_string(
    width: int, height: int, pix_fmt: str, codec_string: str
) -> None:
    record = encode_video("libvpx-vp9", width, height, pix_fmt, container="flv")

    config = parse_video_config("vp09", record)

    assert config.codec_string == codec_string
    assert (config.width, config.height, config.bit_depth) == (None, None, 8)


def test_vp9_profile_2_at_10_bits() -> None:
    record = bytes.fromhex("010000000228a20901090000")

    config = parse_vp9_config(record)

    assert (config.codec_string, config.profile, config.level, config.bit_depth) == (
        "vp09.02.40.10",
        2,
        40,
        10,
    )


@pytest.mark.parametrize(
    "record",
    ["000000000028a20901090000", "0100000000289a0901090000", "010000000028820901"],
    ids=["version-0", "bit-depth-9", "truncated"],
)
def test_vp9_records_that_cannot_be_right_are_rejected(record: str) -> None:
    with pytest.raises(CodecConfigError):
        parse_vp9_config(bytes.fromhex(record))


def test_vp9_codec_string_matches_ffmpeg_dash(tmp_path: Path) -> None:
    # PyAV's hlsenc names no VP9 codec, but the DASH muxer does, with the same rules.
    codecs, init = encode_dash(tmp_path, "libvpx-vp9", "yuv420p", False)

    config = parse_video_config("vp09", find_box(init, b"vpcC"))

    assert config.codec_string == "vp09.00.21.08"
    assert codecs == "vp09.00.21.08"
