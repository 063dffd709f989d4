"""transcoder.codecs.audio: AudioSpecificConfig from FFmpeg's AAC encoder and crafted
signalling variants; OpusHead from libopus and crafted."""

from __future__ import annotations

import pytest

from tests.support.bitstreams import GA_PLAIN, asc, opus_head
from tests.support.encoders import encode_audio
from transcoder.codecs import (
    AudioConfig,
    CodecConfigError,
    parse_aac_config,
    parse_audio_config,
    parse_opus_head,
)


@pytest.mark.parametrize(
    ("sample_rate", "layout", "channels"),
    [(48000, "stereo", 2), (44100, "mono", 1), (22050, "5.1", 6)],
)
def test_ffmpeg_aac_config_gives_rate_and_channels(
    sample_rate: int, layout: str, channels: int
) -> None:
    record = encode_audio("aac", sample_rate, layout)
    # FFmpeg appends a sync extension saying "no SBR", which must not change anything.
    assert record[2:4] == b"\x56\xe5"

    assert parse_audio_config("mp4a", record) == AudioConfig(
        "aac", "mp4a.40.2", sample_rate, channels
    )


def test_aac_in_flv_gives_the_same_config() -> None:
    record = encode_audio("aac", 44100, "stereo", container="flv")

    assert parse_aac_config(record) == AudioConfig("aac", "mp4a.40.2", 44100, 2)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # Explicit hierarchical HE-AAC: SBR at 48 kHz over a 24 kHz AAC-LC core.
        (asc((5, 5), (4, 6), (4, 2), (4, 3), (5, 2), GA_PLAIN), ("mp4a.40.5", 48000, 2)),
        # HE-AAC v2: parametric stereo makes two channels of a mono core.
        (asc((5, 29), (4, 6), (4, 1), (4, 3), (5, 2), GA_PLAIN), ("mp4a.40.29", 48000, 2)),
        # Backward-compatible signalling: AAC-LC, then sync extensions for SBR and PS.
        (
            asc(
                (5, 2),
                (4, 6),
                (4, 1),
                GA_PLAIN,
                (11, 0x2B7),
                (5, 5),
                (1, 1),
                (4, 3),
                (11, 0x548),
                (1, 1),
            ),
            ("mp4a.40.2", 48000, 2),
        ),
        # Escaped object type 42 (USAC) and an explicit 24-bit sampling frequency.
        (asc((5, 31), (6, 10), (4, 15), (24, 37800), (4, 2)), ("mp4a.40.42", 37800, 2)),
        (asc((5, 2), (4, 3), (4, 7), GA_PLAIN), ("mp4a.40.2", 48000, 8)),  # 7.1
    ],
    ids=["he-aac", "he-aac-v2", "sync-extension", "escaped-object-type", "7.1"],
)
def test_aac_signalling_variants(record: bytes, expected: tuple[str, int, int]) -> None:
    config = parse_aac_config(record)

    assert (config.codec_string, config.sample_rate, config.channels) == expected


def test_aac_channel_configuration_0_counts_the_program_config_element() -> None:
    record = (
        asc(
            (5, 2),
            (4, 3),
            (4, 0),
            GA_PLAIN,
            (4, 0),
            (2, 1),
            (4, 3),  # element tag, object type, frequency index
            (4, 2),
            (4, 1),
            (4, 1),
            (2, 1),
            (3, 0),
            (4, 0),  # 2 front, 1 side, 1 back, 1 LFE
            (1, 0),
            (1, 0),
            (1, 1),
            (3, 0),  # matrix mixdown only
            (5, 0),
            (5, 16),
            (5, 16),
            (5, 16),
            (4, 0),  # front SCE + CPE, side CPE, back CPE, LFE
        )
        + b"\x02hi"
    )  # byte-aligned comment field

    assert parse_aac_config(record) == AudioConfig("aac", "mp4a.40.2", 48000, 8)


@pytest.mark.parametrize(
    "record",
    [
        asc((5, 2), (4, 13), (4, 2)),  # reserved frequency index
        asc((5, 2), (4, 3), (4, 8)),  # reserved channel configuration
        asc((5, 0), (4, 3), (4, 2)),  # null object type
        asc((5, 2), (4, 15), (24, 0), (4, 2)),  # explicit 0 Hz
        b"\x12",
    ],
    ids=["frequency-13", "channels-8", "aot-0", "zero-hz", "truncated"],
)
def test_aac_configs_that_cannot_be_right_are_rejected(record: bytes) -> None:
    with pytest.raises(CodecConfigError):
        parse_aac_config(record)


def test_ffmpeg_opus_head_gives_channels() -> None:
    record = encode_audio("libopus", 48000, "stereo")

    assert parse_audio_config("Opus", record) == AudioConfig("opus", "opus", 48000, 2)


def test_opus_surround_head_reports_channels_and_input_rate() -> None:
    record = opus_head(6, 44100, 1, bytes([4, 2, 0, 4, 1, 2, 3, 5]))

    assert parse_opus_head(record) == AudioConfig("opus", "opus", 44100, 6)


@pytest.mark.parametrize(
    "record",
    [
        opus_head(2, 48000, 0).replace(b"OpusHead", b"OpusTags"),
        opus_head(3, 48000, 0),  # family 0 is mono or stereo
        opus_head(6, 48000, 1, bytes([4, 2, 0, 4])),  # mapping table cut short
        opus_head(2, 48000, 1, bytes([1, 0, 0, 1])),  # maps a stream that does not exist
        opus_head(0, 48000, 0),
        opus_head(2, 48000, 0)[:-1],
        opus_head(2, 48000, 0).replace(b"\x01\x02", b"\x10\x02", 1),  # major version 1
    ],
    ids=[
        "magic",
        "family-0-three",
        "short-mapping",
        "bad-mapping",
        "no-channels",
        "short",
        "version",
    ],
)
def test_opus_heads_that_cannot_be_right_are_rejected(record: bytes) -> None:
    with pytest.raises(CodecConfigError):
        parse_opus_head(record)
