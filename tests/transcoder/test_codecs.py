"""Codec configuration parsers against records that real encoders write, crafted edge
cases, FFmpeg as an oracle, and fuzzing."""

from __future__ import annotations

import functools
import io
import re
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.scheduling import drop_realtime
from transcoder.codecs import (
    AudioConfig,
    CodecConfigError,
    VideoConfig,
    parse_aac_config,
    parse_audio_config,
    parse_av1_config,
    parse_avc_config,
    parse_hevc_config,
    parse_opus_head,
    parse_video_config,
    parse_vp9_config,
)
from transcoder.codecs.hevc import parse_hevc_sps

av = pytest.importorskip("av")

FUZZ = settings(
    max_examples=150,
    deadline=1000,  # generous for a loaded CI machine; a hang or blow-up still fails
    database=None,  # leave no .hypothesis directory behind
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --------------------------------------------------------------------------------------
# Real bitstreams, encoded with PyAV in memory


def _require(encoder: str) -> None:
    if encoder not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {encoder}")


def _video_frame(width: int, height: int, pix_fmt: str, index: int) -> Any:
    frame = av.VideoFrame(width, height, pix_fmt)
    # 10-bit formats hold little-endian 16-bit samples; keep them inside 10 bits.
    if pix_fmt.endswith("le"):
        sample = (256 + 8 * index).to_bytes(2, "little")
    else:
        sample = bytes([64 + 8 * index])
    for plane in frame.planes:
        plane.update(sample * (plane.buffer_size // len(sample)))
    frame.pts = index
    return frame


@functools.cache
def encode_video(
    encoder: str,
    width: int,
    height: int,
    pix_fmt: str = "yuv420p",
    options: tuple[tuple[str, str], ...] = (),
    container: str = "mp4",
    rate: Fraction = Fraction(30),
) -> bytes:
    """Encode three frames, mux them, demux, and return the codec record FFmpeg exports."""
    _require(encoder)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(encoder, rate=rate, options=dict(options))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index in range(3):
            for packet in stream.encode(_video_frame(width, height, pix_fmt, index)):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    drop_realtime()  # SVT-AV1 leaves the process SCHED_FIFO
    buffer.seek(0)
    with av.open(buffer, format=container) as demuxed:
        return bytes(demuxed.streams.video[0].codec_context.extradata or b"")


def _encode_audio_frames(stream: Any, output: Any, layout: str, count: int) -> None:
    context = stream.codec_context
    samples = context.frame_size or 1024
    for index in range(count):
        frame = av.AudioFrame(format=context.format.name, layout=layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = context.sample_rate
        frame.pts = index * samples
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode():
        output.mux(packet)


@functools.cache
def encode_audio(encoder: str, sample_rate: int, layout: str, container: str = "mp4") -> bytes:
    _require(encoder)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(encoder, rate=sample_rate, layout=layout)
        _encode_audio_frames(stream, output, layout, 5)
    buffer.seek(0)
    with av.open(buffer, format=container) as demuxed:
        return bytes(demuxed.streams.audio[0].codec_context.extradata or b"")


def encode_hls(
    directory: Path, encoder: str, options: dict[str, str], codec_tag: str | None = None
) -> tuple[str, bytes, bytes]:
    """Write an fMP4 HLS rendition with AAC; return FFmpeg's CODECS and both init records."""
    _require(encoder)
    muxer_options = {"master_pl_name": "master.m3u8", "hls_segment_type": "fmp4"}
    with av.open(str(directory / "v.m3u8"), "w", format="hls", options=muxer_options) as out:
        video = out.add_stream(encoder, rate=30, options=options)
        video.width, video.height, video.pix_fmt = 642, 362, "yuv420p"
        video.bit_rate = 500_000  # hlsenc writes no variant without a bandwidth
        if codec_tag:
            video.codec_tag = codec_tag
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        audio.bit_rate = 128_000
        # Shorter renditions give hlsenc no bandwidth and so no variant line.
        for index in range(30):
            frame = _video_frame(642, 362, "yuv420p", index % 8)
            frame.pts = index
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        _encode_audio_frames(audio, out, "stereo", 3)
    match = re.search(r'CODECS="([^"]+)"', (directory / "master.m3u8").read_text())
    assert match, "hlsenc wrote no CODECS attribute"
    with av.open(str(directory / "init.mp4")) as init:
        video_record = bytes(init.streams.video[0].codec_context.extradata)
        audio_record = bytes(init.streams.audio[0].codec_context.extradata)
    return match.group(1), video_record, audio_record


def encode_dash(directory: Path, encoder: str, pix_fmt: str, hdr: bool) -> tuple[str, bytes]:
    """Write a DASH rendition; return FFmpeg's codecs attribute and the init segment."""
    _require(encoder)
    # MP4 segments even for VP9, for which the muxer would pick WebM.
    options = {"dash_segment_type": "mp4"}
    with av.open(str(directory / "m.mpd"), "w", format="dash", options=options) as out:
        video = out.add_stream(encoder, rate=30)
        video.width, video.height, video.pix_fmt = 642, 362, pix_fmt
        if hdr:  # BT.2020 primaries and matrix, PQ transfer, full range
            context = video.codec_context
            context.color_primaries, context.color_trc, context.colorspace = 9, 16, 9
            context.color_range = 2
        for index in range(10):
            for packet in video.encode(_video_frame(642, 362, pix_fmt, index)):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    drop_realtime()  # SVT-AV1 leaves the process SCHED_FIFO
    match = re.search(r'codecs="([^"]+)"', (directory / "m.mpd").read_text())
    assert match, "the DASH muxer wrote no codecs attribute"
    (init,) = directory.glob("init*")
    return match.group(1), init.read_bytes()


def find_box(mp4: bytes, box_type: bytes) -> bytes:
    """The payload of the first box of that type, found by its name (enough for an init)."""
    start = mp4.index(box_type)
    size = int.from_bytes(mp4[start - 4 : start], "big")
    return mp4[start + 4 : start - 4 + size]


# --------------------------------------------------------------------------------------
# Crafting bitstreams bit by bit


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        assert 0 <= value < 1 << n, (n, value)
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))
        return self

    def flag(self, value: bool | int) -> BitWriter:
        return self.u(1, int(value))

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        return self.u(code.bit_length() - 1, 0).u(code.bit_length(), code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def zero_padded(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))

    def rbsp(self) -> bytes:
        """The bits with rbsp_trailing_bits (a stop bit, then zeros to a byte)."""
        self.flag(1)
        return self.zero_padded()


def escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes, as an encoder does."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def avcc(sps: bytes, pps: bytes = b"\x68\xee\x3c\x80") -> bytes:
    return (
        bytes([1, *(sps + bytes(3))[1:4], 0xFF, 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


HVCC_MAIN_HEADER = bytes.fromhex("0101600000009000000000005df000fcfdf8f800000f")


def hvcc(header: bytes, *arrays: tuple[int, bytes]) -> bytes:
    """An hvcC with a 22-byte header and one NAL unit per (type, nal) array."""
    body = bytearray(header[:22])
    body.append(len(arrays))
    for nal_type, nal in arrays:
        body += bytes([0x80 | nal_type]) + b"\x00\x01" + len(nal).to_bytes(2, "big") + nal
    return bytes(body)


def leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def av1c(header: bytes, *obus: bytes) -> bytes:
    return header + b"".join(obus)


# Profile 0, level 4.1 (index 9) at high tier, 10-bit 4:2:0: matches _full_sequence_header.
AV1C_HEADER = bytes.fromhex("8109cc00")


def sequence_header_obu(payload: bytes) -> bytes:
    return bytes([0x0A]) + leb128(len(payload)) + payload  # type 1, has_size_field


# --------------------------------------------------------------------------------------
# H.264


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


def _crafted_avc_sps() -> bytes:
    w = BitWriter()
    w.u(8, 122).u(8, 0).u(8, 40).ue(0)  # High 4:2:2, level 4.0, sps id 0
    w.ue(2).ue(2).ue(2).flag(0)  # 4:2:2, 10-bit luma and chroma
    w.flag(1)  # seq_scaling_matrix_present_flag
    last = 8
    w.flag(1)  # list 0: sixteen explicit values
    for value in range(8, 24):
        w.se(((value - last + 128) % 256) - 128)
        last = value
    w.flag(1).se(-8)  # list 1: next_scale 0 at once selects the default matrix
    for _ in range(4):
        w.flag(0)
    w.flag(1)  # list 6 (8x8): ten values, then a delta to 0 repeats the last one
    last = 8
    for value in range(10, 20):
        w.se(value - last)
        last = value
    w.se(-last)
    w.flag(0)  # list 7
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(1).flag(0).se(-2).se(1).ue(3).se(2).se(2).se(-5)  # pic_order_cnt_type 1, a cycle of 3
    w.ue(4).flag(0)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    w.ue(40).ue(11)  # 41 macroblocks wide, 12 map units (24 macroblocks) high
    w.flag(0).flag(1)  # field pairs allowed, mb_adaptive_frame_field_flag
    w.flag(1)  # direct_8x8_inference_flag
    # 656x384 coded; crop 7 chroma columns (2 px each) and 11 field-pair chroma rows (2 px).
    w.flag(1).ue(0).ue(7).ue(0).ue(11)
    w.flag(1)  # vui_parameters_present_flag
    w.flag(1).u(8, 255).u(16, 4).u(16, 3)  # extended sample aspect ratio
    w.flag(1).flag(0)  # overscan
    w.flag(1).u(3, 5).flag(0).flag(1).u(8, 1).u(8, 1).u(8, 1)  # video signal, colour
    w.flag(1).ue(0).ue(0)  # chroma location
    w.flag(1).u(32, 1).u(32, 50).flag(1)  # timing: 25 frames/s, and zero bytes to escape
    w.flag(0).flag(0).flag(0).flag(0)  # no HRD, no pic_struct, no bitstream restriction
    return b"\x67" + escape(w.rbsp())


def test_crafted_high_422_sps_with_poc_type_1_and_scaling_lists_is_parsed() -> None:
    assert parse_avc_config(avcc(_crafted_avc_sps())) == VideoConfig(
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
    sps = _crafted_avc_sps()
    assert b"\x00\x00\x03" in sps  # the timing fields' zero bytes needed escaping

    assert parse_avc_config(avcc(sps)).frame_rate == 25


def test_a_truncated_vui_costs_only_the_frame_rate() -> None:
    sps = _crafted_avc_sps()
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


# --------------------------------------------------------------------------------------
# HEVC


X265_FAST = (("preset", "ultrafast"),)


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
    sps = next(nal for nal in _hvcc_nals(record) if nal[0] >> 1 == 33)

    # x265 signals timing in the SPS VUI only (its VPS has none).
    assert parse_hevc_sps(sps).frame_rate == rate
    assert parse_hevc_config(record).frame_rate == rate


def test_x265_temporal_sub_layers_are_skipped_in_profile_tier_level() -> None:
    record = encode_video(
        "libx265", 642, 362, options=(*X265_FAST, ("x265-params", "temporal-layers=3"))
    )
    sps = next(nal for nal in _hvcc_nals(record) if nal[0] >> 1 == 33)
    assert (sps[2] >> 1) & 0x07 == 2  # sps_max_sub_layers_minus1

    config = parse_hevc_config(record)

    assert (config.width, config.height, config.frame_rate) == (642, 362, 30)


def _hvcc_nals(record: bytes) -> Iterator[bytes]:
    position = 23
    for _ in range(record[22]):
        count = int.from_bytes(record[position + 1 : position + 3], "big")
        position += 3
        for _ in range(count):
            length = int.from_bytes(record[position : position + 2], "big")
            yield record[position + 2 : position + 2 + length]
            position += 2 + length


def _write_rext_profile_tier_level(w: BitWriter) -> None:
    w.u(2, 0).flag(0).u(5, 4).u(32, 0x08000000)  # Main 4:2:2 10 (format range extensions)
    w.flag(1).flag(0).flag(0).flag(1)  # progressive, not interlaced, packed, frame only
    w.flag(1).flag(1).flag(0).flag(1).flag(0).flag(0).flag(0).flag(0).flag(1)
    w.u(34, 0).flag(0)  # reserved, general_inbld_flag
    w.u(8, 93)
    w.flag(1).flag(1).flag(0).flag(1)  # sub-layer 0: profile and level; sub-layer 1: level
    w.u(12, 0)  # reserved_zero_2bits for sub-layers 2..7
    w.u(2, 0).flag(0).u(5, 4).u(32, 0x08000000).u(48, 0x9D0800000000).u(8, 90)
    w.u(8, 87)


def _crafted_hevc_vps(timing: bool) -> bytes:
    w = BitWriter().u(4, 0).flag(1).flag(1).u(6, 0).u(3, 2).flag(0).u(16, 0xFFFF)
    _write_rext_profile_tier_level(w)
    w.flag(1)
    for _ in range(3):
        w.ue(4).ue(2).ue(0)
    w.u(6, 0).ue(1).flag(1)  # two layer sets, layer 0 in the second
    w.flag(timing)
    if timing:
        w.u(32, 1).u(32, 25).flag(0).ue(0)
    w.flag(0)  # vps_extension_flag
    return b"\x40\x01" + escape(w.rbsp())


def _crafted_hevc_sps(vui_timing: bool) -> bytes:
    w = BitWriter().u(4, 0).u(3, 2).flag(0)
    _write_rext_profile_tier_level(w)
    w.ue(0).ue(2)  # sps id, 4:2:2
    w.ue(648).ue(368).flag(1).ue(0).ue(3).ue(0).ue(6)  # crop 3 chroma columns, 6 rows
    w.ue(2).ue(2).ue(4)  # 10-bit, 10-bit, 8-bit POC LSBs
    w.flag(0).ue(4).ue(2).ue(0)  # ordering info for the highest sub-layer only
    w.ue(0).ue(2).ue(0).ue(3).ue(1).ue(1)  # block sizes 8..32, transforms 4..32
    w.flag(1).flag(1)  # scaling lists, coded in the SPS
    for size_id in range(4):
        for matrix_id in range(0, 6, 3 if size_id == 3 else 1):
            if matrix_id == 0:
                w.flag(1)  # coded explicitly
                if size_id > 1:
                    w.se(8)
                for coefficient in range(min(64, 1 << (4 + 2 * size_id))):
                    w.se(1 if coefficient % 2 else -1)
            else:
                w.flag(0).ue(1)  # copied from the previous matrix
    w.flag(1).flag(1)  # amp, sao
    w.flag(1).u(4, 7).u(4, 7).ue(0).ue(1).flag(0)  # PCM
    w.ue(3)  # three short-term reference picture sets
    w.ue(2).ue(1).ue(0).flag(1).ue(1).flag(1).ue(0).flag(0)  # -1, -3, +1
    w.flag(1).flag(1).ue(0)  # predicted from set 0 with delta -1
    w.flag(1).flag(0).flag(1).flag(0).flag(0).flag(1)  # keep -2, -4 and -1
    w.flag(1).flag(0).ue(1)  # predicted from set 1 with delta +2
    w.flag(1).flag(0).flag(0).flag(0).flag(1).flag(1)  # keep 1, -2 and 2
    w.flag(1).ue(2).u(8, 17).flag(1).u(8, 200).flag(0)  # two long-term pictures
    w.flag(1).flag(1)  # temporal MVP, strong intra smoothing
    w.flag(1)  # vui_parameters_present_flag
    w.flag(1).u(8, 255).u(16, 4).u(16, 3)
    w.flag(0)  # overscan
    w.flag(1).u(3, 5).flag(0).flag(1).u(8, 9).u(8, 16).u(8, 9)
    w.flag(1).ue(1).ue(1)
    w.flag(0).flag(0).flag(0)  # neutral chroma, field_seq, frame_field_info
    w.flag(1).ue(0).ue(0).ue(0).ue(0)  # default display window
    w.flag(vui_timing)
    if vui_timing:
        w.u(32, 1001).u(32, 60000).flag(0).flag(0)
    w.flag(0)  # bitstream_restriction_flag
    w.flag(0)  # sps_extension_present_flag
    return b"\x42\x01" + escape(w.rbsp())


CRAFTED_HVCC_HEADER = bytes.fromhex("0104080000009d08000000005df000fcfefafa00001b")


def _open_hevc_decoder(record: bytes) -> Any:
    decoder = av.CodecContext.create("hevc", "r")
    decoder.extradata = record
    decoder.open()  # FFmpeg exports the first SPS's parameters on open
    return decoder


def test_crafted_hevc_sps_is_read_as_ffmpeg_reads_it() -> None:
    record = hvcc(
        CRAFTED_HVCC_HEADER, (32, _crafted_hevc_vps(timing=False)), (33, _crafted_hevc_sps(True))
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
        (32, _crafted_hevc_vps(timing=True)),
        (33, _crafted_hevc_sps(sps_timing)),
    )

    assert parse_hevc_config(record).frame_rate == 25
    assert _open_hevc_decoder(record).framerate == 25


def test_hevc_frame_rate_falls_back_to_the_record_average() -> None:
    header = CRAFTED_HVCC_HEADER[:19] + (50 * 256).to_bytes(2, "big") + CRAFTED_HVCC_HEADER[21:]
    record = hvcc(header, (32, _crafted_hevc_vps(timing=False)), (33, _crafted_hevc_sps(False)))

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


# --------------------------------------------------------------------------------------
# AV1


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


def _write_pq_colour(w: BitWriter) -> None:
    w.flag(1).flag(0).flag(1).u(8, 9).u(8, 16).u(8, 9)  # 10-bit, colour, BT.2020 PQ
    w.flag(1).u(2, 0)  # full range, chroma position


def _write_srgb_colour(w: BitWriter) -> None:  # profile 1: no monochrome bit
    w.flag(0).flag(1).u(8, 1).u(8, 13).u(8, 0)  # 8-bit sRGB: range and subsampling implied


def _write_undescribed_colour(w: BitWriter) -> None:
    w.flag(0).flag(0).flag(0).flag(0).u(2, 1)  # 8-bit, limited range, chroma position 1


def _rest_of_sequence_header(
    w: BitWriter, reduced: bool, colour: Callable[[BitWriter], None] = _write_pq_colour
) -> bytes:
    if not reduced:
        w.flag(0)  # frame_id_numbers_present_flag
    w.flag(0).flag(0).flag(0)  # 64x64 superblocks, no filter intra, no intra edge filter
    if not reduced:
        w.flag(0).flag(0).flag(0).flag(0)  # interintra, masked, warped, dual filter
        w.flag(1).flag(0).flag(0)  # order hints, no jnt_comp, no ref_frame_mvs
        w.flag(1).flag(1)  # screen content tools and integer MVs chosen per frame
        w.u(3, 6)  # order_hint_bits_minus_1
    w.flag(0).flag(1).flag(1)  # superres, cdef, restoration
    colour(w)
    w.flag(0).flag(0)  # separate_uv_delta_q, film_grain_params_present
    return w.rbsp()


def _full_sequence_header(ticks_per_picture: int | None) -> bytes:
    w = BitWriter().u(3, 0).flag(0).flag(0)
    w.flag(1).u(32, 1001).u(32, 60000)  # timing_info
    w.flag(ticks_per_picture is not None)  # equal_picture_interval
    if ticks_per_picture is not None:
        code = ticks_per_picture  # uvlc of num_ticks_per_picture_minus_1
        w.u(code.bit_length() - 1, 0).u(code.bit_length(), code)
    w.flag(1).u(5, 9).u(32, 1001).u(5, 4).u(5, 4)  # decoder_model_info
    w.flag(1)  # initial_display_delay_present_flag
    w.u(5, 1)  # two operating points
    w.u(12, 0x103).u(5, 9).flag(1)  # level 4.1 (index 9) has a tier bit
    w.flag(1).u(10, 500).u(10, 400).flag(0)  # decoder model for this point
    w.flag(1).u(4, 9)  # initial display delay for this point
    w.u(12, 0x101).u(5, 5).flag(0).flag(0)
    w.u(4, 11).u(4, 10).u(12, 1919).u(11, 1079)
    return _rest_of_sequence_header(w, reduced=False)


def test_av1_sequence_header_with_timing_decoder_model_and_operating_points() -> None:
    record = av1c(AV1C_HEADER, sequence_header_obu(_full_sequence_header(1)))
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
    record = av1c(AV1C_HEADER, sequence_header_obu(_full_sequence_header(ticks_per_picture)))

    assert parse_av1_config(record).frame_rate == frame_rate


@pytest.mark.parametrize(
    ("av1c_header", "profile", "colour", "codec_string"),
    [
        ("81044c00", 0, _write_pq_colour, "av01.0.04M.10.0.110.09.16.09.1"),
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
    obu = sequence_header_obu(_rest_of_sequence_header(w, True, colour))

    config = parse_av1_config(av1c(bytes.fromhex(av1c_header), obu))

    assert (config.width, config.height, config.frame_rate) == (1000, 750, None)
    assert config.codec_string == codec_string


def test_av1_config_obus_may_use_extensions_and_omit_the_last_size() -> None:
    payload = _full_sequence_header(1)
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
    ("encoder", "pix_fmt", "hdr", "box", "codec_string"),
    [
        ("libsvtav1", "yuv420p", False, b"av1C", "av01.0.01M.08"),
        ("libsvtav1", "yuv420p10le", True, b"av1C", "av01.0.01M.10.0.110.09.16.09.1"),
        ("libvpx-vp9", "yuv420p", False, b"vpcC", "vp09.00.21.08"),
    ],
    ids=["av1", "av1-hdr", "vp9"],
)
def test_av1_and_vp9_codec_strings_match_ffmpeg_dash(
    tmp_path: Path, encoder: str, pix_fmt: str, hdr: bool, box: bytes, codec_string: str
) -> None:
    # PyAV's hlsenc names neither codec, but the DASH muxer does, with the same rules.
    codecs, init = encode_dash(tmp_path, encoder, pix_fmt, hdr)

    config = parse_video_config("av01" if box == b"av1C" else "vp09", find_box(init, box))

    assert config.codec_string == codec_string
    assert codecs == codec_string


# --------------------------------------------------------------------------------------
# VP9


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


# --------------------------------------------------------------------------------------
# Audio


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


def _asc(*fields: tuple[int, int]) -> bytes:
    w = BitWriter()
    for bits, value in fields:
        w.u(bits, value)
    return w.zero_padded()


GA_PLAIN = (3, 0)  # frameLengthFlag, dependsOnCoreCoder, extensionFlag


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # Explicit hierarchical HE-AAC: SBR at 48 kHz over a 24 kHz AAC-LC core.
        (_asc((5, 5), (4, 6), (4, 2), (4, 3), (5, 2), GA_PLAIN), ("mp4a.40.5", 48000, 2)),
        # HE-AAC v2: parametric stereo makes two channels of a mono core.
        (_asc((5, 29), (4, 6), (4, 1), (4, 3), (5, 2), GA_PLAIN), ("mp4a.40.29", 48000, 2)),
        # Backward-compatible signalling: AAC-LC, then sync extensions for SBR and PS.
        (
            _asc(
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
        (_asc((5, 31), (6, 10), (4, 15), (24, 37800), (4, 2)), ("mp4a.40.42", 37800, 2)),
        (_asc((5, 2), (4, 3), (4, 7), GA_PLAIN), ("mp4a.40.2", 48000, 8)),  # 7.1
    ],
    ids=["he-aac", "he-aac-v2", "sync-extension", "escaped-object-type", "7.1"],
)
def test_aac_signalling_variants(record: bytes, expected: tuple[str, int, int]) -> None:
    config = parse_aac_config(record)

    assert (config.codec_string, config.sample_rate, config.channels) == expected


def test_aac_channel_configuration_0_counts_the_program_config_element() -> None:
    record = (
        _asc(
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
        _asc((5, 2), (4, 13), (4, 2)),  # reserved frequency index
        _asc((5, 2), (4, 3), (4, 8)),  # reserved channel configuration
        _asc((5, 0), (4, 3), (4, 2)),  # null object type
        _asc((5, 2), (4, 15), (24, 0), (4, 2)),  # explicit 0 Hz
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


def opus_head(channels: int, rate: int, family: int, mapping: bytes = b"") -> bytes:
    return (
        b"OpusHead"
        + bytes([1, channels])
        + (312).to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + b"\x00\x00"
        + bytes([family])
        + mapping
    )


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


# --------------------------------------------------------------------------------------
# Dispatch


@pytest.mark.parametrize(
    ("fourcc", "codec"), [("avc1", "h264"), ("hvc1", "hevc"), ("av01", "av1"), ("vp09", "vp9")]
)
def test_video_fourcc_selects_the_parser(fourcc: str, codec: str) -> None:
    records = {
        "avc1": avcc(_crafted_avc_sps()),
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


# --------------------------------------------------------------------------------------
# Fuzzing: any input ends in a config or a CodecConfigError


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
        CRAFTED_HVCC_HEADER, (32, _crafted_hevc_vps(timing=True)), (33, _crafted_hevc_sps(True))
    )
    x265 = encode_video("libx265", 642, 362, options=X265_FAST)
    # Keep VPS and SPS only: x265's SEI would take most of the mutations.
    x265_sps = hvcc(x265, *((nal[0] >> 1, nal) for nal in _hvcc_nals(x265) if nal[0] >> 1 < 34))
    return [
        (parse_avc_config, encode_video("libx264", 642, 362)),
        (parse_avc_config, encode_video("libx264", 642, 362, "yuv444p", (("level", "3.0"),))),
        (parse_avc_config, avcc(_crafted_avc_sps())),
        (parse_hevc_config, x265_sps),
        (parse_hevc_config, hevc_rext),
        (parse_av1_config, encode_video("libsvtav1", 642, 362)),
        (parse_av1_config, av1c(AV1C_HEADER, sequence_header_obu(_full_sequence_header(1)))),
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
        (parse_aac_config, _asc((5, 2), (4, 3), (4, 0), GA_PLAIN, (31, 0), (3, 0)) + b"\xff"),
    ],
    ids=["avcc-sps", "hvcc-nalus", "av1-obu-size", "leb128-overlong", "vpcc-init", "pce-comment"],
)
def test_oversized_length_fields_are_rejected(
    parse: Callable[[bytes], object], data: bytes
) -> None:
    with pytest.raises(CodecConfigError):
        parse(data)
