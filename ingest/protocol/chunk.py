"""RTMP chunk stream: sans-IO reader and writer of messages over chunks."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ingest.protocol.errors import LimitExceeded, ProtocolError
from ingest.protocol.timeline import extend_after

TYPE_SET_CHUNK_SIZE = 1
TYPE_ABORT = 2

DEFAULT_CHUNK_SIZE = 128
MIN_CSID = 2
MAX_CSID = 65599
MAX_MESSAGE_LENGTH = 0xFFFFFF
MAX_SET_CHUNK_SIZE = 0x7FFFFFFF
# A message is at most 2^24 - 1 bytes long, so every chunk size from 2^24 up reads alike.
CHUNK_SIZE_CEILING = 1 << 24

_EXTENDED = 0xFFFFFF
_MASK32 = 0xFFFFFFFF
_HALF = 1 << 31
_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")
# The 24-bit timestamp field, 24-bit length and type of a type 0 or 1 message header, as
# a byte and a 16-bit half each: one C call instead of seven byte reads per message.
_TYPE1 = struct.Struct(">BHBHB")


@dataclass(slots=True)
class Message:
    """One RTMP message. `timestamp` is in milliseconds on the 64-bit timeline of its
    chunk stream (see `Timeline`); the writer sends it modulo 2^32.

    A value, never changed once made; not a frozen dataclass only because the reader
    makes one per message and a frozen dataclass's __init__ costs twice as much."""

    csid: int
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    # OBS keyframes at high bitrates pass 1 MiB (nginx-rtmp's limit) and 4 MB (MediaMTX's
    # old one); 16 MiB leaves headroom and stays within the 24-bit length field.
    max_message_size: int = 16 * 1024 * 1024
    max_chunk_streams: int = 64
    max_chunk_size: int = CHUNK_SIZE_CEILING


def parse_set_chunk_size(payload: bytes) -> int:
    """The chunk size a Set Chunk Size payload asks for, clamped to `CHUNK_SIZE_CEILING`.

    Raises ProtocolError for a short payload, 0, or the reserved high bit set.
    """
    if len(payload) < 4:
        raise ProtocolError(f"Set Chunk Size payload of {len(payload)} bytes, need 4")
    size: int = _U32.unpack_from(payload)[0]
    if size == 0 or size > MAX_SET_CHUNK_SIZE:
        raise ProtocolError(f"Set Chunk Size of {size:#x} is outside 1..2^31-1")
    return min(size, CHUNK_SIZE_CEILING)


class _InboundStream:
    __slots__ = (
        "delta",
        "extended",
        "length",
        "parts",
        "remaining",
        "stream_id",
        "timestamp",
        "timestamp32",
        "type_id",
    )

    def __init__(self) -> None:
        # The last message's timestamp: as sent (32 bits; -1 before the first) and on
        # the stream's 64-bit timeline (`Timeline`'s rule, kept here: one per message).
        self.timestamp32 = -1
        # What a type-3 header starting a new message adds. After a type-0 header that
        # is the absolute timestamp field, as FFmpeg's and SRS's readers do (and as
        # FFmpeg's writer assumes when it picks type 3).
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        # The 4-byte value of the last type 0/1/2 header's extended timestamp, if any.
        self.extended: int | None = None
        self.parts: list[bytes | memoryview] = []
        # Bytes of the message in progress still to come; 0 when none is in progress.
        self.remaining = 0
        self.timestamp = 0


