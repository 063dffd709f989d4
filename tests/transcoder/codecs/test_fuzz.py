"""Every codec parser fuzzed: any input ends in a config or a CodecConfigError, quickly."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.bitstreams import (
    AV1C_HEADER,
    CRAFTED_HVCC_HEADER,
    GA_PLAIN,
    HVCC_MAIN_HEADER,
    asc,
    av1c,
    avcc,
    crafted_avc_sps,
    crafted_hevc_sps,
    crafted_hevc_vps,
    full_sequence_header,
    hvcc,
    hvcc_nals,
    opus_head,
    sequence_header_obu,
)
from tests.support.encoders import X265_FAST, encode_audio, encode_video
from transcoder.codecs import (
    AudioConfig,
    CodecConfigError,
    VideoConfig,
    parse_aac_config,
    parse_av1_config,
    parse_avc_config,
    parse_hevc_config,
    parse_opus_head,
    parse_vp9_config,
)

FUZZ = settings(
    max_examples=150,
    deadline=1000,  # generous for a loaded CI machine; a hang or blow-up still fails
    database=None,  # leave no .hypothesis directory behind
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


PARSERS: list[Callable[[bytes], object]] = [
    parse_avc_config,
    parse_hevc_config,
    parse_av1_config,
    parse_vp9_config,
    parse_aac_config,
    parse_opus_head,
]


def _parses_or_rejects(parse: Callable[[bytes], object], data: bytes) -> None:
    try:
        result = parse(data)
    except CodecConfigError:
        return
    assert isinstance(result, VideoConfig | AudioConfig)


@pytest.mark.parametrize("parse", PARSERS, ids=lambda parse: parse.__name__)
@FUZZ
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_codec_config_error(
    parse: Callable[[bytes], object], data: bytes
) -> None:
    _parses_or_rejects(parse, data)


def _sps_container(parse: Callable[[bytes], object], body: bytes) -> bytes:
    # A valid record around an arbitrary parameter-set body, so fuzzing reaches the SPS,
    # VUI and sequence header parsers instead of failing the record header.
    if parse is parse_avc_config:
        return avcc(b"\x67" + body)
    if parse is parse_hevc_config:
        return hvcc(HVCC_MAIN_HEADER, (33, b"\x42\x01" + body))
    return av1c(b"\x81\x08\x0c\x00", sequence_header_obu(body))


@pytest.mark.parametrize("parse", PARSERS[:3], ids=lambda parse: parse.__name__)
@FUZZ
@given(
    # H.264 profiles with and without the high-profile fields; ignored by the others.
    prefix=st.sampled_from([b"", b"\x64\x00\x1f", b"\xf4\x00\x28", b"\x42\xc0\x1e"]),
    body=st.binary(max_size=300),
)
def test_arbitrary_parameter_sets_raise_only_codec_config_error(
    parse: Callable[[bytes], object], prefix: bytes, body: bytes
) -> None:
    _parses_or_rejects(parse, _sps_container(parse, prefix + body))


@pytest.fixture(scope="module")
def real_records() -> list[tuple[Callable[[bytes], object], bytes]]:
    hevc_rext = hvcc(
        CRAFTED_HVCC_HEADER, (32, crafted_hevc_vps(timing=True)), (33, crafted_hevc_sps(True))
    )
    x265 = encode_video("libx265", 642, 362, options=X265_FAST)
    # Keep VPS and SPS only: x265's SEI would take most of the mutations.
    x265_sps = hvcc(x265, *((nal[0] >> 1, nal) for nal in hvcc_nals(x265) if nal[0] >> 1 < 34))
    return [
        (parse_avc_config, encode_video("libx264", 642, 362)),
        (parse_avc_config, encode_video("libx264", 642, 362, "yuv444p", (("level", "3.0"),))),
        (parse_avc_config, avcc(crafted_avc_sps())),
        (parse_hevc_config, x265_sps),
        (parse_hevc_config, hevc_rext),
        (parse_av1_config, encode_video("libsvtav1", 642, 362)),
        (parse_av1_config, av1c(AV1C_HEADER, sequence_header_obu(full_sequence_header(1)))),
        (parse_vp9_config, encode_video("libvpx-vp9", 642, 362, container="flv")),
        (parse_aac_config, encode_audio("aac", 48000, "stereo")),
        (parse_opus_head, opus_head(6, 44100, 1, bytes([4, 2, 0, 4, 1, 2, 3, 5]))),
    ]


@st.composite
def mutations(draw: st.DrawFn, record: bytes) -> bytes:
    data = bytearray(record)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        # Mutate the header and parameter sets, where the parsing decisions are.
        position = draw(st.integers(0, min(len(data), 160)))
        if kind == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and position < len(data):
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x80, 0x7F, 0x03]))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 8))]
    return bytes(data)


@FUZZ
@given(data=st.data())
def test_mutated_real_records_raise_only_codec_config_error(
    real_records: list[tuple[Callable[[bytes], object], bytes]], data: st.DataObject
) -> None:
    parse, record = data.draw(st.sampled_from(real_records))

    _parses_or_rejects(parse, data.draw(mutations(record)))


def test_real_records_survive_the_fuzz_harness(
    real_records: list[tuple[Callable[[bytes], object], bytes]],
) -> None:
    for parse, record in real_records:
        assert isinstance(parse(record), VideoConfig | AudioConfig)


@pytest.mark.parametrize("parse", PARSERS, ids=lambda parse: parse.__name__)
@pytest.mark.parametrize("fill", [b"\x00", b"\xff", b"\x01", b"\x81"], ids=bytes.hex)
def test_a_megabyte_of_filler_is_rejected_quickly(
    parse: Callable[[bytes], object], fill: bytes
) -> None:
    started = time.perf_counter()
    # Parameter-set bodies fit a 16-bit length field.
    for data in (fill * 1_000_000, _sps_container(parse, fill * 60_000)):
        _parses_or_rejects(parse, data)

    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        # Length and count fields that promise far more than is there.
        (parse_avc_config, bytes.fromhex("01640028ffff") + b"\xff\xff" + b"\x67" * 100),
        (parse_hevc_config, HVCC_MAIN_HEADER + b"\xff" + (b"\xa1\xff\xff" + b"\x00\x00") * 40),
        (parse_av1_config, b"\x81\x08\x0c\x00\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 10),
        (parse_av1_config, b"\x81\x08\x0c\x00\x0a" + b"\x80" * 20),
        (parse_vp9_config, bytes.fromhex("010000000028a2090109ffff")),
        (parse_aac_config, asc((5, 2), (4, 3), (4, 0), GA_PLAIN, (31, 0), (3, 0)) + b"\xff"),
    ],
    ids=["avcc-sps", "hvcc-nalus", "av1-obu-size", "leb128-overlong", "vpcc-init", "pce-comment"],
)
def test_oversized_length_fields_are_rejected(
    parse: Callable[[bytes], object], data: bytes
) -> None:
    with pytest.raises(CodecConfigError):
        parse(data)
