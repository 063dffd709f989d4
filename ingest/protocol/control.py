"""Protocol control messages (types 1-6), user control events, and acknowledgement timing."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, TypeAlias

from ingest.protocol.chunk import MAX_SET_CHUNK_SIZE, TYPE_ABORT, TYPE_SET_CHUNK_SIZE, Message
from ingest.protocol.errors import ProtocolError, TruncatedInput

TYPE_ACKNOWLEDGEMENT = 3
TYPE_USER_CONTROL = 4
TYPE_WINDOW_ACK_SIZE = 5
TYPE_SET_PEER_BANDWIDTH = 6
CONTROL_TYPES = frozenset(range(1, 7))
# Protocol control messages travel on chunk stream 2, message stream 0.
CONTROL_CSID = 2

_MASK32 = 0xFFFFFFFF
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class UserControlEvent(IntEnum):
    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


_KNOWN_EVENTS = frozenset(int(event) for event in UserControlEvent)


class LimitType(IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


@dataclass(frozen=True, slots=True)
class SetChunkSize:
    type_id: ClassVar[int] = TYPE_SET_CHUNK_SIZE
    size: int


@dataclass(frozen=True, slots=True)
class Abort:
    type_id: ClassVar[int] = TYPE_ABORT
    csid: int


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """`sequence_number` is the byte count received so far, modulo 2^32."""

    type_id: ClassVar[int] = TYPE_ACKNOWLEDGEMENT
    sequence_number: int


@dataclass(frozen=True, slots=True)
class UserControl:
    """A user control event. `value` is the message stream id, or for pings a
    millisecond timestamp. `buffer_length` (ms) is set for SetBufferLength only.
    Events this module does not know keep their number in `event`, value 0 and
    their raw bytes in `data`."""

    type_id: ClassVar[int] = TYPE_USER_CONTROL
    event: int
    value: int = 0
    buffer_length: int | None = None
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class WindowAckSize:
    type_id: ClassVar[int] = TYPE_WINDOW_ACK_SIZE
    size: int


@dataclass(frozen=True, slots=True)
class SetPeerBandwidth:
    type_id: ClassVar[int] = TYPE_SET_PEER_BANDWIDTH
    size: int
    limit_type: LimitType


ControlMessage: TypeAlias = (
    SetChunkSize | Abort | Acknowledgement | UserControl | WindowAckSize | SetPeerBandwidth
)


def _u32(payload: bytes, offset: int, what: str) -> int:
    if len(payload) < offset + 4:
        raise TruncatedInput(f"{what}: payload of {len(payload)} bytes, need {offset + 4}")
    value: int = _U32.unpack_from(payload, offset)[0]
    return value


def decode_control(type_id: int, payload: bytes) -> ControlMessage:
    """Decode a protocol control message (types 1-6).

    Bytes past the fields are ignored. Raises ProtocolError for another type, a short
    payload, or an invalid value.
    """
    if type_id == TYPE_SET_CHUNK_SIZE:
        size = _u32(payload, 0, "Set Chunk Size")
        if size == 0 or size > MAX_SET_CHUNK_SIZE:
            raise ProtocolError(f"Set Chunk Size of {size:#x} is outside 1..2^31-1")
        return SetChunkSize(size)
    if type_id == TYPE_ABORT:
        return Abort(_u32(payload, 0, "Abort"))
    if type_id == TYPE_ACKNOWLEDGEMENT:
        return Acknowledgement(_u32(payload, 0, "Acknowledgement"))
    if type_id == TYPE_USER_CONTROL:
        return _decode_user_control(payload)
    if type_id == TYPE_WINDOW_ACK_SIZE:
        return WindowAckSize(_u32(payload, 0, "Window Acknowledgement Size"))
    if type_id == TYPE_SET_PEER_BANDWIDTH:
        size = _u32(payload, 0, "Set Peer Bandwidth")
        if len(payload) < 5:
            raise TruncatedInput("Set Peer Bandwidth without a limit type")
        try:
            limit_type = LimitType(payload[4])
        except ValueError:
            raise ProtocolError(f"Set Peer Bandwidth limit type {payload[4]}") from None
        return SetPeerBandwidth(size, limit_type)
    raise ProtocolError(f"message type {type_id} is not a protocol control message")


def _decode_user_control(payload: bytes) -> UserControl:
    if len(payload) < 2:
        raise TruncatedInput(f"User Control payload of {len(payload)} bytes, need 2")
    event: int = _U16.unpack_from(payload)[0]
    if event == UserControlEvent.SET_BUFFER_LENGTH:
        return UserControl(
            UserControlEvent.SET_BUFFER_LENGTH,
            _u32(payload, 2, "SetBufferLength"),
            buffer_length=_u32(payload, 6, "SetBufferLength"),
        )
    try:
        known = UserControlEvent(event)
    except ValueError:
        return UserControl(event, data=bytes(payload[2:]))
    return UserControl(known, _u32(payload, 2, known.name))


def encode_control_payload(control: ControlMessage) -> bytes:
    """The message body of `control`. Raises ValueError for out-of-range fields."""
    if isinstance(control, SetChunkSize):
        if not 1 <= control.size <= MAX_SET_CHUNK_SIZE:
            raise ValueError(f"chunk size {control.size} outside 1..2^31-1")
        return _U32.pack(control.size)
    if isinstance(control, Abort):
        return _U32.pack(control.csid)
    if isinstance(control, Acknowledgement):
        return _U32.pack(control.sequence_number & _MASK32)
    if isinstance(control, WindowAckSize):
        return _U32.pack(control.size)
    if isinstance(control, SetPeerBandwidth):
        return _U32.pack(control.size) + bytes((control.limit_type,))
    if control.event == UserControlEvent.SET_BUFFER_LENGTH:
        return (
            _U16.pack(control.event)
            + _U32.pack(control.value)
            + _U32.pack(control.buffer_length or 0)
        )
    if control.event in _KNOWN_EVENTS:
        return _U16.pack(control.event) + _U32.pack(control.value)
    return _U16.pack(control.event) + control.data


def encode_control(control: ControlMessage, timestamp: int = 0) -> Message:
    """`control` as a message on chunk stream 2, message stream 0."""
    return Message(CONTROL_CSID, control.type_id, 0, timestamp, encode_control_payload(control))


class AckTracker:
    """Says when an Acknowledgement is due, from the reader's 32-bit byte counter.

    Counts in modular arithmetic so it keeps working across the 4 GiB wrap (encoders
    stalled around 4 GB on SRS). Call `update` after every read: it is correct as long
    as fewer than 2^32 bytes arrive between two calls. A window of 0 disables acks.
    """

    __slots__ = ("_last", "_window")

    def __init__(self, window: int = 0, *, start: int = 0) -> None:
        self._window = 0
        self.set_window(window)
        self._last = start & _MASK32

    @property
    def window(self) -> int:
        return self._window

    def set_window(self, size: int) -> None:
        """Apply the peer's Window Acknowledgement Size (bytes)."""
        if not 0 <= size <= _MASK32:
            raise ValueError(f"window {size} is not a 32-bit size")
        self._window = size

    def update(self, bytes_received: int) -> int | None:
        """The sequence number to acknowledge now, or None if no ack is due."""
        bytes_received &= _MASK32
        if self._window and (bytes_received - self._last) & _MASK32 >= self._window:
            self._last = bytes_received
            return bytes_received
        return None
