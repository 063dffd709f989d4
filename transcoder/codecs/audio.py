"""AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and OpusHead (RFC 7845 5.1)."""

from __future__ import annotations

from transcoder.codecs.bits import BitReader
from transcoder.codecs.config import AudioConfig, CodecConfigError

_AOT_ESCAPE = 31
_AOT_SBR = 5
_AOT_PS = 29
_AOT_ER_BSAC = 22
# Object types whose config is a GASpecificConfig; only the non-error-resilient ones
# (the first six) may be followed directly by a sync extension.
_AOT_GENERAL_AUDIO = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})
_AOT_GENERAL_AUDIO_PLAIN = frozenset({1, 2, 3, 4, 6, 7})
_SYNC_EXTENSION_SBR = 0x2B7
_SYNC_EXTENSION_PS = 0x548

# ISO/IEC 14496-3 samplingFrequencyIndex; shared with the fMP4 writer.
AAC_SAMPLING_FREQUENCIES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
_EXPLICIT_FREQUENCY = 15
# channelConfiguration 0 defers to a program_config_element; 8-10 and 15 are reserved.
_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}

_OPUS_MAGIC = b"OpusHead"
_OPUS_HEADER_SIZE = 19
_OPUS_RATE = 48000


def parse_aac_config(data: bytes | bytearray | memoryview) -> AudioConfig:
    """Parse an AudioSpecificConfig.

    codec_string carries the first audioObjectType, so explicitly signalled HE-AAC reads
    mp4a.40.5 and HE-AAC v2 mp4a.40.29 (RFC 6381 3.3). sample_rate includes an explicitly
    signalled SBR doubling; SBR that is only implicit (found in the bitstream) cannot be
    seen here. Raises CodecConfigError on any malformed, truncated or reserved value.
    """
    r = BitReader(bytes(data))
    first_aot = _read_object_type(r)
    if first_aot == 0:
        raise CodecConfigError("audioObjectType 0 is the null object")
    sample_rate = _read_frequency(r)
    channel_configuration = r.u(4)
    if channel_configuration and channel_configuration not in _CHANNELS:
        raise CodecConfigError(f"reserved channelConfiguration {channel_configuration}")
    channels = _CHANNELS.get(channel_configuration)

    aot = first_aot
    explicit_sbr = parametric_stereo = False
    if aot in (_AOT_SBR, _AOT_PS):
        # Explicit hierarchical signalling: the extension's rate, then the core's type.
        explicit_sbr = True
        parametric_stereo = aot == _AOT_PS
        sample_rate = _read_frequency(r)
        aot = _read_object_type(r)
        if aot == _AOT_ER_BSAC:
            r.skip(4)  # extensionChannelConfiguration

    if aot in _AOT_GENERAL_AUDIO:
        pce_channels = _skip_ga_specific_config(r, aot, channel_configuration)
        if pce_channels is not None:
            channels = pce_channels
        # Backward-compatible signalling: plain AAC-LC, with SBR/PS announced after the
        # core config for decoders that look (FFmpeg writes it with SBR absent).
        if not explicit_sbr and aot in _AOT_GENERAL_AUDIO_PLAIN and r.bits_left >= 16:
            rate, ps = _find_sync_extension(r)
            if rate is not None:
                sample_rate = rate
            parametric_stereo = ps

    if parametric_stereo:
        channels = 2
    return AudioConfig(
        codec="aac",
        codec_string=f"mp4a.40.{first_aot}",
        sample_rate=sample_rate,
        channels=channels,
    )


def _read_object_type(r: BitReader) -> int:
    aot = r.u(5)
    return 32 + r.u(6) if aot == _AOT_ESCAPE else aot


def _read_frequency(r: BitReader) -> int:
    index = r.u(4)
    if index == _EXPLICIT_FREQUENCY:
        frequency = r.u(24)
        if frequency == 0:
            raise CodecConfigError("explicit sampling frequency of 0 Hz")
        return frequency
    if index >= len(AAC_SAMPLING_FREQUENCIES):
        raise CodecConfigError(f"reserved samplingFrequencyIndex {index}")
    return AAC_SAMPLING_FREQUENCIES[index]


