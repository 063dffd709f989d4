"""AV1: AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3) and the sequence header OBU (AV1 5.5)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from transcoder.codecs.bits import BitReader
from transcoder.codecs.config import CodecConfigError, VideoConfig

_OBU_SEQUENCE_HEADER = 1
# color_config() shortcut (AV1 6.4.2): BT.709 primaries, sRGB transfer, identity matrix
# means 4:4:4 full-range RGB, with no range or subsampling bits coded.
_CP_BT_709, _TC_SRGB, _MC_IDENTITY = 1, 13, 0
# leb128() reads at most 8 bytes and its value must fit 32 bits (AV1 4.10.5).
_LEB128_MAX_BYTES = 8


@dataclass(frozen=True, slots=True)
class Av1Colour:
    """The optional fields of the codec string, in its order."""

    monochrome: bool
    subsampling_x: int
    subsampling_y: int
    chroma_sample_position: int
    colour_primaries: int
    transfer_characteristics: int
    matrix_coefficients: int
    full_range: bool

    @property
    def codec_string_suffix(self) -> str:
        return (
            f".{int(self.monochrome)}"
            f".{self.subsampling_x}{self.subsampling_y}{self.chroma_sample_position}"
            f".{self.colour_primaries:02d}.{self.transfer_characteristics:02d}"
            f".{self.matrix_coefficients:02d}.{int(self.full_range)}"
        )


@dataclass(frozen=True, slots=True)
class Av1SequenceHeader:
    seq_profile: int
    width: int
    height: int
    frame_rate: Fraction | None
    colour: Av1Colour
    colour_described: bool


def parse_av1_config(data: bytes | bytearray | memoryview) -> VideoConfig:
    """Parse an av1C record and the sequence header OBU in its configOBUs, if any.

    Raises CodecConfigError on any malformed, truncated or unsupported input. A record
    without a sequence header OBU yields width and height None.
    """
    raw = bytes(data)
    r = BitReader(raw)
    if r.u(1) != 1 or r.u(7) != 1:
        raise CodecConfigError("av1C marker or version is not 1")
    seq_profile = r.u(3)
    level = r.u(5)
    high_tier = r.flag()
    high_bitdepth = r.flag()
    twelve_bit = r.flag()
    r.skip(8 + 5)  # monochrome, chroma subsampling and position; initial_presentation_delay
    if seq_profile > 2:
        raise CodecConfigError(f"reserved AV1 seq_profile {seq_profile}")
    bit_depth = 8
    if high_bitdepth:
        bit_depth = 12 if seq_profile == 2 and twelve_bit else 10
    # av01.P.LLT.DD (AV1-ISOBMFF, Codecs Parameter String). The optional colour fields,
    # all or none, follow when the sequence header describes its colours, as FFmpeg's
    # hlsenc writes them: without them a player assumes BT.709, wrong for HDR.
    codec_string = f"av01.{seq_profile}.{level:02d}{'H' if high_tier else 'M'}.{bit_depth:02d}"

    header = _find_sequence_header(raw[4:])
    width = height = None
    frame_rate = None
    if header is not None:
        width, height, frame_rate = header.width, header.height, header.frame_rate
        if header.colour_described:
            codec_string += header.colour.codec_string_suffix
    return VideoConfig(
        codec="av1",
        codec_string=codec_string,
        width=width,
        height=height,
        frame_rate=frame_rate,
        profile=seq_profile,
        level=level,
        bit_depth=bit_depth,
    )


def _find_sequence_header(obus: bytes) -> Av1SequenceHeader | None:
    r = BitReader(obus)
    while r.bytes_left:
        if r.u(1):
            raise CodecConfigError("OBU forbidden bit set")
        obu_type = r.u(4)
        has_extension = r.flag()
        has_size = r.flag()
        r.skip(1)  # obu_reserved_1bit
        if has_extension:
            r.skip(8)
        size = _read_leb128(r) if has_size else r.bytes_left
        payload = r.read_bytes(size)
        if obu_type == _OBU_SEQUENCE_HEADER:
            return parse_av1_sequence_header(payload)
    return None


def _read_leb128(r: BitReader) -> int:
    value = 0
    for i in range(_LEB128_MAX_BYTES):
        byte = r.u(8)
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                raise CodecConfigError("leb128 value above 32 bits")
            return value
    raise CodecConfigError("leb128 longer than 8 bytes")


def parse_av1_sequence_header(payload: bytes) -> Av1SequenceHeader:
    """Parse a sequence_header_obu payload up to its color_config.

    Raises CodecConfigError on malformed or truncated input.
    """
    r = BitReader(payload)
    seq_profile = r.u(3)
    r.skip(1)  # still_picture
    frame_rate = None
    reduced = r.flag()  # reduced_still_picture_header
    if reduced:
        r.skip(5)  # seq_level_idx[0]
    else:
        decoder_model_info_present = False
        buffer_delay_length = 0
        if r.flag():  # timing_info_present_flag
            frame_rate = _read_timing_info(r)
            decoder_model_info_present = r.flag()
            if decoder_model_info_present:
                buffer_delay_length = r.u(5) + 1
                r.skip(32 + 5 + 5)  # num_units_in_decoding_tick, two length fields
        initial_display_delay_present = r.flag()
        for _ in range(r.u(5) + 1):  # operating_points_cnt_minus_1
            r.skip(12)  # operating_point_idc
            if r.u(5) > 7:  # seq_level_idx
                r.skip(1)  # seq_tier
            if decoder_model_info_present and r.flag():  # decoder_model_present_for_this_op
                r.skip(2 * buffer_delay_length + 1)  # buffer delays, low_delay_mode_flag
            if initial_display_delay_present and r.flag():
                r.skip(4)  # initial_display_delay_minus_1
    width_bits = r.u(4) + 1
    height_bits = r.u(4) + 1
    width = r.u(width_bits) + 1
    height = r.u(height_bits) + 1
    _skip_coding_tools(r, reduced)
    colour, described = _read_color_config(r, seq_profile)
    return Av1SequenceHeader(seq_profile, width, height, frame_rate, colour, described)


def _skip_coding_tools(r: BitReader, reduced: bool) -> None:
    if not reduced and r.flag():  # frame_id_numbers_present_flag
        r.skip(4 + 3)  # delta_frame_id_length_minus_2, additional_frame_id_length_minus_1
    r.skip(3)  # use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if not reduced:
        r.skip(4)  # interintra, masked compound, warped motion, dual filter
        order_hint = r.flag()
        if order_hint:
            r.skip(2)  # enable_jnt_comp, enable_ref_frame_mvs
        # seq_choose_screen_content_tools selects "per frame" (2), else a coded 0 or 1.
        screen_content_tools = 2 if r.flag() else r.u(1)
        if screen_content_tools and not r.flag():  # seq_choose_integer_mv
            r.skip(1)  # seq_force_integer_mv
        if order_hint:
            r.skip(3)  # order_hint_bits_minus_1
    r.skip(3)  # enable_superres, enable_cdef, enable_restoration


def _read_color_config(r: BitReader, seq_profile: int) -> tuple[Av1Colour, bool]:
    high_bitdepth = r.flag()
    twelve_bit = seq_profile == 2 and high_bitdepth and r.flag()
    monochrome = seq_profile != 1 and r.flag()
    described = r.flag()  # color_description_present_flag
    primaries, transfer, matrix = (r.u(8), r.u(8), r.u(8)) if described else (2, 2, 2)
    subsampling_x = subsampling_y = 1
    position = 0
    if monochrome:
        full_range = r.flag()
    elif (primaries, transfer, matrix) == (_CP_BT_709, _TC_SRGB, _MC_IDENTITY):
        full_range = True
        subsampling_x = subsampling_y = 0
    else:
        full_range = r.flag()
        if seq_profile == 1:
            subsampling_x = subsampling_y = 0
        elif seq_profile == 2:
            if twelve_bit:
                subsampling_x = r.u(1)
                subsampling_y = r.u(1) if subsampling_x else 0
            else:
                subsampling_y = 0
        if subsampling_x and subsampling_y:
            position = r.u(2)  # chroma_sample_position
    colour = Av1Colour(
        monochrome=monochrome,
        subsampling_x=subsampling_x,
        subsampling_y=subsampling_y,
        chroma_sample_position=position,
        colour_primaries=primaries,
        transfer_characteristics=transfer,
        matrix_coefficients=matrix,
        full_range=full_range,
    )
    return colour, described


def _read_timing_info(r: BitReader) -> Fraction | None:
    num_units_in_display_tick = r.u(32)
    time_scale = r.u(32)
    if not r.flag():  # equal_picture_interval: without it, pictures last any number of ticks
        return None
    ticks_per_picture = _read_uvlc(r) + 1
    if num_units_in_display_tick == 0 or time_scale == 0:
        return None
    return Fraction(time_scale, num_units_in_display_tick * ticks_per_picture)


def _read_uvlc(r: BitReader) -> int:
    leading_zeros = 0
    while not r.flag():
        leading_zeros += 1
        # 32 zeros already code the largest value (4.10.3); more is no real stream, and
        # stopping here keeps a long run of zero bytes from costing a loop per bit.
        if leading_zeros > 32:
            raise CodecConfigError("uvlc code longer than 32 leading zeros")
    if leading_zeros == 32:
        return (1 << 32) - 1
    return r.u(leading_zeros) + (1 << leading_zeros) - 1
