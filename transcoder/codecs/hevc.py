"""HEVC: HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3) and the VPS/SPS (H.265 7.3.2)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from transcoder.codecs.bits import BitReader, unescape_rbsp
from transcoder.codecs.config import CodecConfigError, VideoConfig

_NAL_VPS = 32
_NAL_SPS = 33

_PROFILE_SPACES = ("", "A", "B", "C")

# (SubWidthC, SubHeightC) by ChromaArrayType (Table 6-1); 0 is monochrome or 4:4:4 coded
# as separate planes, both cropped in luma samples.
_CHROMA_SUBSAMPLING = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}

_EXTENDED_SAR = 255
# general_profile_space ... general_inbld_flag: everything in a profile_tier_level entry
# before its level_idc (7.3.3).
_PROFILE_BITS = 88
# FFmpeg rejects larger reference picture sets (HEVC_MAX_REFS, 32 predicted deltas).
_MAX_REFS = 16
_MAX_PREDICTED_DELTAS = 32


@dataclass(frozen=True, slots=True)
class HevcSps:
    width: int
    height: int
    bit_depth: int
    frame_rate: Fraction | None


def parse_hevc_config(data: bytes | bytearray | memoryview) -> VideoConfig:
    """Parse an hvcC record and the first base-layer SPS in its NAL unit arrays.

    frame_rate comes from the VPS timing, else the SPS VUI timing, else the record's
    avgFrameRate (FFmpeg's order; in a conforming stream they agree). Raises
    CodecConfigError on any malformed, truncated or unsupported input. A record without
    an SPS yields width and height None.
    """
    r = BitReader(bytes(data))
    if r.u(8) != 1:
        raise CodecConfigError("hvcC configurationVersion is not 1")
    profile_space = r.u(2)
    high_tier = r.flag()
    profile_idc = r.u(5)
    compatibility = r.u(32)
    constraints = r.read_bytes(6)
    level_idc = r.u(8)
    r.skip(16 + 8 + 8)  # min_spatial_segmentation_idc, parallelismType, chromaFormat
    record_bit_depth = 8 + (r.u(8) & 0x07)
    r.skip(8)  # bitDepthChromaMinus8
    avg_frame_rate = r.u(16)
    r.skip(8)  # constantFrameRate, numTemporalLayers, temporalIdNested, lengthSizeMinusOne

    vps_nals: list[bytes] = []
    sps_nals: list[bytes] = []
    for _ in range(r.u(8)):
        nal_type = r.u(8) & 0x3F
        for _ in range(r.u(16)):
            nal = r.read_bytes(r.u(16))
            if nal_type == _NAL_VPS:
                vps_nals.append(nal)
            elif nal_type == _NAL_SPS:
                sps_nals.append(nal)

    codec_string = _codec_string(
        profile_space, high_tier, profile_idc, compatibility, constraints, level_idc
    )
    # Enhancement-layer SPSs (nuh_layer_id > 0) use another syntax and describe
    # pictures a base-layer decoder never shows.
    base_sps = next((nal for nal in sps_nals if _nuh_layer_id(nal) == 0), None)
    width = height = None
    bit_depth = record_bit_depth
    frame_rate = None
    base_vps = next((nal for nal in vps_nals if _nuh_layer_id(nal) == 0), None)
    if base_vps is not None:
        frame_rate = find_hevc_vps_frame_rate(base_vps)
    if base_sps is not None:
        sps = parse_hevc_sps(base_sps)
        width, height, bit_depth = sps.width, sps.height, sps.bit_depth
        frame_rate = frame_rate or sps.frame_rate
    if frame_rate is None and avg_frame_rate:
        frame_rate = Fraction(avg_frame_rate, 256)  # the record counts frames per 256 s
    return VideoConfig(
        codec="hevc",
        codec_string=codec_string,
        width=width,
        height=height,
        frame_rate=frame_rate,
        profile=profile_idc,
        level=level_idc,
        bit_depth=bit_depth,
    )


def _codec_string(
    profile_space: int,
    high_tier: bool,
    profile_idc: int,
    compatibility: int,
    constraints: bytes,
    level_idc: int,
) -> str:
    # ISO/IEC 14496-15 E.3: compatibility flags in reverse bit order as hex, constraint
    # bytes with trailing zero bytes dropped. One byte is always kept, as FFmpeg's hlsenc
    # does, because some players expect a fifth element.
    reversed_compatibility = int(f"{compatibility:032b}"[::-1], 2)
    kept = constraints.rstrip(b"\x00") or constraints[:1]
    return ".".join(
        [
            "hvc1",
            f"{_PROFILE_SPACES[profile_space]}{profile_idc}",
            f"{reversed_compatibility:X}",
            f"{'H' if high_tier else 'L'}{level_idc}",
            *(f"{byte:02X}" for byte in kept),
        ]
    )


def _nuh_layer_id(nal: bytes) -> int:
    if len(nal) < 2:
        raise CodecConfigError("HEVC NAL unit shorter than its header")
    return ((nal[0] & 1) << 5) | (nal[1] >> 3)


def _rbsp(nal: bytes, nal_type: int) -> BitReader:
    if len(nal) < 2 or nal[0] & 0x80 or (nal[0] >> 1) & 0x3F != nal_type:
        raise CodecConfigError(f"not an HEVC NAL unit of type {nal_type}")
    return BitReader(unescape_rbsp(nal[2:]))


def parse_hevc_sps(nal: bytes) -> HevcSps:
    """Parse a base-layer SPS NAL unit (2-byte header included, emulation prevention intact).

    Raises CodecConfigError on malformed or truncated input, or when the conformance
    window leaves no picture.
    """
    r = _rbsp(nal, _NAL_SPS)
    r.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    if max_sub_layers_minus1 > 6:
        raise CodecConfigError("sps_max_sub_layers_minus1 above 6 in a base-layer SPS")
    r.skip(1)  # sps_temporal_id_nesting_flag
    _skip_profile_tier_level(r, max_sub_layers_minus1)
    r.ue_max(15, "sps_seq_parameter_set_id")
    chroma_format_idc = r.ue_max(3, "chroma_format_idc")
    separate_colour_plane = chroma_format_idc == 3 and r.flag()
    width = r.ue()
    height = r.ue()
    if r.flag():  # conformance_window_flag
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        sub_width, sub_height = _CHROMA_SUBSAMPLING[chroma_array_type]
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        width -= sub_width * (left + right)
        height -= sub_height * (top + bottom)
    if width <= 0 or height <= 0:
        raise CodecConfigError(f"SPS conformance window leaves a {width}x{height} picture")
    bit_depth = 8 + r.ue_max(8, "bit_depth_luma_minus8")
    r.ue_max(8, "bit_depth_chroma_minus8")
    log2_max_poc_lsb = 4 + r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")
    first_ordered = 0 if r.flag() else max_sub_layers_minus1  # ..._ordering_info_present_flag
    for _ in range(first_ordered, max_sub_layers_minus1 + 1):
        r.ue()  # sps_max_dec_pic_buffering_minus1
        r.ue()  # sps_max_num_reorder_pics
        r.ue()  # sps_max_latency_increase_plus1
    for _ in range(6):
        r.ue()  # coding/transform block sizes and hierarchy depths
    if r.flag() and r.flag():  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _skip_scaling_list_data(r)
    r.skip(2)  # amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if r.flag():  # pcm_enabled_flag
        r.skip(8)  # pcm sample bit depths
        r.ue()
        r.ue()
        r.skip(1)  # pcm_loop_filter_disabled_flag
    _skip_short_term_ref_pic_sets(r, r.ue_max(64, "num_short_term_ref_pic_sets"))
    if r.flag():  # long_term_ref_pics_present_flag
        for _ in range(r.ue_max(32, "num_long_term_ref_pics_sps")):
            r.skip(log2_max_poc_lsb + 1)  # lt_ref_pic_poc_lsb_sps, used_by_curr_pic_lt_sps_flag
    r.skip(2)  # sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    frame_rate = _find_vui_frame_rate(r) if r.flag() else None
    return HevcSps(width, height, bit_depth, frame_rate)


def find_hevc_vps_frame_rate(nal: bytes) -> Fraction | None:
    """Return the VPS timing frame rate, None when the VPS signals none.

    Raises CodecConfigError on malformed or truncated input.
    """
    r = _rbsp(nal, _NAL_VPS)
    r.skip(4 + 1 + 1 + 6)  # id, base layer flags, vps_max_layers_minus1
    max_sub_layers_minus1 = r.u(3)
    if max_sub_layers_minus1 > 6:
        raise CodecConfigError("vps_max_sub_layers_minus1 above 6")
    r.skip(1 + 16)  # vps_temporal_id_nesting_flag, vps_reserved_0xffff_16bits
    _skip_profile_tier_level(r, max_sub_layers_minus1)
    first_ordered = 0 if r.flag() else max_sub_layers_minus1  # ..._ordering_info_present_flag
    for _ in range(first_ordered, max_sub_layers_minus1 + 1):
        r.ue()
        r.ue()
        r.ue()
    max_layer_id = r.u(6)
    for _ in range(r.ue_max(1023, "vps_num_layer_sets_minus1")):
        r.skip(max_layer_id + 1)  # layer_id_included_flag
    if not r.flag():  # vps_timing_info_present_flag
        return None
    return _rate(num_units_in_tick=r.u(32), time_scale=r.u(32))


def _rate(num_units_in_tick: int, time_scale: int) -> Fraction | None:
    # HEVC ticks count pictures, unlike H.264's fields (E.3.1).
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    return Fraction(time_scale, num_units_in_tick)


def _skip_profile_tier_level(r: BitReader, max_sub_layers_minus1: int) -> None:
    r.skip(_PROFILE_BITS + 8)  # general profile and general_level_idc
    present = [(r.flag(), r.flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        r.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in present:
        if profile_present:
            r.skip(_PROFILE_BITS)
        if level_present:
            r.skip(8)


def _skip_scaling_list_data(r: BitReader) -> None:
    # 7.3.4: 32x32 lists exist for matrixId 0 and 3 only.
    for size_id in range(4):
        for _ in range(0, 6, 3 if size_id == 3 else 1):
            if not r.flag():  # scaling_list_pred_mode_flag
                r.ue()  # scaling_list_pred_matrix_id_delta
                continue
            if size_id > 1:
                r.se()  # scaling_list_dc_coef_minus8
            for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                r.se()  # scaling_list_delta_coef


def _skip_short_term_ref_pic_sets(r: BitReader, count: int) -> None:
    # 7.3.7: a set may be predicted from the previous one, and then codes one flag pair
    # per delta of that set, so the delta counts must be tracked (as FFmpeg's
    # ff_hevc_decode_short_term_rps counts them).
    num_delta_pocs: list[int] = []
    for index in range(count):
        if index != 0 and r.flag():  # inter_ref_pic_set_prediction_flag
            r.skip(1)  # delta_rps_sign
            r.ue()  # abs_delta_rps_minus1
            deltas = 0
            for _ in range(num_delta_pocs[index - 1] + 1):
                used_by_curr_pic = r.flag()
                if used_by_curr_pic or r.flag():  # use_delta_flag
                    deltas += 1
            if deltas >= _MAX_PREDICTED_DELTAS:
                raise CodecConfigError("short-term reference picture set too large")
            num_delta_pocs.append(deltas)
            continue
        negative = r.ue()
        positive = r.ue()
        if negative >= _MAX_REFS or positive >= _MAX_REFS:
            raise CodecConfigError("short-term reference picture set too large")
        for _ in range(negative + positive):
            r.ue()  # delta_poc_s0/s1_minus1
            r.skip(1)  # used_by_curr_pic_s0/s1_flag
        num_delta_pocs.append(negative + positive)


def _find_vui_frame_rate(r: BitReader) -> Fraction | None:
    # As for H.264: VUIs cut short exist in the wild, and only the frame rate is lost.
    try:
        if r.flag() and r.u(8) == _EXTENDED_SAR:  # aspect_ratio_info_present_flag
            r.skip(32)  # sar_width, sar_height
        if r.flag():  # overscan_info_present_flag
            r.skip(1)
        if r.flag():  # video_signal_type_present_flag
            r.skip(4)
            if r.flag():  # colour_description_present_flag
                r.skip(24)
        if r.flag():  # chroma_loc_info_present_flag
            r.ue()
            r.ue()
        r.skip(1)  # neutral_chroma_indication_flag
        field_seq = r.flag()
        r.skip(1)  # frame_field_info_present_flag
        if r.flag():  # default_display_window_flag
            for _ in range(4):
                r.ue()
        if not r.flag():  # vui_timing_info_present_flag
            return None
        rate = _rate(num_units_in_tick=r.u(32), time_scale=r.u(32))
    except CodecConfigError:
        return None
    if rate is not None and field_seq:
        rate /= 2  # each picture is one field
    return rate
