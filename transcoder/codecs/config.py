"""What a sequence header tells the platform, and the one error every parser raises."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


class CodecConfigError(ValueError):
    """A codec configuration record or parameter set is malformed, truncated or unsupported."""


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """A video sequence header, summarised.

    codec is 'h264', 'hevc', 'av1' or 'vp9'; codec_string is the RFC 6381 value for an
    HLS CODECS attribute. width and height are display pixels after cropping (None when
    the record does not carry them: VP9, or a record without a sequence parameter set).
    frame_rate is frames per second, None unless the bitstream signals timing.
    profile and level are the codec's own numbers: H.264 profile_idc and level_idc
    (31 = level 3.1), HEVC general_profile_idc and general_level_idc (93 = level 3.1),
    AV1 seq_profile and seq_level_idx_0 (8 = level 4.0), VP9 profile and level (31 = 3.1).
    """

    codec: str
    codec_string: str
    width: int | None
    height: int | None
    frame_rate: Fraction | None
    profile: int | None
    level: int | None
    bit_depth: int | None


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """An audio sequence header, summarised.

    codec is 'aac' or 'opus'. sample_rate is in Hz and channels a count, both as the
    decoder outputs them (AAC with SBR doubles the core rate, parametric stereo makes two
    channels of one); None when the record defers them to the bitstream.
    """

    codec: str
    codec_string: str
    sample_rate: int | None
    channels: int | None
