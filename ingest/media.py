"""RTMP media messages to `MediaPacket`s, and what they say of the stream.

Pure: no socket, no clock, no platform. The connection hands every audio, video and data
message of an admitted publish to its `MediaConverter` and passes on what comes back.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ingest.gatekeeper import StreamDescription
from ingest.protocol import (
    AudioCodec,
    AudioPacketType,
    Message,
    ProtocolError,
    UnsupportedFeature,
    VideoCodec,
    VideoPacketType,
    decode_data,
    find_coded_video,
    is_raw_aac,
    parse_audio,
    parse_video,
)
from ingest.protocol.flv import LEGACY_AAC_HEADER_SIZE, LEGACY_VIDEO_HEADER_SIZE
from transcoder.codecs import CodecConfigError, parse_audio_config, parse_video_config
from transcoder.metadata import StreamMetadata, read_metadata
from transcoder.packets import MediaPacket, TrackKind

log = logging.getLogger(__name__)

# Message types (RTMP spec 5.4, 7.1).
AUDIO, VIDEO, DATA_AMF3, DATA_AMF0, AGGREGATE = 8, 9, 15, 18, 22

_VIDEO_FOURCC = {
    VideoCodec.AVC: "avc1",
    VideoCodec.HEVC: "hvc1",
    VideoCodec.AV1: "av01",
    VideoCodec.VP9: "vp09",
}
_AUDIO_FOURCC = {AudioCodec.AAC: "mp4a", AudioCodec.OPUS: "Opus"}
_AAC = AudioCodec.AAC.value
_VIDEO_KIND, _AUDIO_KIND = TrackKind.VIDEO, TrackKind.AUDIO


class MediaConverter:
    """One publish's audio, video and data messages, as packets and metadata.

    ``packet`` turns an audio or video message into a `MediaPacket` (None for what carries
    no media: command frames, codecs or packet types we do not take, counted in
    ``skipped``); ``metadata`` reads an onMetaData data message. Sequence headers and
    metadata fill in ``description``. A packet's data is a view of the message's payload,
    never a copy. Raises ProtocolError for a malformed audio or video body (metadata
    never raises: it is read leniently).
    """

    __slots__ = ("_description", "label", "skipped")

    def __init__(self, label: str = "") -> None:
        self._description = StreamDescription()
        self.label = label  # for log lines
        self.skipped = 0

    @property
    def description(self) -> StreamDescription:
        return self._description

    def packet(self, message: Message, received_at: float) -> MediaPacket | None:
        """The packet in an audio (type 8) or video (type 9) message; ``received_at`` is
        the wall clock (Unix seconds) at which it was read."""
        payload = message.payload
        # The fast path first: what OBS and FFmpeg send for nearly every frame.
        if message.type_id == VIDEO:
            coded = find_coded_video(payload)
            if coded is not None:
                codec, keyframe, composition = coded
                return MediaPacket(
                    _VIDEO_KIND,
                    codec._value_,  # not .value: a property, a call per frame
                    message.timestamp,
                    memoryview(payload)[LEGACY_VIDEO_HEADER_SIZE:],
                    keyframe,
                    False,
                    composition,
                    received_at,
                )
            return self._video_tag(message, received_at)
        if is_raw_aac(payload):
            return MediaPacket(
                _AUDIO_KIND,
                _AAC,
                message.timestamp,
                memoryview(payload)[LEGACY_AAC_HEADER_SIZE:],
                False,
                False,
                0,
                received_at,
            )
        return self._audio_tag(message, received_at)

    def metadata(self, message: Message) -> StreamMetadata | None:
        """What an `@setDataFrame("onMetaData", {...})` or `onMetaData` data message says;
        None for any other data message."""
        values, _error = decode_data(message.payload, amf3=message.type_id == DATA_AMF3)
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) < 2 or values[0] != "onMetaData" or not isinstance(values[1], dict):
            return None
        metadata = read_metadata(values[1])
        # Sequence headers say it better: metadata only fills in what they did not.
        described = self._description
        self._description = replace(
            described,
            width=described.width or metadata.width,
            height=described.height or metadata.height,
            frame_rate=described.frame_rate or metadata.frame_rate,
        )
        return metadata

    # -- the complete FLV parser, for anything off the fast path ---------------------------

    def _video_tag(self, message: Message, received_at: float) -> MediaPacket | None:
        try:
            tag = parse_video(message.payload)
        except UnsupportedFeature:
            self.skipped += 1  # a codec or packet type we do not take: skip, stay up
            return None
        if tag.codec is None:
            return None  # command frames carry no media
        # A multitrack tag carries its first track at the top level: that one is used.
        if tag.packet_type is VideoPacketType.SEQUENCE_START:
            self._video_config(tag.codec, tag.data)
            return MediaPacket(
                _VIDEO_KIND,
                tag.codec.value,
                message.timestamp,
                tag.data,
                sequence_header=True,
                received_at=received_at,
            )
        if tag.packet_type in (VideoPacketType.CODED_FRAMES, VideoPacketType.CODED_FRAMES_X):
            return MediaPacket(
                _VIDEO_KIND,
                tag.codec.value,
                message.timestamp,
                tag.data,
                keyframe=tag.is_keyframe,
                composition_offset=tag.composition_time,
                received_at=received_at,
            )
        return None

    def _audio_tag(self, message: Message, received_at: float) -> MediaPacket | None:
        try:
            audio = parse_audio(message.payload)
        except UnsupportedFeature:
            self.skipped += 1
            return None
        if audio.packet_type is AudioPacketType.SEQUENCE_START:
            self._audio_config(audio.codec, audio.data)
            sequence_header = True
        elif audio.packet_type is AudioPacketType.CODED_FRAMES:
            sequence_header = False
        else:
            return None
        return MediaPacket(
            _AUDIO_KIND,
            audio.codec.value,
            message.timestamp,
            audio.data,
            sequence_header=sequence_header,
            received_at=received_at,
        )

    def _video_config(self, codec: VideoCodec, data: bytes | memoryview) -> None:
        described = self._description
        fourcc = _VIDEO_FOURCC.get(codec)
        if fourcc is None:
            self._description = replace(described, video_codec=codec.value)
            return
        try:
            config = parse_video_config(fourcc, data)
        except CodecConfigError as error:
            log.info("%s: unreadable %s sequence header: %s", self.label, fourcc, error)
            self._description = replace(described, video_codec=fourcc)
            return
        self._description = replace(
            described,
            video_codec=config.codec_string,
            width=config.width or described.width,
            height=config.height or described.height,
            frame_rate=float(config.frame_rate) if config.frame_rate else described.frame_rate,
        )

    def _audio_config(self, codec: AudioCodec, data: bytes | memoryview) -> None:
        fourcc = _AUDIO_FOURCC.get(codec)
        try:
            codec_string = parse_audio_config(fourcc, data).codec_string if fourcc else codec.value
        except CodecConfigError:
            codec_string = codec.value
        self._description = replace(self._description, audio_codec=codec_string)


def split_aggregate(message: Message) -> list[Message]:
    """The FLV tags inside an aggregate message (type 22), with timestamps rebased on its
    own. Raises ProtocolError for a tag that runs past the end."""
    payload = message.payload
    parts: list[Message] = []
    offset, first_ts = 0, None
    while offset + 11 <= len(payload):
        tag_type = payload[offset]
        size = int.from_bytes(payload[offset + 1 : offset + 4], "big")
        ts = int.from_bytes(payload[offset + 4 : offset + 7], "big") | (payload[offset + 7] << 24)
        end = offset + 11 + size
        if end + 4 > len(payload):
            raise ProtocolError("aggregate message: a tag runs past the end")
        if first_ts is None:
            first_ts = ts
        parts.append(
            Message(
                message.csid,
                tag_type,
                message.stream_id,
                message.timestamp + ts - first_ts,
                payload[offset + 11 : end],
            )
        )
        offset = end + 4
    return parts
