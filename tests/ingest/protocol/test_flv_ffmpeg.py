"""FLV written by FFmpeg (through PyAV), walked tag by tag and parsed with `flv`.

FFmpeg's FLV muxer writes H.264/AAC the legacy way and HEVC/AV1 as Enhanced RTMP, the
same tag bodies `ffmpeg -f flv rtmp://...` publishes.
"""

from __future__ import annotations

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
from tests.support.encoders import HEIGHT, WIDTH, encode_flv, walk_flv


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
