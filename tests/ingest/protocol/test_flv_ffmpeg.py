"""FLV written by FFmpeg (through PyAV), walked tag by tag and parsed with `flv`.

FFmpeg's FLV muxer writes H.264/AAC the legacy way and HEVC/AV1 as Enhanced RTMP, the
same tag bodies `ffmpeg -f flv rtmp://...` publishes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import av
import pytest

from ingest.protocol.amf0 import EcmaArray, decode_values
from ingest.protocol.chunk import ChunkReader, ChunkWriter, Message
from ingest.protocol.control import SetChunkSize, encode_control
from ingest.protocol.flv import (
    AudioCodec,
    AudioPacketType,
    VideoCodec,
    VideoPacketType,
    VideoTag,
    parse_audio,
    parse_video,
)
from tests.scheduling import drop_realtime

WIDTH, HEIGHT = 320, 240


@dataclass(frozen=True)
class FlvTag:
    type_id: int
    timestamp: int
    body: bytes


def walk_flv(data: bytes) -> Iterator[FlvTag]:
    assert data[:3] == b"FLV"
    offset = int.from_bytes(data[5:9], "big") + 4  # header, then PreviousTagSize0
    while offset + 11 <= len(data):
        type_id = data[offset] & 0x1F
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        timestamp = int.from_bytes(data[offset + 4 : offset + 7], "big") | data[offset + 7] << 24
        yield FlvTag(type_id, timestamp, data[offset + 11 : offset + 11 + size])
        offset += 11 + size + 4


def encode_flv(video_codec: str, options: dict[str, str] | None = None) -> bytes:
    try:
        av.Codec(video_codec, "w")
    except ValueError:  # av.codec.codec.UnknownCodecError
        pytest.skip(f"this PyAV build has no {video_codec} encoder")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flv") as container:
        video = container.add_stream(video_codec, rate=25, options=options or {})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for index in range(10):
            frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(index * 25 + 16) % 256]) * plane.buffer_size)
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        drop_realtime()  # SVT-AV1 leaves the process SCHED_FIFO
        for index in range(4):
            samples = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            samples.planes[0].update(bytes(samples.planes[0].buffer_size))
            samples.sample_rate = 44100
            samples.pts = index * 1024
            container.mux(audio.encode(samples))
        container.mux(audio.encode(None))
    return buffer.getvalue()


def video_tags(data: bytes) -> list[VideoTag]:
    return [parse_video(tag.body) for tag in walk_flv(data) if tag.type_id == 9]


def test_ffmpeg_h264_and_aac_flv_parses_as_legacy_tags() -> None:
    data = encode_flv("libx264", {"preset": "ultrafast", "tune": "zerolatency"})
    tags = list(walk_flv(data))

    videos = video_tags(data)
    audios = [parse_audio(tag.body) for tag in tags if tag.type_id == 8]

    assert videos[0].codec == VideoCodec.AVC
    assert not videos[0].enhanced
    assert videos[0].is_sequence_header
    assert bytes(videos[0].data)[0] == 1, "AVCDecoderConfigurationRecord version"
    assert videos[1].is_keyframe
    assert videos[1].packet_type == VideoPacketType.CODED_FRAMES
    assert len(videos) == 1 + 10 + 1
    assert videos[-1].packet_type == VideoPacketType.SEQUENCE_END
    assert audios[0].codec == AudioCodec.AAC
    assert audios[0].is_sequence_header
    assert all(a.packet_type == AudioPacketType.CODED_FRAMES for a in audios[1:])


def test_ffmpeg_onmetadata_decodes_with_amf0() -> None:
    data = encode_flv("libx264", {"preset": "ultrafast"})
    script = next(tag for tag in walk_flv(data) if tag.type_id == 18)

    name, metadata = decode_values(script.body)

    assert name == "onMetaData"
    assert isinstance(metadata, EcmaArray)
    assert (metadata["width"], metadata["height"]) == (WIDTH, HEIGHT)
    assert metadata["videocodecid"] == 7.0


def test_ffmpeg_b_frames_give_positive_composition_times() -> None:
    data = encode_flv("libx264", {"preset": "ultrafast", "bf": "2"})

    assert any(tag.composition_time > 0 for tag in video_tags(data))


def test_ffmpeg_hevc_flv_uses_enhanced_rtmp_hvc1() -> None:
    data = encode_flv("libx265", {"x265-params": "log-level=error"})

    videos = video_tags(data)

    assert all(tag.enhanced and tag.codec == VideoCodec.HEVC for tag in videos)
    assert videos[0].is_sequence_header
    assert videos[0].is_keyframe
    media = [tag for tag in videos if tag.packet_type != VideoPacketType.METADATA][1:]
    assert media[0].is_keyframe
    assert {tag.packet_type for tag in media} <= {
        VideoPacketType.CODED_FRAMES,
        VideoPacketType.CODED_FRAMES_X,
        VideoPacketType.SEQUENCE_END,
    }
    assert any(tag.composition_time for tag in media), "x265 uses B-frames by default"


def test_ffmpeg_av1_flv_uses_enhanced_rtmp_av01() -> None:
    data = encode_flv("libsvtav1", {"preset": "12"})

    videos = [tag for tag in video_tags(data) if tag.packet_type != VideoPacketType.METADATA]

    assert all(tag.enhanced and tag.codec == VideoCodec.AV1 for tag in videos)
    assert videos[0].is_sequence_header
    assert videos[1].is_keyframe
    assert videos[1].packet_type == VideoPacketType.CODED_FRAMES
    assert all(tag.composition_time == 0 for tag in videos)


def test_ffmpeg_tags_replayed_as_rtmp_messages_come_back_intact() -> None:
    # What an FFmpeg publisher sends: each FLV tag body becomes one RTMP message.
    tags = list(walk_flv(encode_flv("libx265", {"x265-params": "log-level=error"})))
    writer = ChunkWriter()
    wire = writer.encode(encode_control(SetChunkSize(4096)))
    writer.set_chunk_size(4096)
    sent = [
        Message({8: 4, 9: 6, 18: 5}[tag.type_id], tag.type_id, 1, tag.timestamp, tag.body)
        for tag in tags
    ]
    wire += b"".join(writer.encode(message) for message in sent)
    reader = ChunkReader()

    received = [m for i in range(0, len(wire), 1460) for m in reader.feed(wire[i : i + 1460])]

    assert received[1:] == sent
    parsed = [parse_video(m.payload) for m in received if m.type_id == 9]
    assert parsed[0].codec == VideoCodec.HEVC
    assert parsed[0].is_sequence_header
