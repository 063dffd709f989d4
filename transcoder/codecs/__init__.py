"""Codec configuration records from RTMP sequence headers: what a stream is, undecoded.

Pure functions over bytes. Each parser reads one record (avcC, hvcC, av1C, vpcC,
AudioSpecificConfig, OpusHead) and raises CodecConfigError, and nothing else, on any input
it cannot use; work is bounded by the input's length.
"""

from __future__ import annotations

from collections.abc import Callable

from transcoder.codecs.audio import parse_aac_config, parse_opus_head
from transcoder.codecs.av1 import parse_av1_config
from transcoder.codecs.config import AudioConfig, CodecConfigError, VideoConfig
from transcoder.codecs.h264 import parse_avc_config
from transcoder.codecs.hevc import parse_hevc_config
from transcoder.codecs.vp9 import parse_vp9_config

__all__ = [
    "AudioConfig",
    "CodecConfigError",
    "VideoConfig",
    "parse_aac_config",
    "parse_audio_config",
    "parse_av1_config",
    "parse_avc_config",
    "parse_hevc_config",
    "parse_opus_head",
    "parse_video_config",
    "parse_vp9_config",
]

_Bytes = bytes | bytearray | memoryview

# FourCCs as Enhanced RTMP (and the FLV legacy codec ids, mapped by the caller) name them.
_VIDEO_PARSERS: dict[str, Callable[[_Bytes], VideoConfig]] = {
    "avc1": parse_avc_config,
    "hvc1": parse_hevc_config,
    "av01": parse_av1_config,
    "vp09": parse_vp9_config,
}
_AUDIO_PARSERS: dict[str, Callable[[_Bytes], AudioConfig]] = {
    "mp4a": parse_aac_config,
    "Opus": parse_opus_head,
}


def parse_video_config(fourcc: str, data: _Bytes) -> VideoConfig:
    """Parse the sequence header of a video track named by its FourCC.

    Raises CodecConfigError for an unsupported FourCC or a bad record.
    """
    parser = _VIDEO_PARSERS.get(fourcc)
    if parser is None:
        raise CodecConfigError(f"unsupported video FourCC {fourcc!r}")
    return parser(data)


def parse_audio_config(fourcc: str, data: _Bytes) -> AudioConfig:
    """Parse the sequence header of an audio track named by its FourCC ('mp4a' or 'Opus').

    Raises CodecConfigError for an unsupported FourCC or a bad record.
    """
    parser = _AUDIO_PARSERS.get(fourcc)
    if parser is None:
        raise CodecConfigError(f"unsupported audio FourCC {fourcc!r}")
    return parser(data)
