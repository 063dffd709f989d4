"""Fuzzing: whatever a peer sends, parsers fail only with ProtocolError.

Random bytes reach the framing checks; mutated valid encodings reach the deep paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.protocol.amf0 import (
    AmfLimits,
    EcmaArray,
    TypedObject,
    decode_command,
    decode_data,
    decode_values,
    decode_values_lenient,
    encode_command,
    encode_values,
)
from ingest.protocol.amf3 import decode_amf3, encode_amf3
from ingest.protocol.chunk import ChunkLimits, ChunkReader, ChunkWriter, Message
from ingest.protocol.control import decode_control
from ingest.protocol.errors import ProtocolError
from ingest.protocol.flv import parse_audio, parse_video
from ingest.protocol.handshake import HANDSHAKE_SIZE, ClientHandshake, ServerHandshake

# GOLIVE_FUZZ_EXAMPLES=20000 for a long run; the default keeps the fast suite fast.
FUZZ = settings(
    max_examples=int(os.environ.get("GOLIVE_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def fails_only_with_protocol_error(parse: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(ProtocolError):
        parse(*args)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete" and data:
            del data[position]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _feed_reader(data: bytes, cuts: list[int], limits: ChunkLimits) -> None:
    reader = ChunkReader(limits)
    for piece in _split(data, cuts):
        reader.feed(piece)


_small_limits = st.sampled_from(
    [ChunkLimits(), ChunkLimits(max_message_size=300, max_chunk_streams=2, max_chunk_size=64)]
)


@st.composite
def chunk_streams(draw: st.DrawFn) -> bytes:
    writer = ChunkWriter(draw(st.integers(1, 300)), repeat_extended_timestamp=draw(st.booleans()))
    wire = bytearray(
        b"\x02\x00\x00\x00\x00\x00\x04\x01\x00\x00\x00\x00" + writer.chunk_size.to_bytes(4, "big")
    )
    for _ in range(draw(st.integers(1, 6))):
        wire += writer.encode(
            Message(
                draw(st.sampled_from([2, 3, 4, 70, 400])),
                draw(st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 18, 20])),
                draw(st.sampled_from([0, 1])),
                draw(st.sampled_from([0, 40, 0xFFFFFF, 0x1000000, 1 << 32])),
                draw(st.binary(max_size=400)),
            )
        )
    return bytes(wire)


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 4000), max_size=10), _small_limits)
def test_chunk_reader_raises_only_protocol_errors_on_arbitrary_bytes(
    data: bytes, cuts: list[int], limits: ChunkLimits
) -> None:
    fails_only_with_protocol_error(_feed_reader, data, cuts, limits)


@FUZZ
@given(mutated(chunk_streams()), st.lists(st.integers(0, 4000), max_size=10), _small_limits)
def test_chunk_reader_raises_only_protocol_errors_on_mutated_streams(
    data: bytes, cuts: list[int], limits: ChunkLimits
) -> None:
    fails_only_with_protocol_error(_feed_reader, data, cuts, limits)


_amf_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=10), st.binary(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=6), children, min_size=1, max_size=4).map(
            EcmaArray
        ),
        st.builds(
            TypedObject,
            st.text(min_size=1, max_size=6),
            st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=3),
        ),
    ),
    max_leaves=10,
)
_amf0_payloads = st.one_of(
    st.binary(max_size=300),
    mutated(st.lists(_amf_values, max_size=4).map(lambda values: encode_values(*values))),
    mutated(st.builds(lambda v: encode_command("connect", 1, v), _amf_values)),
)
_tight_amf = st.sampled_from(
    [AmfLimits(), AmfLimits(max_depth=3, max_values=20, max_object_keys=3)]
)


@FUZZ
@given(_amf0_payloads, _tight_amf)
def test_amf0_decoding_raises_only_protocol_errors(payload: bytes, limits: AmfLimits) -> None:
    fails_only_with_protocol_error(decode_values, payload, limits)
    fails_only_with_protocol_error(decode_command, payload, False, limits)
    fails_only_with_protocol_error(decode_command, payload, True, limits)
    decode_values_lenient(payload, limits)
    decode_data(payload, True, limits)


@FUZZ
@given(
    st.one_of(st.binary(max_size=300), mutated(_amf_values.map(encode_amf3))),
    _tight_amf,
)
def test_amf3_decoding_raises_only_protocol_errors(payload: bytes, limits: AmfLimits) -> None:
    fails_only_with_protocol_error(decode_amf3, payload, limits)
    fails_only_with_protocol_error(decode_values, b"\x11" + payload, limits)


_video_heads = st.sampled_from(
    [b"\x17", b"\x27", b"\x1c", b"\x90hvc1", b"\x91avc1", b"\x97", b"\x96", b"\x96\x20", b"\xd4"]
)
_audio_heads = st.sampled_from([b"\xaf", b"\x2e", b"\x90", b"\x91Opus", b"\x94", b"\x95", b"\x97"])


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=100), st.tuples(_video_heads, st.binary(max_size=60)).map(b"".join)
    )
)
def test_video_parsing_raises_only_protocol_errors(payload: bytes) -> None:
    fails_only_with_protocol_error(parse_video, payload)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=100), st.tuples(_audio_heads, st.binary(max_size=60)).map(b"".join)
    )
)
def test_audio_parsing_raises_only_protocol_errors(payload: bytes) -> None:
    fails_only_with_protocol_error(parse_audio, payload)


@FUZZ
@given(st.integers(0, 25), st.binary(max_size=16))
def test_control_decoding_raises_only_protocol_errors(type_id: int, payload: bytes) -> None:
    fails_only_with_protocol_error(decode_control, type_id, payload)


def _drive_server(data: bytes, cuts: list[int]) -> None:
    server = ServerHandshake()
    for piece in _split(data, cuts):
        if server.done:
            break
        server.feed(piece)


def _drive_client(data: bytes, cuts: list[int]) -> None:
    client = ClientHandshake()
    client.start()
    for piece in _split(data, cuts):
        if client.done:
            break
        client.feed(piece)


_handshake_bytes = st.one_of(
    st.binary(max_size=200),
    st.tuples(
        st.sampled_from([b"\x03", b"\x06"]), st.binary(min_size=0, max_size=3 * HANDSHAKE_SIZE)
    ).map(b"".join),
)


@FUZZ
@given(_handshake_bytes, st.lists(st.integers(0, 5000), max_size=6))
def test_handshake_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    fails_only_with_protocol_error(_drive_server, data, cuts)
    fails_only_with_protocol_error(_drive_client, data, cuts)
