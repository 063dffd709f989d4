from __future__ import annotations

import itertools

import pytest

from ingest.protocol.chunk import ChunkReader, ChunkWriter, Message
from ingest.protocol.control import (
    Abort,
    Acknowledgement,
    AckTracker,
    ControlMessage,
    LimitType,
    SetChunkSize,
    SetPeerBandwidth,
    UserControl,
    UserControlEvent,
    WindowAckSize,
    decode_control,
    encode_control,
)
from ingest.protocol.errors import ProtocolError, TruncatedInput

WRAP = 1 << 32


@pytest.mark.parametrize(
    "control",
    [
        SetChunkSize(4096),
        Abort(6),
        Acknowledgement(0xFFFFFFFF),
        WindowAckSize(2_500_000),
        SetPeerBandwidth(2_500_000, LimitType.DYNAMIC),
        UserControl(UserControlEvent.STREAM_BEGIN, 1),
        UserControl(UserControlEvent.STREAM_EOF, 1),
        UserControl(UserControlEvent.STREAM_DRY, 1),
        UserControl(UserControlEvent.SET_BUFFER_LENGTH, 1, buffer_length=3000),
        UserControl(UserControlEvent.STREAM_IS_RECORDED, 1),
        UserControl(UserControlEvent.PING_REQUEST, 123_456),
        UserControl(UserControlEvent.PING_RESPONSE, 123_456),
        UserControl(31, data=b"\x00\x00\x00\x01"),
    ],
    ids=repr,
)
def test_control_message_round_trips_through_the_chunk_stream(control: ControlMessage) -> None:
    message = encode_control(control)

    (received,) = ChunkReader().feed(ChunkWriter().encode(message))

    assert (received.csid, received.stream_id) == (2, 0)
    assert decode_control(received.type_id, received.payload) == control


def test_stream_begin_is_event_0_then_the_stream_id() -> None:
    assert encode_control(UserControl(UserControlEvent.STREAM_BEGIN, 1)).payload == (
        b"\x00\x00\x00\x00\x00\x01"
    )


def test_set_peer_bandwidth_carries_the_limit_type_byte() -> None:
    payload = encode_control(SetPeerBandwidth(5_000_000, LimitType.DYNAMIC)).payload

    assert payload == (5_000_000).to_bytes(4, "big") + b"\x02"


@pytest.mark.parametrize(
    ("type_id", "payload"),
    [
        (1, b"\x00\x00\x10"),
        (3, b""),
        (4, b"\x00"),
        (4, b"\x00\x03\x00\x00\x00\x01"),
        (6, b"\x00\x00\x10\x00"),
    ],
)
def test_short_control_payloads_are_truncated_input(type_id: int, payload: bytes) -> None:
    with pytest.raises(TruncatedInput):
        decode_control(type_id, payload)


@pytest.mark.parametrize("payload", [b"\x00\x00\x00\x00", b"\x80\x00\x00\x01"])
def test_set_chunk_size_of_zero_or_high_bit_does_not_decode(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_control(1, payload)


def test_unknown_limit_type_and_non_control_types_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        decode_control(6, b"\x00\x00\x10\x00\x07")
    with pytest.raises(ProtocolError):
        decode_control(9, b"\x00\x00\x00\x01")


def test_ack_is_due_once_a_window_of_bytes_has_arrived() -> None:
    tracker = AckTracker(1000)

    assert tracker.update(999) is None
    assert tracker.update(1500) == 1500
    assert tracker.update(2499) is None
    assert tracker.update(2500) == 2500


def test_acknowledgement_counter_wraps_at_2_32() -> None:
    tracker = AckTracker(1000, start=WRAP - 100)

    assert tracker.update(WRAP - 50) is None
    assert tracker.update(850) is None
    assert tracker.update(900) == 900
    assert tracker.update(1899) is None
    assert tracker.update(1900) == 1900


def test_ack_tracker_follows_the_reader_counter_across_4_gib() -> None:
    reader = ChunkReader(bytes_received=WRAP - 250_000)
    tracker = AckTracker(100_000, start=reader.bytes_received)
    writer = ChunkWriter()
    acked_totals = []
    for i in range(10):
        reader.feed(writer.encode(Message(6, 9, 1, 40 * i, bytes(60_000))))
        ack = tracker.update(reader.bytes_received)
        if ack is not None:
            assert ack == reader.bytes_total % WRAP
            acked_totals.append(reader.bytes_total)

    assert len(acked_totals) == 5
    assert acked_totals[0] < WRAP < acked_totals[-1]
    assert all(b - a >= 100_000 for a, b in itertools.pairwise(acked_totals))


def test_window_of_zero_disables_acknowledgements() -> None:
    tracker = AckTracker(0)

    assert tracker.update(10**9) is None

    tracker.set_window(10)
    assert tracker.update(10**9 + 10) == 10**9 + 10
