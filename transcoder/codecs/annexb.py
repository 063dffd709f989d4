"""Annex B to ISO/IEC 14496-15: an encoder's output made packageable.

Encoders that write elementary streams (libx264 and libx265 through PyAV, without a global
header) emit Annex B: NAL units behind start codes, with the parameter sets (VPS/SPS/PPS)
in band before every key frame. CMAF wants the parameter sets once, in the decoder
configuration record of the init segment (avcC, hvcC), and NAL units behind 4-byte length
prefixes. `AnnexBAdapter` does both and hands out `MediaPacket`s as the ingest would (a
sequence header whenever the parameter sets change, then frames), so a transcoded
rendition goes through the same packager as the source.

Pure: bytes in, bytes out; work bounded by the input's length.
"""

from __future__ import annotations

from transcoder.codecs.bits import BitReader, unescape_rbsp
from transcoder.codecs.config import CodecConfigError
from transcoder.codecs.h264 import parse_avc_sps
from transcoder.codecs.hevc import _skip_profile_tier_level, parse_hevc_sps
from transcoder.packets import MediaPacket, TrackKind

_START = b"\x00\x00\x01"
_LENGTH_SIZE = 4

# H.264 NAL unit types (Table 7-1).
_AVC_IDR, _AVC_SPS, _AVC_PPS, _AVC_AUD = 5, 7, 8, 9
# Profiles whose SPS (and avcC) carry chroma format and bit depths (7.3.2.1.1, 14496-15
# 5.3.3.1.2).
_AVC_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# HEVC NAL unit types (Table 7-1): IRAP pictures are 16-23.
_HEVC_IRAP = range(16, 24)
_HEVC_VPS, _HEVC_SPS, _HEVC_PPS, _HEVC_AUD = 32, 33, 34, 35

