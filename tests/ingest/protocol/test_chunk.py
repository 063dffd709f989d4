from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.protocol.chunk import (
    CHUNK_SIZE_CEILING,
    ChunkLimits,
    ChunkReader,
    ChunkWriter,
    Message,
    encode_basic_header,
)
from ingest.protocol.control import (
    SetChunkSize,
    UserControl,
    UserControlEvent,
    encode_control,
    encode_control_payload,
)
from ingest.protocol.errors import LimitExceeded, ProtocolError

VIDEO = 9
AUDIO = 8


def type0(csid: int, timestamp: int, length: int, type_id: int, stream_id: int) -> bytes:
    field = min(timestamp, 0xFFFFFF)
    header = (
        encode_basic_header(0, csid)
        + field.to_bytes(3, "big")
        + length.to_bytes(3, "big")
        + bytes((type_id,))
        + stream_id.to_bytes(4, "little")
    )
    return header + (timestamp.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def type1(csid: int, delta: int, length: int, type_id: int) -> bytes:
    field = min(delta, 0xFFFFFF)
    header = (
        encode_basic_header(1, csid)
        + field.to_bytes(3, "big")
        + length.to_bytes(3, "big")
        + bytes((type_id,))
    )
    return header + (delta.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def type2(csid: int, delta: int) -> bytes:
    field = min(delta, 0xFFFFFF)
    header = encode_basic_header(2, csid) + field.to_bytes(3, "big")
    return header + (delta.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def type3(csid: int, extended: int | None = None) -> bytes:
    header = encode_basic_header(3, csid)
    return header + (extended.to_bytes(4, "big") if extended is not None else b"")


def set_chunk_size(size: int) -> bytes:
    return type0(2, 0, 4, 1, 0) + struct.pack(">I", size)


# Basic headers


def test_three_byte_basic_header_csid_is_64_plus_first_byte_plus_256_times_second() -> None:
    data = bytes((0x01, 0x34, 0x12)) + type0(2, 0, 1, VIDEO, 1)[1:] + b"x"

    (message,) = ChunkReader().feed(data)

    assert message.csid == 64 + 0x34 + 256 * 0x12


def test_two_byte_basic_header_csid_is_64_plus_the_byte() -> None:
    data = bytes((0x00, 0xFF)) + type0(2, 0, 1, VIDEO, 1)[1:] + b"x"

    (message,) = ChunkReader().feed(data)

    assert message.csid == 319


@pytest.mark.parametrize(
    ("csid", "header"),
    [
        (2, b"\x02"),
        (63, b"\x3f"),
        (64, b"\x00\x00"),
        (319, b"\x00\xff"),
        (320, b"\x01\x00\x01"),
        (65599, b"\x01\xff\xff"),
    ],
)
def test_writer_uses_the_shortest_basic_header_form(csid: int, header: bytes) -> None:
    assert encode_basic_header(0, csid) == header


@pytest.mark.parametrize("csid", [0, 1, 65600])
def test_writer_refuses_chunk_stream_ids_the_header_cannot_carry(csid: int) -> None:
    with pytest.raises(ValueError, match="chunk stream id"):
        ChunkWriter().encode(Message(csid, VIDEO, 1, 0, b""))


# Message headers and timestamps


def test_type1_and_type2_headers_add_deltas_to_the_previous_timestamp() -> None:
    data = (
        type0(4, 1000, 3, AUDIO, 1) + b"abc" + type1(4, 20, 2, VIDEO) + b"de" + type2(4, 33) + b"fg"
    )

    messages = ChunkReader().feed(data)

    assert [(m.timestamp, m.type_id, m.payload) for m in messages] == [
        (1000, AUDIO, b"abc"),
        (1020, VIDEO, b"de"),
        (1053, VIDEO, b"fg"),
    ]
    assert {m.stream_id for m in messages} == {1}


def test_type3_header_starting_a_new_message_reapplies_the_last_delta() -> None:
    data = type0(4, 1000, 3, VIDEO, 1) + b"abc" + type2(4, 40) + b"def" + type3(4) + b"ghi"

    messages = ChunkReader().feed(data)

    assert [(m.timestamp, m.payload) for m in messages] == [
        (1000, b"abc"),
        (1040, b"def"),
        (1080, b"ghi"),
    ]


def test_type3_right_after_type0_reapplies_the_absolute_timestamp_like_ffmpeg_writes() -> None:
    # FFmpeg's writer picks type 3 when the new delta equals the previous
    # timestamp field, which after a type-0 header is the absolute timestamp.
    data = type0(4, 40, 3, VIDEO, 1) + b"abc" + type3(4) + b"def"

    messages = ChunkReader().feed(data)

    assert [m.timestamp for m in messages] == [40, 80]


def test_type3_chunk_repeats_extended_timestamp_like_ffmpeg() -> None:
    timestamp = 0x1234567
    payload = bytes(range(200))
    data = (
        type0(4, timestamp, 200, VIDEO, 1)
        + payload[:128]
        + type3(4, extended=timestamp)
        + payload[128:]
    )

    assert ChunkReader().feed(data) == [Message(4, VIDEO, 1, timestamp, payload)]


def test_type3_chunk_without_the_extended_timestamp_like_rtmpdump() -> None:
    timestamp = 0x1234567
    payload = bytes(range(200))
    data = type0(4, timestamp, 200, VIDEO, 1) + payload[:128] + type3(4) + payload[128:]

    assert ChunkReader().feed(data) == [Message(4, VIDEO, 1, timestamp, payload)]


@pytest.mark.parametrize("repeated", [True, False], ids=["ffmpeg", "rtmpdump"])
def test_type3_new_message_reapplies_an_extended_delta(repeated: bool) -> None:
    delta = 0x1000000
    data = (
        type0(4, 0, 2, VIDEO, 1)
        + b"ab"
        + type2(4, delta)
        + b"cd"
        + type3(4, extended=delta if repeated else None)
        + b"ef"
    )

    messages = ChunkReader().feed(data)

    assert [(m.timestamp, m.payload) for m in messages] == [
        (0, b"ab"),
        (delta, b"cd"),
        (2 * delta, b"ef"),
    ]


def test_extended_timestamp_at_exactly_0xffffff_is_read_from_the_extra_bytes() -> None:
    data = type0(4, 0xFFFFFF, 1, VIDEO, 1) + b"x"

    (message,) = ChunkReader().feed(data)

    assert message.timestamp == 0xFFFFFF
    assert data[1:4] == b"\xff\xff\xff"


def test_timestamp_wrap_keeps_the_64_bit_timeline_increasing() -> None:
    start = (1 << 32) - 100
    data = (
        type0(4, start, 1, VIDEO, 1)
        + b"a"
        + type2(4, 60)
        + b"b"
        + type2(4, 60)
        + b"c"
        + type0(4, 50, 1, VIDEO, 1)
        + b"d"
    )

    messages = ChunkReader().feed(data)

    assert [m.timestamp for m in messages] == [start, start + 60, start + 120, (1 << 32) + 50]


def test_each_chunk_stream_keeps_its_own_timeline() -> None:
    data = type0(4, 5000, 1, AUDIO, 1) + b"a" + type0(6, 10, 1, VIDEO, 1) + b"v"

    messages = ChunkReader().feed(data)

    assert [(m.csid, m.timestamp) for m in messages] == [(4, 5000), (6, 10)]


# Chunk sizes


def test_chunk_size_1_reassembles_messages() -> None:
    writer = ChunkWriter()
    stream = writer.encode(encode_control(SetChunkSize(1)))
    writer.set_chunk_size(1)
    sent = [Message(3, 20, 0, 0, b"connect"), Message(6, VIDEO, 1, 40, bytes(range(256)))]
    stream += b"".join(writer.encode(m) for m in sent)
    reader = ChunkReader()

    received = reader.feed(stream)

    assert received[1:] == sent
    assert reader.chunk_size == 1
    assert reader.chunks_parsed == 1 + len(b"connect") + 256


def test_chunk_size_of_16_mib_carries_a_large_message_in_one_chunk() -> None:
    writer = ChunkWriter()
    stream = writer.encode(encode_control(SetChunkSize(16 * 1024 * 1024)))
    writer.set_chunk_size(16 * 1024 * 1024)
    keyframe = Message(6, VIDEO, 1, 0, b"\x17" * (12 * 1024 * 1024))
    encoded = writer.encode(keyframe)
    reader = ChunkReader()

    received = reader.feed(stream + encoded)

    assert received[1] == keyframe
    assert reader.chunk_size == CHUNK_SIZE_CEILING
    assert reader.chunks_parsed == 2
    assert len(encoded) == 12 + len(keyframe.payload)


@pytest.mark.parametrize("size", [0, 0x80000000, 0xFFFFFFFF])
def test_set_chunk_size_of_zero_or_with_the_high_bit_is_refused(size: int) -> None:
    reader = ChunkReader()

    with pytest.raises(ProtocolError, match="Set Chunk Size"):
        reader.feed(set_chunk_size(size))


def test_huge_set_chunk_size_is_clamped_and_allocates_nothing_from_the_number() -> None:
    reader = ChunkReader()
    tracemalloc.start()
    try:
        reader.feed(set_chunk_size(0x7FFFFFFF) + type0(4, 0, 3, VIDEO, 1) + b"abc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert reader.chunk_size == CHUNK_SIZE_CEILING
    assert peak < 256 * 1024


def test_set_chunk_size_above_the_configured_maximum_is_refused() -> None:
    reader = ChunkReader(ChunkLimits(max_chunk_size=65536))

    with pytest.raises(LimitExceeded):
        reader.feed(set_chunk_size(65537))


def test_set_chunk_size_applies_to_the_very_next_chunk() -> None:
    payload = bytes(300)
    data = set_chunk_size(4096) + type0(4, 0, 300, VIDEO, 1) + payload

    messages = ChunkReader().feed(data)

    assert messages[1].payload == payload


# Abort, truncation, malformed streams


def test_abort_discards_the_partial_message_on_that_chunk_stream() -> None:
    abort = type0(2, 0, 4, 2, 0) + struct.pack(">I", 4)
    data = type0(4, 0, 300, VIDEO, 1) + b"\x01" * 128 + abort + type0(4, 40, 3, VIDEO, 1) + b"new"

    messages = ChunkReader().feed(data)

    assert [(m.type_id, m.payload) for m in messages] == [
        (2, struct.pack(">I", 4)),
        (VIDEO, b"new"),
    ]


def test_truncated_message_waits_and_continues_with_the_next_bytes() -> None:
    payload = bytes(range(250))
    data = type0(4, 0, 250, VIDEO, 1) + payload[:128] + type3(4) + payload[128:]
    reader = ChunkReader()

    assert reader.feed(data[:150]) == []
    assert reader.feed(data[150:]) == [Message(4, VIDEO, 1, 0, payload)]
    assert reader.buffered == 0


def test_stream_fed_one_byte_at_a_time_yields_the_same_messages() -> None:
    data = type0(4, 0xFFFFFF + 5, 200, VIDEO, 1) + bytes(128) + type3(4, 0xFFFFFF + 5) + bytes(72)
    reader = ChunkReader()

    messages = [m for i in range(len(data)) for m in reader.feed(data[i : i + 1])]

    assert messages == [Message(4, VIDEO, 1, 0xFFFFFF + 5, bytes(200))]
    assert reader.bytes_received == len(data)


@pytest.mark.parametrize("header", [type0(4, 0, 10, VIDEO, 1), type1(4, 0, 10, VIDEO), type2(4, 0)])
def test_new_header_while_a_message_is_half_assembled_is_a_protocol_error(header: bytes) -> None:
    reader = ChunkReader()
    reader.feed(type0(4, 0, 300, VIDEO, 1) + bytes(128))

    with pytest.raises(ProtocolError, match="half-assembled"):
        reader.feed(header)


@pytest.mark.parametrize("header", [type1(5, 0, 1, VIDEO), type2(5, 0), type3(5)])
def test_chunk_stream_cannot_start_with_a_compressed_header(header: bytes) -> None:
    with pytest.raises(ProtocolError, match="opens chunk stream 5"):
        ChunkReader().feed(header + b"x" * 8)


def test_message_over_the_size_cap_is_refused_before_its_body_arrives() -> None:
    reader = ChunkReader(ChunkLimits(max_message_size=1000))

    with pytest.raises(LimitExceeded, match="1001 bytes"):
        reader.feed(type0(4, 0, 1001, VIDEO, 1))


def test_chunk_stream_count_is_capped() -> None:
    reader = ChunkReader(ChunkLimits(max_chunk_streams=3))
    reader.feed(b"".join(type0(csid, 0, 1, VIDEO, 1) + b"x" for csid in (3, 4, 5)))

    with pytest.raises(LimitExceeded, match="chunk streams"):
        reader.feed(type0(6, 0, 1, VIDEO, 1) + b"x")


def test_reader_refuses_more_input_after_a_protocol_error() -> None:
    reader = ChunkReader()
    with pytest.raises(ProtocolError):
        reader.feed(type3(5))

    with pytest.raises(ProtocolError, match="already failed"):
        reader.feed(type0(4, 0, 1, VIDEO, 1) + b"x")


# Counters


def test_bytes_received_wraps_at_2_32_for_acknowledgements() -> None:
    reader = ChunkReader(bytes_received=(1 << 32) - 10)

    reader.feed(type0(4, 0, 20, VIDEO, 1) + bytes(20))

    assert reader.bytes_total == (1 << 32) + 22
    assert reader.bytes_received == 22


def test_chunks_parsed_counts_every_chunk_including_continuations() -> None:
    reader = ChunkReader()

    reader.feed(
        type0(4, 0, 300, VIDEO, 1) + bytes(128) + type3(4) + bytes(128) + type3(4) + bytes(44)
    )

    assert reader.chunks_parsed == 3


# Writer header choice


def _formats(encoded: bytes) -> int:
    return encoded[0] >> 6


def test_writer_picks_header_types_like_a_server() -> None:
    writer = ChunkWriter()

    first = writer.encode(Message(6, VIDEO, 1, 1000, b"abc"))
    new_length = writer.encode(Message(6, VIDEO, 1, 1040, b"abcd"))
    same_shape = writer.encode(Message(6, VIDEO, 1, 1090, b"efgh"))
    same_delta = writer.encode(Message(6, VIDEO, 1, 1140, b"ijkl"))
    backwards = writer.encode(Message(6, VIDEO, 1, 900, b"mnop"))
    other_stream = writer.encode(Message(6, VIDEO, 2, 950, b"mnop"))

    assert [
        _formats(b) for b in (first, new_length, same_shape, same_delta, backwards, other_stream)
    ] == [0, 1, 2, 3, 0, 0]


def test_writer_never_starts_a_message_with_type3_right_after_type0() -> None:
    writer = ChunkWriter()
    writer.encode(Message(6, VIDEO, 1, 40, b"abc"))

    assert _formats(writer.encode(Message(6, VIDEO, 1, 80, b"def"))) == 2


@pytest.mark.parametrize("repeat", [True, False], ids=["ffmpeg", "rtmpdump"])
def test_writer_repeats_extended_timestamps_on_continuation_chunks_only_if_asked(
    repeat: bool,
) -> None:
    writer = ChunkWriter(repeat_extended_timestamp=repeat)
    timestamp = 0x2000000

    encoded = writer.encode(Message(4, VIDEO, 1, timestamp, bytes(200)))

    continuation = encoded[1 + 11 + 4 + 128 :]
    expected = b"\xc4" + (timestamp.to_bytes(4, "big") if repeat else b"")
    assert continuation[: len(expected)] == expected
    assert len(continuation) == len(expected) + 72


# Properties

_csids = st.one_of(
    st.integers(2, 63),
    st.integers(64, 319),
    st.integers(320, 65599),
    st.sampled_from([2, 3, 63, 64, 319, 320, 65599]),
)
_steps = st.one_of(
    st.sampled_from([0, 33, 40, 0xFFFFFF, 0x1000000]),
    st.integers(0, 100),
    st.integers(0xFFFFF0, 0x1000010),
    st.integers(0, (1 << 31) - 1),
    st.integers(-50, 0),
)


@st.composite
def message_streams(draw: st.DrawFn, zero_payloads: bool = False) -> list[Message]:
    csids = draw(st.lists(_csids, min_size=1, max_size=4, unique=True))
    clocks = {
        csid: draw(st.one_of(st.integers(0, (1 << 32) - 1), st.sampled_from([0, 0xFFFFFF])))
        for csid in csids
    }
    lengths = st.one_of(st.sampled_from([0, 1, 4, 128, 129, 300]), st.integers(0, 1200))
    if zero_payloads:
        lengths = lengths.map(lambda n: max(n, 1))
    messages = []
    # A reader's timeline starts at the first 32-bit timestamp it sees.
    started: set[int] = set()
    for _ in range(draw(st.integers(1, 12))):
        csid = draw(st.sampled_from(csids))
        if csid in started:
            clocks[csid] = max(0, clocks[csid] + draw(_steps))
        started.add(csid)
        length = draw(lengths)
        payload = (
            bytes(length) if zero_payloads else draw(st.binary(min_size=length, max_size=length))
        )
        messages.append(
            Message(
                csid,
                draw(st.sampled_from([AUDIO, VIDEO, 18, 20, 22])),
                draw(st.sampled_from([0, 1, 1, 1, 0xFFFFFFFF])),
                clocks[csid],
                payload,
            )
        )
    return messages


_chunk_sizes = st.one_of(st.integers(1, 16), st.integers(17, 5000), st.just(1 << 24))
# Sent last: a type-3 chunk whose bytes could still be a repeated extended timestamp
# waits for the next bytes, as it would on a live connection.
_FLUSH = encode_control(UserControl(UserControlEvent.PING_REQUEST, 1))


def _transmit(
    messages: list[Message], chunk_size: int, repeat: bool, cuts: list[int]
) -> list[Message]:
    writer = ChunkWriter(repeat_extended_timestamp=repeat)
    wire = bytearray(writer.encode(encode_control(SetChunkSize(chunk_size))))
    writer.set_chunk_size(chunk_size)
    for message in [*messages, _FLUSH]:
        wire += writer.encode(message)
    reader = ChunkReader()
    received: list[Message] = []
    start = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        received += reader.feed(bytes(wire[start:cut]))
        start = cut
    assert reader.buffered == 0
    assert reader.bytes_received == len(wire)
    assert received[0].payload == encode_control_payload(SetChunkSize(chunk_size))
    assert received[-1].payload == _FLUSH.payload
    return received[1:-1]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=message_streams(),
    chunk_size=_chunk_sizes,
    cuts=st.lists(st.integers(0, 1 << 20), max_size=20),
)
def test_writer_to_reader_round_trip_in_arbitrary_splits(
    messages: list[Message], chunk_size: int, cuts: list[int]
) -> None:
    assert _transmit(messages, chunk_size, True, cuts) == messages


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=message_streams(zero_payloads=True),
    chunk_size=_chunk_sizes,
    cuts=st.lists(st.integers(0, 1 << 20), max_size=20),
)
def test_round_trip_without_repeated_extended_timestamps_like_rtmpdump(
    messages: list[Message], chunk_size: int, cuts: list[int]
) -> None:
    # The tolerant type-3 rule has one ambiguity: a chunk body that starts with the
    # extended timestamp's bytes. Non-empty zero payloads cannot: those values are
    # 0xFFFFFF and up, and the only one starting with a zero byte is 00 FF FF FF.
    assert _transmit(messages, chunk_size, False, cuts) == messages


def test_type3_chunk_waits_only_while_its_bytes_could_still_be_a_repeated_timestamp() -> None:
    delta = 0x1000000
    reader = ChunkReader()
    reader.feed(type0(4, 0, 2, VIDEO, 1) + b"ab" + type2(4, delta) + b"cd")

    assert reader.feed(type3(4) + b"\x01") == []
    assert [m.payload for m in reader.feed(b"\x02")] == [b"\x01\x02"]
