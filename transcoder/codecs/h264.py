"""H.264: AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3) and the SPS (H.264 7.3.2.1)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from transcoder.codecs.bits import BitReader, unescape_rbsp
from transcoder.codecs.config import CodecConfigError, VideoConfig

_NAL_SPS = 7

# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})

# (SubWidthC, SubHeightC) by chroma_format_idc (Table 6-1).
_CHROMA_SUBSAMPLING = {1: (2, 2), 2: (2, 1), 3: (1, 1)}

_EXTENDED_SAR = 255


@dataclass(frozen=True, slots=True)
class AvcSps:
    profile_idc: int
    level_idc: int
    width: int
    height: int
    bit_depth: int
    frame_rate: Fraction | None


def parse_avc_config(data: bytes | bytearray | memoryview) -> VideoConfig:
    """Parse an avcC record and its first SPS.

    Raises CodecConfigError on any malformed, truncated or unsupported input. A record
    without an SPS yields width and height None.
    """
    reader = BitReader(bytes(data))
    if reader.u(8) != 1:
        raise CodecConfigError("avcC configurationVersion is not 1")
    profile, compatibility, level = reader.u(8), reader.u(8), reader.u(8)
    reader.skip(8)  # reserved + lengthSizeMinusOne
    sps_nals = [reader.read_bytes(reader.u(16)) for _ in range(reader.u(8) & 0x1F)]
    codec_string = f"avc1.{profile:02x}{compatibility:02x}{level:02x}"
    if not sps_nals:
        return VideoConfig("h264", codec_string, None, None, None, profile, level, None)
    sps = parse_avc_sps(sps_nals[0])
    return VideoConfig(
        codec="h264",
        codec_string=codec_string,
        width=sps.width,
        height=sps.height,
        frame_rate=sps.frame_rate,
        profile=profile,
        level=level,
        bit_depth=sps.bit_depth,
    )


def parse_avc_sps(nal: bytes) -> AvcSps:
    """Parse an SPS NAL unit (header byte included, emulation prevention not yet removed).

    Raises CodecConfigError on malformed or truncated input, or when the cropping window
    leaves no picture.
    """
    if not nal or nal[0] & 0x9F != _NAL_SPS:
        raise CodecConfigError("not an H.264 SPS NAL unit")
    r = BitReader(unescape_rbsp(nal[1:]))
    profile_idc = r.u(8)
    r.skip(8)  # constraint_set flags
    level_idc = r.u(8)
    r.ue_max(31, "seq_parameter_set_id")

    chroma_format_idc = 1
    separate_colour_plane = False
    bit_depth = 8
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue_max(3, "chroma_format_idc")
        if chroma_format_idc == 3:
            separate_colour_plane = r.flag()
        bit_depth = 8 + r.ue_max(6, "bit_depth_luma_minus8")
        r.ue_max(6, "bit_depth_chroma_minus8")
        r.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)

    r.ue_max(12, "log2_max_frame_num_minus4")
    poc_type = r.ue_max(2, "pic_order_cnt_type")
    if poc_type == 0:
        r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")
    elif poc_type == 1:
        r.skip(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(r.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")):
            r.se()  # offset_for_ref_frame
    r.ue()  # max_num_ref_frames
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_in_mbs = r.ue() + 1
    height_in_map_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.skip(1)  # mb_adaptive_frame_field_flag
    r.skip(1)  # direct_8x8_inference_flag
    crop_left = crop_right = crop_top = crop_bottom = 0
    if r.flag():  # frame_cropping_flag
        crop_left, crop_right, crop_top, crop_bottom = r.ue(), r.ue(), r.ue(), r.ue()

    # Crop offsets count chroma samples, and field pairs when frames may be coded as
    # fields (7.4.2.1.1, equations 7-19 to 7-22).
    field_factor = 1 if frame_mbs_only else 2
    if separate_colour_plane or chroma_format_idc == 0:
        crop_unit_x, crop_unit_y = 1, field_factor
    else:
        sub_width, sub_height = _CHROMA_SUBSAMPLING[chroma_format_idc]
        crop_unit_x, crop_unit_y = sub_width, sub_height * field_factor
    width = width_in_mbs * 16 - crop_unit_x * (crop_left + crop_right)
    height = field_factor * height_in_map_units * 16 - crop_unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise CodecConfigError(f"SPS cropping leaves a {width}x{height} picture")

    frame_rate = None
    if r.flag():  # vui_parameters_present_flag
        frame_rate = _find_vui_frame_rate(r)
    return AvcSps(profile_idc, level_idc, width, height, bit_depth, frame_rate)


def _skip_scaling_list(r: BitReader, size: int) -> None:
    # 7.3.2.1.1.1: a delta of -8 from 8 makes next_scale 0, which ends the coded list and
    # repeats the last scale (or selects the default matrix) for the remaining entries.
    last_scale = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            delta_scale = r.se()
            if not -128 <= delta_scale <= 127:
                raise CodecConfigError(f"delta_scale {delta_scale} out of range")
            next_scale = (last_scale + delta_scale + 256) % 256
        if next_scale != 0:
            last_scale = next_scale


def _find_vui_frame_rate(r: BitReader) -> Fraction | None:
    # Encoders in the wild write VUIs cut short (FFmpeg warns "Overread VUI" and goes on);
    # the picture size is already known, so a broken VUI costs only the frame rate.
    try:
        if r.flag() and r.u(8) == _EXTENDED_SAR:  # aspect_ratio_info_present_flag
            r.skip(32)  # sar_width, sar_height
        if r.flag():  # overscan_info_present_flag
            r.skip(1)
        if r.flag():  # video_signal_type_present_flag
            r.skip(4)  # video_format, video_full_range_flag
            if r.flag():  # colour_description_present_flag
                r.skip(24)
        if r.flag():  # chroma_loc_info_present_flag
            r.ue()
            r.ue()
        if not r.flag():  # timing_info_present_flag
            return None
        num_units_in_tick = r.u(32)
        time_scale = r.u(32)
    except CodecConfigError:
        return None
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    # One tick is one field: a frame lasts two (E.2.1, equation C-1 with the default
    # DeltaTfiDivisor of 2 for frame pictures).
    return Fraction(time_scale, 2 * num_units_in_tick)
