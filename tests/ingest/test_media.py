"""RTMP media messages to packets, alone: no socket, no server (`ingest.media`)."""

from __future__ import annotations

import pytest

from ingest.gatekeeper import StreamDescription
from ingest.media import AGGREGATE, AUDIO, DATA_AMF0, VIDEO, MediaConverter, split_aggregate
from ingest.protocol import Message, ProtocolError, encode_data, encode_values
from tests.support.encoders import HEIGHT, WIDTH, encode_flv, walk_flv
from transcoder.metadata import StreamMetadata
from transcoder.packets import TrackKind


@pytest.fixture(scope="module")
def x264_flv() -> bytes:
    return encode_flv("libx264", {"preset": "ultrafast", "tune": "zerolatency"})


def as_message(type_id: int, timestamp: int, body: bytes) -> Message:
    return Message(4 if type_id == AUDIO else 6, type_id, 1, timestamp, body)


def test_an_ffmpeg_publish_becomes_packets_that_view_the_messages(x264_flv: bytes) -> None:
    converter = MediaConverter()
    messages = [
        as_message(tag.type_id, tag.timestamp, tag.body)
        for tag in walk_flv(x264_flv)
        if tag.type_id in (AUDIO, VIDEO)
    ]

    packets = [(m, converter.packet(m, received_at=1700000000.5)) for m in messages]

    video = [p for _, p in packets if p is not None and p.kind is TrackKind.VIDEO]
    audio = [p for _, p in packets if p is not None and p.kind is TrackKind.AUDIO]
    assert video[0].sequence_header
    assert audio[0].sequence_header
    frames = [p for p in video if not p.sequence_header]
    assert len(frames) == 10  # the end-of-sequence tag carries no frame
    assert frames[0].keyframe
    assert not any(p.keyframe for p in frames[1:])
    assert {p.codec for p in video} == {"avc"}
    assert {p.codec for p in audio} == {"aac"}
    assert all(p.received_at == 1700000000.5 for _, p in packets if p is not None)
    for message, packet in packets:
        if packet is not None and not packet.sequence_header:
            assert isinstance(packet.data, memoryview)
            assert packet.data.obj is message.payload, "a view of the payload, not a copy"
            header = 5 if packet.kind is TrackKind.VIDEO else 2
            assert bytes(packet.data) == message.payload[header:]
            assert packet.timestamp == message.timestamp
    assert converter.description == StreamDescription(
        video_codec="avc1.42c00d", audio_codec="mp4a.40.2", width=WIDTH, height=HEIGHT,
        frame_rate=converter.description.frame_rate,
    )


def test_a_negative_composition_time_is_kept_signed() -> None:
    body = bytes([0x27, 1, 0xFF, 0xFF, 0xDF]) + b"\x00\x00\x00\x01\x41"
    packet = MediaConverter().packet(Message(6, VIDEO, 1, 1000, body), 0.0)

    assert packet is not None
    assert packet.composition_offset == -33
    assert not packet.keyframe


def test_what_carries_no_media_gives_no_packet_and_what_is_unknown_is_counted() -> None:
    converter = MediaConverter()
    command_frame = bytes([0xD0, 0])  # Enhanced RTMP: frame type 5 (command), start seek
    unknown_video = bytes([0x1F, 0, 0, 0, 0])  # codec id 15: none we take
    unknown_audio = bytes([0x9F, 0])  # sound format 9: reserved

    assert converter.packet(Message(6, VIDEO, 1, 0, command_frame), 0.0) is None
    assert converter.packet(Message(6, VIDEO, 1, 0, unknown_video), 0.0) is None
    assert converter.packet(Message(4, AUDIO, 1, 0, unknown_audio), 0.0) is None
    assert converter.skipped == 2


def test_a_truncated_frame_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        MediaConverter().packet(Message(6, VIDEO, 1, 0, bytes([0x27, 1, 0])), 0.0)


def test_onmetadata_is_read_once_and_fills_in_only_what_headers_did_not_say(
    x264_flv: bytes,
) -> None:
    converter = MediaConverter()
    header = next(tag for tag in walk_flv(x264_flv) if tag.type_id == VIDEO)
    converter.packet(as_message(VIDEO, 0, header.body), 0.0)
    says = {"width": 1920.0, "height": 1080.0, "framerate": 60.0, "videodatarate": 6000.0}
    message = Message(5, DATA_AMF0, 1, 0, encode_data("@setDataFrame", "onMetaData", says))

    metadata = converter.metadata(message)

    assert metadata == StreamMetadata(1920, 1080, 60.0, 6000.0, None)
    described = converter.description
    assert (described.width, described.height) == (WIDTH, HEIGHT), "the SPS says better"
    assert described.frame_rate == 25.0, "and so does its timing"


def test_onmetadata_fills_in_what_no_sequence_header_has_said_yet() -> None:
    converter = MediaConverter()
    says = {"width": 1920.0, "height": 1080.0, "framerate": 60.0}
    payload = encode_data("@setDataFrame", "onMetaData", says)
    converter.metadata(Message(5, DATA_AMF0, 1, 0, payload))

    assert (converter.description.width, converter.description.height) == (1920, 1080)
    assert converter.description.frame_rate == 60.0


def test_plain_onmetadata_counts_and_other_data_messages_do_not() -> None:
    converter = MediaConverter()
    plain = Message(5, DATA_AMF0, 1, 0, encode_values("onMetaData", {"width": 640.0}))
    other = Message(5, DATA_AMF0, 1, 0, encode_values("onCuePoint", {"name": "ad"}))
    garbage = Message(5, DATA_AMF0, 1, 0, b"\x02\x00\xff")

    assert converter.metadata(plain) == StreamMetadata(width=640)
    assert converter.metadata(other) is None
    assert converter.metadata(garbage) is None
    assert converter.description.width == 640


def test_an_aggregate_message_splits_into_its_tags_with_rebased_timestamps() -> None:
    def tag(type_id: int, timestamp: int, body: bytes) -> bytes:
        head = bytes([type_id]) + len(body).to_bytes(3, "big")
        head += (timestamp & 0xFFFFFF).to_bytes(3, "big") + bytes([timestamp >> 24]) + b"\0\0\0"
        return head + body + (11 + len(body)).to_bytes(4, "big")

    payload = tag(VIDEO, 5000, b"\x17\x01\0\0\0frame") + tag(AUDIO, 5021, b"\xaf\x01aac")
    parts = split_aggregate(Message(6, AGGREGATE, 1, 100, payload))

    assert [(p.type_id, p.timestamp, p.payload) for p in parts] == [
        (VIDEO, 100, b"\x17\x01\0\0\0frame"),
        (AUDIO, 121, b"\xaf\x01aac"),
    ]
    with pytest.raises(ProtocolError):
        split_aggregate(Message(6, AGGREGATE, 1, 0, payload[:-6]))