class ChunkReader:
    """Reassembles messages from the peer's chunk stream.

    Applies the peer's Set Chunk Size and Abort messages itself (and still returns
    them). After a ProtocolError the reader is finished: every later feed raises.
    """

    def __init__(self, limits: ChunkLimits | None = None, *, bytes_received: int = 0) -> None:
        """`bytes_received` starts the byte counter, e.g. at the handshake's 3073 bytes
        (librtmp counts them in its Acknowledgements)."""
        self._limits = limits or ChunkLimits()
        self._buf = bytearray()
        self._streams: dict[int, _InboundStream] = {}
        self._chunk_size = DEFAULT_CHUNK_SIZE
        self._bytes_total = bytes_received
        self._chunks_parsed = 0
        self._failure: ProtocolError | None = None

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @property
    def bytes_received(self) -> int:
        """Bytes fed so far modulo 2^32: the sequence number an Acknowledgement carries."""
        return self._bytes_total & _MASK32

    @property
    def bytes_total(self) -> int:
        return self._bytes_total

    @property
    def chunks_parsed(self) -> int:
        """Chunks parsed so far; the connection layer budgets parse work with it."""
        return self._chunks_parsed

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of their chunk."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Messages completed by `data`, in arrival order. Payloads are fresh `bytes`.

        Raises ProtocolError (LimitExceeded for a limit) on a malformed stream.
        """
        if self._failure is not None:
            raise ProtocolError("chunk stream already failed") from self._failure
        self._bytes_total += len(data) if not isinstance(data, memoryview) else data.nbytes
        self._buf += data
        try:
            return self._parse()
        except ProtocolError as exc:
            self._failure = exc
            raise

    def _parse(self) -> list[Message]:
        buf = self._buf
        end = len(buf)
        streams = self._streams
        limits = self._limits
        max_message = limits.max_message_size
        chunk_size = self._chunk_size
        out: list[Message] = []
        unfinished: list[_InboundStream] = []  # messages left half-assembled
        pos = 0
        chunks = 0
        with memoryview(buf) as view:
            while pos < end:
                b0 = buf[pos]
                fmt = b0 >> 6
                csid = b0 & 0x3F
                p = pos + 1
                if csid < 2:  # a two- or three-byte basic header
                    if csid == 0:
                        if p >= end:
                            break
                        csid = 64 + buf[p]
                        p += 1
                    else:
                        if p + 1 >= end:
                            break
                        csid = 64 + buf[p] + (buf[p + 1] << 8)
                        p += 2
                stream = streams.get(csid)

                if fmt == 3:
                    if stream is None:
                        raise ProtocolError(f"type 3 chunk opens chunk stream {csid}")
                    extended = stream.extended
                    if extended is not None:
                        # FFmpeg repeats the extended timestamp on type-3 chunks,
                        # rtmpdump does not: consume the 4 bytes only when they match.
                        if p + 4 <= end:
                            if _U32.unpack_from(buf, p)[0] == extended:
                                p += 4
                        elif buf[p:end] == _U32.pack(extended)[: end - p]:
                            # Could still be the repeat: wait for the 4 bytes rather
                            # than decide differently depending on how reads split.
                            break
                    remaining = stream.remaining
                    starts_message = remaining == 0
                    if starts_message:
                        remaining = stream.length
                else:
                    if stream is not None and stream.remaining:
                        raise ProtocolError(
                            f"type {fmt} header on chunk stream {csid} while a message"
                            f" is half-assembled ({stream.remaining} bytes missing)"
                        )
                    if fmt == 0:
                        if p + 11 > end:
                            break
                        high, low, long, short, type_id = _TYPE1.unpack_from(buf, p)
                        field = high << 16 | low
                        length = long << 16 | short
                        stream_id = _U32LE.unpack_from(buf, p + 7)[0]  # little-endian
                        p += 11
                    else:
                        if stream is None:
                            raise ProtocolError(f"type {fmt} chunk opens chunk stream {csid}")
                        if fmt == 1:
                            if p + 7 > end:
                                break
                            high, low, long, short, type_id = _TYPE1.unpack_from(buf, p)
                            field = high << 16 | low
                            length = long << 16 | short
                            p += 7
                        else:
                            if p + 3 > end:
                                break
                            field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                            length = stream.length
                            type_id = stream.type_id
                            p += 3
                        stream_id = stream.stream_id
                    extended = None
                    if field == _EXTENDED:
                        if p + 4 > end:
                            break
                        field = extended = _U32.unpack_from(buf, p)[0]
                        p += 4
                    if length > max_message:
                        raise LimitExceeded(
                            f"message of {length} bytes on chunk stream {csid} exceeds"
                            f" the {max_message}-byte limit"
                        )
                    remaining = length
                    starts_message = True

                body = chunk_size if remaining > chunk_size else remaining
                if p + body > end:
                    break

                # The whole chunk is here: only now does it change any state.
                delta = -1  # none: the timestamp is absolute (type 0) or unchanged
                if stream is None:
                    if len(streams) >= limits.max_chunk_streams:
                        raise LimitExceeded(f"more than {limits.max_chunk_streams} chunk streams")
                    stream = streams[csid] = _InboundStream()
                if fmt != 3:
                    if fmt == 0:
                        last32 = stream.timestamp32
                        stream.stream_id = stream_id
                        stream.timestamp = (
                            field if last32 < 0 else extend_after(last32, stream.timestamp, field)
                        )
                        stream.timestamp32 = field
                    else:
                        delta = field
                    stream.delta = field
                    stream.length = length
                    stream.type_id = type_id
                    stream.extended = extended
                elif starts_message:
                    delta = stream.delta
                if delta >= 0:
                    # A timestamp given as a delta (types 1-3, starting a message), placed
                    # on the 64-bit timeline inline: a step forward is simply added.
                    last32 = stream.timestamp32
                    stream.timestamp32 = (last32 + delta) & _MASK32
                    if delta < _HALF:
                        stream.timestamp += delta
                    else:
                        stream.timestamp = extend_after(
                            last32, stream.timestamp, stream.timestamp32
                        )
                pos = p + body
                chunks += 1

                remaining -= body  # of the message, after this chunk
                if starts_message and not remaining:
                    payload = view[p:pos].tobytes()
                else:
                    # Views of the buffer, copied once: into the payload when the message
                    # is complete, else into bytes before the buffer moves (below).
                    parts = stream.parts
                    parts.append(view[p:pos])
                    if remaining and csid < 64 and stream.extended is None:
                        # The chunks right behind that carry on this message (a video
                        # frame, as encoders write it): no pass of the loop for each.
                        marker = 0xC0 | csid  # type 3, one-byte basic header
                        while pos < end and buf[pos] == marker:
                            body = chunk_size if remaining > chunk_size else remaining
                            after = pos + 1 + body
                            if after > end:
                                break
                            parts.append(view[pos + 1 : after])
                            pos = after
                            remaining -= body
                            chunks += 1
                            if not remaining:
                                break
                    stream.remaining = remaining
                    if remaining:
                        unfinished.append(stream)
                        continue
                    payload = b"".join(parts)
                    parts.clear()  # in place: no view may outlive this pass
                type_id = stream.type_id
                out.append(Message(csid, type_id, stream.stream_id, stream.timestamp, payload))
                if type_id <= TYPE_ABORT:
                    if type_id == TYPE_SET_CHUNK_SIZE:
                        # Applied whatever the chunk stream or message stream: the peer's
                        # writer has switched either way, and ignoring it would desync.
                        chunk_size = self._apply_chunk_size(payload)
                    elif type_id == TYPE_ABORT:
                        self._apply_abort(payload)
            for stream in unfinished:
                stream.parts[:] = [bytes(part) for part in stream.parts]
        if pos:
            del buf[:pos]
        self._chunks_parsed += chunks
        return out

    def _apply_chunk_size(self, payload: bytes) -> int:
        size = parse_set_chunk_size(payload)
        if size > self._limits.max_chunk_size:
            raise LimitExceeded(
                f"peer chunk size {size} exceeds the {self._limits.max_chunk_size} limit"
            )
        self._chunk_size = size
        return size

    def _apply_abort(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise ProtocolError(f"Abort payload of {len(payload)} bytes, need 4")
        stream = self._streams.get(_U32.unpack_from(payload)[0])
        if stream is not None:
            stream.parts.clear()  # in place: a view in it may still be referenced
            stream.remaining = 0


class _OutboundStream:
    __slots__ = ("delta", "extended", "length", "reusable", "stream_id", "timestamp", "type_id")

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended: int | None = None
        # Whether a type-3 header may start a new message. Never right after type 0:
        # readers disagree on what delta that re-applies (librtmp: 0; FFmpeg, SRS: the
        # absolute timestamp).
        self.reusable = False


def encode_basic_header(fmt: int, csid: int) -> bytes:
    """The 1-, 2- or 3-byte basic header; the shortest form that holds `csid`."""
    if csid < MIN_CSID or csid > MAX_CSID:
        raise ValueError(f"chunk stream id {csid} outside {MIN_CSID}..{MAX_CSID}")
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    rest = csid - 64
    if rest < 256:
        return bytes((fmt << 6, rest))
    return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))


class ChunkWriter:
    """Splits messages into chunks the way a server does (header types 0/1/2/3)."""

    def __init__(
        self,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        repeat_extended_timestamp: bool = True,
    ) -> None:
        # True writes the extended timestamp on type-3 chunks as FFmpeg does; False
        # leaves it out as rtmpdump does. Readers must cope with both.
        self.repeat_extended_timestamp = repeat_extended_timestamp
        self._chunk_size = DEFAULT_CHUNK_SIZE
        self.set_chunk_size(chunk_size)
        self._streams: dict[int, _OutboundStream] = {}

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    def set_chunk_size(self, size: int) -> None:
        """Chunk size for later messages; send the peer a Set Chunk Size first."""
        if size < 1 or size > MAX_SET_CHUNK_SIZE:
            raise ValueError(f"chunk size {size} outside 1..2^31-1")
        self._chunk_size = min(size, CHUNK_SIZE_CEILING)

    def encode(self, message: Message) -> bytes:
        """The chunks carrying `message`. Raises ValueError for a message RTMP cannot carry."""
        payload = message.payload
        length = len(payload)
        if length > MAX_MESSAGE_LENGTH:
            raise ValueError(f"message of {length} bytes exceeds the 24-bit length field")
        if not 0 <= message.type_id <= 0xFF:
            raise ValueError(f"message type {message.type_id} is not a byte")
        if not 0 <= message.stream_id <= _MASK32:
            raise ValueError(f"message stream id {message.stream_id} is not 32-bit")
        if message.timestamp < 0:
            raise ValueError(f"negative timestamp {message.timestamp}")
        csid = message.csid
        timestamp = message.timestamp
        stream = self._streams.get(csid)
        if (
            stream is None
            or message.stream_id != stream.stream_id
            or timestamp < stream.timestamp
            or timestamp - stream.timestamp > _MASK32
        ):
            fmt = 0
            field = timestamp & _MASK32
        else:
            field = timestamp - stream.timestamp
            if length != stream.length or message.type_id != stream.type_id:
                fmt = 1
            elif stream.reusable and field == stream.delta:
                fmt = 3
            else:
                fmt = 2
        if stream is None:
            # Validates csid before any state is kept for it.
            encode_basic_header(0, csid)
            stream = self._streams[csid] = _OutboundStream()

        pieces: list[bytes | memoryview] = [encode_basic_header(fmt, csid)]
        if fmt == 3:
            extended = stream.extended
            if extended is not None and self.repeat_extended_timestamp:
                pieces.append(_U32.pack(extended))
        else:
            extended = field if field >= _EXTENDED else None
            shown = _EXTENDED if extended is not None else field
            if fmt == 0:
                pieces.append(
                    shown.to_bytes(3, "big")
                    + length.to_bytes(3, "big")
                    + bytes((message.type_id,))
                    + _U32LE.pack(message.stream_id)
                )
            elif fmt == 1:
                pieces.append(
                    shown.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes((message.type_id,))
                )
            else:
                pieces.append(shown.to_bytes(3, "big"))
            if extended is not None:
                pieces.append(_U32.pack(extended))
            stream.extended = extended
            stream.length = length
            stream.type_id = message.type_id
            stream.stream_id = message.stream_id
            stream.delta = field
            stream.reusable = fmt != 0
        stream.timestamp = timestamp

        size = self._chunk_size
        view = memoryview(payload)
        pieces.append(view[:size])
        if length > size:
            continuation = encode_basic_header(3, csid)
            if extended is not None and self.repeat_extended_timestamp:
                continuation += _U32.pack(extended)
            for offset in range(size, length, size):
                pieces.append(continuation)
                pieces.append(view[offset : offset + size])
        return b"".join(pieces)
