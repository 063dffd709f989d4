"""transcoder.codecs (the package): the FourCC picks the parser."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.bitstreams import HVCC_MAIN_HEADER, avcc, crafted_avc_sps
from transcoder.codecs import CodecConfigError, parse_audio_config, parse_video_config


@pytest.mark.parametrize(
    ("fourcc", "codec"), [("avc1", "h264"), ("hvc1", "hevc"), ("av01", "av1"), ("vp09", "vp9")]
)
def test_video_fourcc_selects_the_parser(fourcc: str, codec: str) -> None:
    records = {
        "avc1": avcc(crafted_avc_sps()),
        "hvc1": HVCC_MAIN_HEADER + b"\x00",
        "av01": bytes.fromhex("814c0c00"),
        "vp09": bytes.fromhex("010000000028a20901090000"),
    }

    assert parse_video_config(fourcc, records[fourcc]).codec == codec


@pytest.mark.parametrize(
    ("parse", "fourcc"),
    [
        (parse_video_config, "avc3"),
        (parse_video_config, "hev1"),
        (parse_audio_config, "opus"),
        (parse_audio_config, ".mp3"),
    ],
)
def test_an_unknown_fourcc_is_a_codec_config_error(
    parse: Callable[[str, bytes], object], fourcc: str
) -> None:
    with pytest.raises(CodecConfigError, match="FourCC"):
        parse(fourcc, b"\x01" * 32)