def _skip_ga_specific_config(r: BitReader, aot: int, channel_configuration: int) -> int | None:
    """Skip a GASpecificConfig; return the channel count of its PCE, if it has one."""
    r.skip(1)  # frameLengthFlag
    if r.flag():  # dependsOnCoreCoder
        r.skip(14)  # coreCoderDelay
    extension = r.flag()
    channels = _read_program_config_element(r) if channel_configuration == 0 else None
    if aot in (6, 20):
        r.skip(3)  # layerNr
    if extension:
        if aot == _AOT_ER_BSAC:
            r.skip(5 + 11)  # numOfSubFrame, layer_length
        if aot in (17, 19, 20, 23):
            r.skip(3)  # section/scalefactor/spectral data resilience flags
        r.skip(1)  # extensionFlag3
    return channels


def _read_program_config_element(r: BitReader) -> int:
    r.skip(4 + 2 + 4)  # element_instance_tag, object_type, sampling_frequency_index
    front, side, back = r.u(4), r.u(4), r.u(4)
    lfe, assoc, cc = r.u(2), r.u(3), r.u(4)
    if r.flag():  # mono_mixdown_present
        r.skip(4)
    if r.flag():  # stereo_mixdown_present
        r.skip(4)
    if r.flag():  # matrix_mixdown_idx_present
        r.skip(3)
    channels = lfe
    for _ in range(front + side + back):
        channels += 2 if r.flag() else 1  # is_cpe: a channel pair
        r.skip(4)  # element tag
    r.skip(4 * (lfe + assoc) + 5 * cc)
    r.align()  # byte_alignment() counts from the start of the AudioSpecificConfig
    r.skip(8 * r.u(8))  # comment_field_data
    if channels == 0:
        raise CodecConfigError("program_config_element has no channels")
    return channels


def _find_sync_extension(r: BitReader) -> tuple[int | None, bool]:
    if r.u(11) != _SYNC_EXTENSION_SBR:
        return None, False
    if _read_object_type(r) != _AOT_SBR or not r.flag():  # sbrPresentFlag
        return None, False
    rate = _read_frequency(r)
    parametric_stereo = r.bits_left >= 12 and r.u(11) == _SYNC_EXTENSION_PS and r.flag()
    return rate, parametric_stereo


def parse_opus_head(data: bytes | bytearray | memoryview) -> AudioConfig:
    """Parse an OpusHead identification header.

    Opus always decodes at 48 kHz; sample_rate is the input rate the encoder recorded,
    or 48000 when it recorded none. Raises CodecConfigError on a bad magic, an unknown
    major version or an inconsistent channel mapping.
    """
    head = bytes(data)
    if len(head) < _OPUS_HEADER_SIZE or not head.startswith(_OPUS_MAGIC):
        raise CodecConfigError("not an OpusHead")
    version, channels = head[8], head[9]
    if version >> 4:
        raise CodecConfigError(f"OpusHead major version {version >> 4} is not supported")
    if channels == 0:
        raise CodecConfigError("OpusHead has no channels")
    input_rate = int.from_bytes(head[12:16], "little")
    family = head[18]
    if family == 0:
        if channels > 2:
            raise CodecConfigError("mapping family 0 carries at most two channels")
    else:
        if len(head) < _OPUS_HEADER_SIZE + 2 + channels:
            raise CodecConfigError("OpusHead channel mapping table is truncated")
        streams, coupled = head[19], head[20]
        if streams == 0 or coupled > streams or streams + coupled > 255:
            raise CodecConfigError(f"OpusHead has {streams} streams, {coupled} coupled")
        if family == 1 and channels > 8:
            raise CodecConfigError("mapping family 1 carries at most eight channels")
        mapping = head[21 : 21 + channels]
        if any(index != 255 and index >= streams + coupled for index in mapping):
            raise CodecConfigError("OpusHead channel mapping names a missing stream")
    return AudioConfig(
        codec="opus",
        codec_string="opus",
        sample_rate=input_rate or _OPUS_RATE,
        channels=channels,
    )