# The FLV codec names the packager knows these by (MediaPacket.codec).
CODECS = ("avc", "hevc")


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without start codes (3- or 4-byte) or the
    zero bytes that may trail a NAL unit. Raises CodecConfigError when the data does not
    start with a start code."""
    first = data.find(_START)
    if first < 0 or data[:first].strip(b"\x00"):
        raise CodecConfigError("not an Annex B stream: no start code at the beginning")
    units = []
    position = first + 3
    while position <= len(data):
        following = data.find(_START, position)
        end = len(data) if following < 0 else following
        unit = data[position:end].rstrip(b"\x00")
        if unit:
            units.append(unit)
        if following < 0:
            break
        position = following + 3
    return units


def length_prefixed(units: list[bytes]) -> bytes:
    return b"".join(len(unit).to_bytes(_LENGTH_SIZE, "big") + unit for unit in units)


def avc_decoder_configuration(sps: list[bytes], pps: list[bytes]) -> bytes:
    """An AVCDecoderConfigurationRecord (avcC, 14496-15 5.3.3.1) for these parameter sets
    (NAL units with their header byte). Raises CodecConfigError on a bad SPS."""
    if not sps or not pps or len(sps) > 31 or len(pps) > 255:
        raise CodecConfigError("avcC needs 1-31 SPS and 1-255 PPS")
    parse_avc_sps(sps[0])  # fail now on an SPS nobody could decode
    profile, compatibility, level = sps[0][1], sps[0][2], sps[0][3]
    record = bytearray([1, profile, compatibility, level, 0xFC | (_LENGTH_SIZE - 1)])
    record.append(0xE0 | len(sps))
    for unit in sps:
        record += len(unit).to_bytes(2, "big") + unit
    record.append(len(pps))
    for unit in pps:
        record += len(unit).to_bytes(2, "big") + unit
    if profile in _AVC_HIGH_PROFILES:
        chroma, luma, chroma_depth = _avc_chroma_and_depths(sps[0])
        record += bytes([0xFC | chroma, 0xF8 | (luma - 8), 0xF8 | (chroma_depth - 8), 0])
    return bytes(record)


def _avc_chroma_and_depths(sps: bytes) -> tuple[int, int, int]:
    reader = BitReader(unescape_rbsp(sps[1:]))
    reader.skip(24)  # profile_idc, constraint flags, level_idc
    reader.ue_max(31, "seq_parameter_set_id")
    chroma = reader.ue_max(3, "chroma_format_idc")
    if chroma == 3:
        reader.skip(1)  # separate_colour_plane_flag
    luma = 8 + reader.ue_max(6, "bit_depth_luma_minus8")
    chroma_depth = 8 + reader.ue_max(6, "bit_depth_chroma_minus8")
    return chroma, luma, chroma_depth


def hevc_decoder_configuration(vps: list[bytes], sps: list[bytes], pps: list[bytes]) -> bytes:
    """An HEVCDecoderConfigurationRecord (hvcC, 14496-15 8.3.3.1) for these parameter sets
    (NAL units with their 2-byte header). Raises CodecConfigError on a bad SPS."""
    if not vps or not sps or not pps:
        raise CodecConfigError("hvcC needs a VPS, an SPS and a PPS")
    parse_hevc_sps(sps[0])  # fail now on an SPS nobody could decode
    rbsp = unescape_rbsp(sps[0][2:])
    reader = BitReader(rbsp)
    reader.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = reader.u(3)
    nested = reader.u(1)
    general = rbsp[1:13]  # profile space, tier, profile, compatibility, constraints, level
    _skip_profile_tier_level(reader, max_sub_layers_minus1)
    reader.ue_max(15, "sps_seq_parameter_set_id")
    chroma = reader.ue_max(3, "chroma_format_idc")
    if chroma == 3:
        reader.skip(1)  # separate_colour_plane_flag
    reader.ue()  # pic_width_in_luma_samples
    reader.ue()  # pic_height_in_luma_samples
    if reader.flag():  # conformance_window_flag
        for _ in range(4):
            reader.ue()
    luma = reader.ue_max(8, "bit_depth_luma_minus8")
    chroma_depth = reader.ue_max(8, "bit_depth_chroma_minus8")
    record = bytearray([1]) + general
    record += bytes([0xF0, 0x00, 0xFC, 0xFC | chroma, 0xF8 | luma, 0xF8 | chroma_depth])
    record += bytes([0, 0])  # avgFrameRate: unspecified
    record.append(((max_sub_layers_minus1 + 1) << 3) | (nested << 2) | (_LENGTH_SIZE - 1))
    arrays = [(_HEVC_VPS, vps), (_HEVC_SPS, sps), (_HEVC_PPS, pps)]
    record.append(len(arrays))
    for nal_type, units in arrays:
        record.append(0x80 | nal_type)  # array_completeness: every set is in the record
        record += len(units).to_bytes(2, "big")
        for unit in units:
            record += len(unit).to_bytes(2, "big") + unit
    return bytes(record)


class AnnexBAdapter:
    """Turns one encoder's Annex B access units into the packets the packager takes.

    ``codec`` is "avc" (H.264) or "hevc". The first access unit must carry the parameter
    sets (an encoder's first key frame does). Parameter sets are taken out of the samples
    and into the record; a change of them yields a new sequence header (the packager then
    starts a new init segment at that key frame). Access unit delimiters are dropped. Not
    thread-safe: one adapter per encoder.
    """

    def __init__(self, codec: str) -> None:
        if codec not in CODECS:
            raise ValueError(f"no Annex B adapter for {codec!r}")
        self.codec = codec
        self.record: bytes | None = None
        self._sets: tuple[tuple[bytes, ...], ...] = ()

    def packets(
        self,
        access_unit: bytes,
        *,
        timestamp: int,
        composition_offset: int = 0,
        received_at: float = 0.0,
    ) -> list[MediaPacket]:
        """The packets for one access unit (decode order): a sequence header first when
        its parameter sets are new, then the frame. ``timestamp`` is its decode time and
        ``composition_offset`` its presentation offset, in milliseconds. Raises
        CodecConfigError for data that is not Annex B or a first frame without
        parameter sets."""
        units = split_annexb(access_unit)
        hevc = self.codec == "hevc"
        kinds = [(unit[0] >> 1) & 0x3F if hevc else unit[0] & 0x1F for unit in units]
        sets = self._parameter_sets(units, kinds)
        out = []
        if sets and sets != self._sets:
            self.record = self._record(sets)
            self._sets = sets
            out.append(MediaPacket(TrackKind.VIDEO, self.codec, timestamp, self.record,
                                   sequence_header=True, received_at=received_at))
        if self.record is None:
            raise CodecConfigError("the first access unit carries no parameter sets")
        skipped = {_HEVC_VPS, _HEVC_SPS, _HEVC_PPS, _HEVC_AUD} if hevc else {
            _AVC_SPS, _AVC_PPS, _AVC_AUD}
        kept = [unit for unit, kind in zip(units, kinds, strict=True) if kind not in skipped]
        keyframe = any((kind in _HEVC_IRAP) if hevc else kind == _AVC_IDR for kind in kinds)
        if kept:
            out.append(MediaPacket(TrackKind.VIDEO, self.codec, timestamp, length_prefixed(kept),
                                   keyframe=keyframe, composition_offset=composition_offset,
                                   received_at=received_at))
        return out

    def _parameter_sets(
        self, units: list[bytes], kinds: list[int]
    ) -> tuple[tuple[bytes, ...], ...]:
        wanted = (_HEVC_VPS, _HEVC_SPS, _HEVC_PPS) if self.codec == "hevc" else (
            _AVC_SPS, _AVC_PPS)
        found = tuple(
            tuple(unit for unit, kind in zip(units, kinds, strict=True) if kind == wanted_kind)
            for wanted_kind in wanted
        )
        return found if all(found) else ()

    def _record(self, sets: tuple[tuple[bytes, ...], ...]) -> bytes:
        if self.codec == "hevc":
            vps, sps, pps = sets
            return hevc_decoder_configuration(list(vps), list(sps), list(pps))
        sps, pps = sets
        return avc_decoder_configuration(list(sps), list(pps))
