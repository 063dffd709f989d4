from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.protocol.amf0 import decode_command, decode_values
from ingest.protocol.amf3 import (
    UNDEFINED,
    EcmaArray,
    TypedObject,
    XmlDocument,
    decode_amf3,
    encode_amf3,
)
from ingest.protocol.errors import LimitExceeded, ProtocolError, TruncatedInput, UnsupportedFeature
from tests.support.amf import assert_same


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (b"\x00", UNDEFINED),
        (b"\x01", None),
        (b"\x02", False),
        (b"\x03", True),
        (b"\x04\x7f", 127),
        (b"\x04\x81\x00", 128),
        (b"\x04\xbf\xff\xff\xff", (1 << 28) - 1),
        (b"\x04\xff\xff\xff\xff", -1),
        (b"\x04\xc0\x80\x80\x00", -(1 << 28)),
        (b"\x05" + struct.pack(">d", 2.5), 2.5),
        (b"\x06\x05ab", "ab"),
        (b"\x07\x09<a/>", XmlDocument("<a/>")),
        (b"\x08\x01" + struct.pack(">d", 0), datetime(1970, 1, 1, tzinfo=UTC)),
        (b"\x09\x05\x01\x04\x01\x04\x02", [1, 2]),
        (b"\x09\x03\x03k\x04\x01\x01\x04\x02", EcmaArray({"k": 1, "0": 2})),
        (b"\x0a\x0b\x01\x03a\x04\x05\x01", {"a": 5}),
        (b"\x0a\x13\x03C\x03x\x04\x01", TypedObject("C", {"x": 1})),
        (b"\x0b\x09<a/>", XmlDocument("<a/>")),
        (b"\x0c\x07abc", b"abc"),
        (b"\x0d\x05\x00\x00\x00\x00\x01\xff\xff\xff\xff", [1, -1]),
        (b"\x0e\x03\x00\xff\xff\xff\xff", [0xFFFFFFFF]),
        (b"\x0f\x03\x00" + struct.pack(">d", 0.5), [0.5]),
        (b"\x10\x05\x00\x01\x04\x01\x06\x03z", [1, "z"]),
    ],
    ids=[
        "undefined",
        "null",
        "false",
        "true",
        "int-1-byte",
        "int-2-bytes",
        "int-max",
        "int-minus-1",
        "int-min",
        "double",
        "string",
        "xml-doc",
        "date",
        "dense-array",
        "mixed-array",
        "dynamic-object",
        "sealed-typed-object",
        "xml",
        "byte-array",
        "vector-int",
        "vector-uint",
        "vector-double",
        "vector-object",
    ],
)
def test_amf3_values_decode(encoded: bytes, expected: Any) -> None:
    assert_same(decode_amf3(encoded), expected)


def test_strings_and_traits_are_shared_through_reference_tables() -> None:
    encoded = b"\x09\x07\x01" + b"\x0a\x13\x03C\x03x\x04\x01" + b"\x0a\x01\x04\x02" + b"\x06\x00"

    assert decode_amf3(encoded) == [
        TypedObject("C", {"x": 1}),
        TypedObject("C", {"x": 2}),
        "C",
    ]


def test_object_references_return_the_earlier_object() -> None:
    encoded = b"\x09\x05\x01" + b"\x0a\x0b\x01\x03a\x04\x05\x01" + b"\x0a\x02"

    first, second = decode_amf3(encoded)  # type: ignore[misc]

    assert first is second


def test_externalizable_objects_are_unsupported() -> None:
    with pytest.raises(UnsupportedFeature, match="externalizable"):
        decode_amf3(b"\x0a\x07\x03C")


def test_dictionaries_are_unsupported() -> None:
    with pytest.raises(UnsupportedFeature, match="dictionary"):
        decode_amf3(b"\x11\x03\x00")


def test_object_that_references_itself_is_refused() -> None:
    with pytest.raises(ProtocolError, match="contains it"):
        decode_amf3(b"\x0a\x0b\x01\x03a\x0a\x00\x01")


def test_dangling_references_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="reference"):
        decode_amf3(b"\x06\x02")
    with pytest.raises(ProtocolError, match="reference"):
        decode_amf3(b"\x0a\x05")


def test_counts_larger_than_the_payload_are_refused_before_looping() -> None:
    with pytest.raises(TruncatedInput):
        decode_amf3(b"\x09\xff\xff\xff\xff\x01")
    with pytest.raises(TruncatedInput):
        decode_amf3(b"\x0d\xff\xff\xff\xff\x00")
    with pytest.raises(TruncatedInput):
        decode_amf3(b"\x0c\xff\xff\xff\xff")


def test_deep_amf3_nesting_is_refused() -> None:
    with pytest.raises(LimitExceeded, match="nesting"):
        decode_amf3(b"\x09\x03\x01" * 100 + b"\x01")


def test_amf3_reference_bomb_is_refused() -> None:
    # Array k holds array k-1 twice, by reference: 41 small arrays stand for 2^40 values.
    arrays = [b"\x09\x05\x01\x01\x01"]
    arrays += [b"\x09\x05\x01" + (b"\x09" + bytes((index << 1,))) * 2 for index in range(1, 41)]
    encoded = b"\x09" + bytes(((len(arrays) << 1) | 1,)) + b"\x01" + b"".join(arrays)

    with pytest.raises(LimitExceeded, match="values"):
        decode_amf3(encoded)


def test_avmplus_marker_switches_an_amf0_command_to_amf3() -> None:
    payload = (
        b"\x00"
        + b"\x02\x00\x07connect"
        + b"\x00"
        + struct.pack(">d", 1)
        + b"\x11\x0a\x0b\x01\x07app\x06\x09live\x01"
    )

    command = decode_command(payload, amf3=True)

    assert command.command_object == {"app": "live"}


def test_each_avmplus_value_starts_fresh_reference_tables() -> None:
    with pytest.raises(ProtocolError, match="reference"):
        decode_values(b"\x11\x06\x05ab" + b"\x11\x06\x00")


_dates = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
_keys = st.text(min_size=1, max_size=10)
_scalars = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.booleans(),
    st.integers(-(1 << 28), (1 << 28) - 1),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.text(max_size=30).map(XmlDocument),
    _dates,
    st.binary(max_size=20),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(_keys, children, max_size=5),
        st.dictionaries(_keys, children, min_size=1, max_size=5).map(EcmaArray),
        st.builds(TypedObject, _keys, st.dictionaries(_keys, children, max_size=5)),
    )


@settings(max_examples=150, deadline=None)
@given(st.recursive(_scalars, _containers, max_leaves=10))
def test_amf3_values_round_trip(value: Any) -> None:
    assert_same(decode_amf3(encode_amf3(value)), value)
