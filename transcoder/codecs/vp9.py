"""VP9: VPCodecConfigurationRecord, the vpcC full box payload (VP Codec ISOBMFF Binding 2.2)."""

from __future__ import annotations

from transcoder.codecs.bits import BitReader
from transcoder.codecs.config import CodecConfigError, VideoConfig

_VERSION = 1
_BIT_DEPTHS = frozenset({8, 10, 12})
# Levels are written as ten times the level number (6.2 is 62); the codec string has two
# digits for them.
_MAX_LEVEL = 99


def parse_vp9_config(data: bytes | bytearray | memoryview) -> VideoConfig:
    """Parse a version-1 vpcC payload (4 bytes of version and flags first).

    width and height are None: VP9 signals them in every key frame, not here. Raises
    CodecConfigError on any malformed, truncated or unsupported input.
    """
    r = BitReader(bytes(data))
    version = r.u(8)
    if version != _VERSION:
        raise CodecConfigError(f"vpcC version {version} is not supported")
    r.skip(24)  # flags
    profile = r.u(8)
    level = r.u(8)
    bit_depth = r.u(4)
    r.skip(3 + 1)  # chromaSubsampling, videoFullRangeFlag
    r.skip(24)  # colourPrimaries, transferCharacteristics, matrixCoefficients
    # The initialization data must be empty for VP9, but the length is still checked
    # against the record so a truncated one is caught.
    r.read_bytes(r.u(16))
    if profile > 3:
        raise CodecConfigError(f"VP9 profile {profile} does not exist")
    if level > _MAX_LEVEL:
        raise CodecConfigError(f"VP9 level {level} does not exist")
    if bit_depth not in _BIT_DEPTHS:
        raise CodecConfigError(f"VP9 bit depth {bit_depth} does not exist")
    return VideoConfig(
        codec="vp9",
        codec_string=f"vp09.{profile:02d}.{level:02d}.{bit_depth:02d}",
        width=None,
        height=None,
        frame_rate=None,
        profile=profile,
        level=level,
        bit_depth=bit_depth,
    )
