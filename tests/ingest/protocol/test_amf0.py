from __future__ import annotations

import math
import struct
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.protocol.amf0 import (
    UNDEFINED,
    UNSUPPORTED,
    AmfLimits,
    AmfValue,
    EcmaArray,
    TypedObject,
    XmlDocument,
    decode_command,
    decode_data,
    decode_values,
    decode_values_lenient,
    encode_command,
    encode_data,
    encode_values,
)
from ingest.protocol.errors import LimitExceeded, ProtocolError, TruncatedInput, UnsupportedFeature
from tests.support.amf import assert_same

END = b"\x00\x00\x09"


def string(text: str) -> bytes:
    raw = text.encode()
    return b"\x02" + struct.pack(">H", len(raw)) + raw


def number(value: float) -> bytes:
    return b"\x00" + struct.pack(">d", value)


def key(name: str) -> bytes:
    raw = name.encode()
    return struct.pack(">H", len(raw)) + raw


# Every marker


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (number(1.5), 1.5),
        (b"\x01\x01", True),
        (b"\x01\x00", False),
        (string("publish"), "publish"),
        (b"\x03" + key("app") + string("live") + END, {"app": "live"}),
        (b"\x05", None),
        (b"\x06", UNDEFINED),
        (b"\x08\x00\x00\x00\x01" + key("width") + number(320) + END, EcmaArray(width=320.0)),
        (b"\x0a\x00\x00\x00\x02" + number(1) + string("a"), [1.0, "a"]),
        (
            b"\x0b" + struct.pack(">d", 1_700_000_000_000) + b"\x00\x00",
            datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        ),
        (b"\x0c\x00\x00\x00\x03abc", "abc"),
        (b"\x0d", UNSUPPORTED),
        (b"\x0f\x00\x00\x00\x04<a/>", XmlDocument("<a/>")),
        (
            b"\x10" + key("flex.Foo") + key("x") + number(1) + END,
            TypedObject("flex.Foo", {"x": 1.0}),
        ),
        (b"\x11\x04\x7f", 127),
    ],
    ids=[
        "number",
        "true",
        "false",
        "string",
        "object",
        "null",
        "undefined",
        "ecma-array",
        "strict-array",
        "date",
        "long-string",
        "unsupported",
        "xml-document",
        "typed-object",
        "avmplus",
    ],
)
def test_every_amf0_marker_decodes(encoded: bytes, expected: AmfValue) -> None:
    assert_same(decode_values(encoded), [expected])


@pytest.mark.parametrize("marker", [b"\x04", b"\x0e"], ids=["movieclip", "recordset"])
def test_reserved_markers_are_unsupported(marker: bytes) -> None:
    with pytest.raises(UnsupportedFeature):
        decode_values(marker)


def test_object_end_outside_an_object_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="object end"):
        decode_values(b"\x09")


def test_unknown_marker_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="unknown AMF0 marker"):
        decode_values(b"\x42")


def test_date_time_zone_field_is_ignored() -> None:
    (value,) = decode_values(b"\x0b" + struct.pack(">d", 0) + b"\xff\x88")

    assert value == datetime(1970, 1, 1, tzinfo=UTC)


def test_date_python_cannot_represent_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="date"):
        decode_values(b"\x0b" + struct.pack(">d", math.inf) + b"\x00\x00")


def test_ecma_array_count_is_only_a_hint() -> None:
    encoded = b"\x08\x00\x00\x00\x09" + key("a") + number(1) + END

    assert decode_values(encoded) == [EcmaArray(a=1.0)]


def test_empty_key_before_a_value_is_a_property_not_the_end() -> None:
    encoded = b"\x03" + key("") + number(1) + END

    assert decode_values(encoded) == [{"": 1.0}]


def test_invalid_utf8_is_replaced_rather_than_failing() -> None:
    assert decode_values(b"\x02\x00\x04caf\xe9") == ["caf\ufffd"]


def test_references_point_at_earlier_objects() -> None:
    first = b"\x03" + key("a") + number(1) + END
    encoded = first + b"\x0a\x00\x00\x00\x02\x07\x00\x00\x07\x00\x00"

    values = decode_values(encoded)

    assert values == [{"a": 1.0}, [{"a": 1.0}, {"a": 1.0}]]


# Limits


def test_deep_nesting_bomb_is_refused() -> None:
    bomb = (b"\x0a\x00\x00\x00\x01") * 10_000 + b"\x05"

    with pytest.raises(LimitExceeded, match="nesting"):
        decode_values(bomb)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    nested = b"\x03" + key("a")
    encoded = nested * 31 + b"\x03" + END + END * 31

    (value,) = decode_values(encoded)

    depth = 0
    while isinstance(value, dict) and value:
        value = value["a"]
        depth += 1
    assert depth == 31


def test_references_cannot_expand_into_a_billion_values() -> None:
    # Each array holds the previous one twice: 40 bytes that stand for 2^k values.
    encoded = b"\x0a\x00\x00\x00\x02" + number(0) + number(0)
    for index in range(40):
        encoded += b"\x0a\x00\x00\x00\x02" + (b"\x07" + struct.pack(">H", index)) * 2

    with pytest.raises(LimitExceeded, match="values"):
        decode_values(encoded)


def test_reference_to_an_enclosing_object_is_refused() -> None:
    with pytest.raises(ProtocolError, match="contains it"):
        decode_values(b"\x03" + key("self") + b"\x07\x00\x00" + END)


def test_string_length_longer_than_the_payload_is_refused() -> None:
    with pytest.raises(TruncatedInput):
        decode_values(b"\x02\xff\xffabc")


def test_long_string_length_of_4_gib_is_refused_without_allocating() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedInput):
            decode_values(b"\x0c\xff\xff\xff\xffabc")
        with pytest.raises(TruncatedInput):
            decode_values(b"\x0a\xff\xff\xff\xff\x05")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 64 * 1024


def test_object_key_count_is_capped() -> None:
    encoded = b"\x03" + b"".join(key(f"k{i}") + b"\x05" for i in range(11)) + END

    with pytest.raises(LimitExceeded, match="keys"):
        decode_values(encoded, AmfLimits(max_object_keys=10))


# Leniency


def test_set_data_frame_with_trailing_garbage_still_yields_what_parsed() -> None:
    metadata = EcmaArray(width=1280.0, height=720.0, encoder="Lavf61.7.100")
    payload = encode_data("@setDataFrame", "onMetaData", metadata) + b"\x42garbage"

    values, error = decode_data(payload)

    assert values == ["@setDataFrame", "onMetaData", metadata]
    assert isinstance(error, ProtocolError)


def test_metadata_with_one_bad_field_keeps_the_fields_before_it() -> None:
    payload = (
        string("onMetaData")
        + b"\x08\x00\x00\x00\x03"
        + key("width")
        + number(1280)
        + key("odd")
        + b"\x42"
        + key("height")
        + number(720)
        + END
    )

    values, error = decode_values_lenient(payload)

    assert_same(values, ["onMetaData", EcmaArray(width=1280.0)])
    assert error is not None


def test_truncated_nested_metadata_keeps_its_partial_containers() -> None:
    payload = encode_values("onMetaData", EcmaArray(a=1.0, nested={"b": 2.0, "c": 3.0}))

    values, error = decode_values_lenient(payload[:-8])

    assert values == ["onMetaData", EcmaArray(a=1.0, nested={"b": 2.0})]
    assert isinstance(error, TruncatedInput)


def test_strict_decoding_rejects_the_same_trailing_garbage() -> None:
    with pytest.raises(ProtocolError):
        decode_values(encode_values("onMetaData") + b"\x42")


# Commands


def test_connect_command_decodes_like_obs_sends_it() -> None:
    payload = encode_command(
        "connect",
        1,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
            "tcUrl": "rtmp://localhost/live",
        },
    )

    command = decode_command(payload)

    assert command.name == "connect"
    assert command.transaction_id == 1.0
    assert isinstance(command.command_object, dict)
    assert command.command_object["app"] == "live"
    assert command.args == ()


def test_publish_command_carries_its_arguments() -> None:
    command = decode_command(encode_command("publish", 5, None, "stream-key", "live"))

    assert (command.command_object, command.args) == (None, ("stream-key", "live"))


def test_amf3_command_skips_its_leading_format_byte() -> None:
    payload = encode_command("createStream", 4, None, amf3=True)

    assert payload[0] == 0
    assert decode_command(payload, amf3=True).name == "createStream"


def test_command_without_a_name_is_refused() -> None:
    with pytest.raises(ProtocolError, match="name"):
        decode_command(number(1))


def test_command_without_transaction_id_reads_as_zero() -> None:
    assert decode_command(string("onBWDone")).transaction_id == 0.0


def test_long_strings_round_trip_with_the_long_string_marker() -> None:
    text = "x" * 70_000

    encoded = encode_values(text)

    assert encoded[0] == 0x0C
    assert decode_values(encoded) == [text]


# Round trip

_dates = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
_keys = st.text(max_size=12)
_scalars = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.just(UNSUPPORTED),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.text(max_size=40).map(XmlDocument),
    _dates,
    st.binary(max_size=20),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(_keys, children, max_size=5),
        st.dictionaries(_keys, children, max_size=5).map(EcmaArray),
        st.builds(TypedObject, st.text(max_size=12), st.dictionaries(_keys, children, max_size=5)),
    )


amf0_values = st.recursive(_scalars, _containers, max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(amf0_values, max_size=3))
def test_amf0_values_round_trip(values: list[Any]) -> None:
    assert_same(decode_values(encode_values(*values)), values)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=20), st.floats(0, 1e6), amf0_values, st.lists(amf0_values, max_size=3))
def test_commands_round_trip(name: str, txn: float, obj: Any, args: list[Any]) -> None:
    command = decode_command(encode_command(name, txn, obj, *args))

    assert command.name == name
    assert command.transaction_id == txn
    assert_same(command.command_object, obj)
    assert_same(list(command.args), args)


def test_the_deepest_allowed_nesting_never_reaches_python_recursion_limits() -> None:
    bomb = (b"\x0a\x00\x00\x00\x01") * 10_000 + b"\x05"

    with pytest.raises(LimitExceeded):
        decode_values(bomb, AmfLimits(max_depth=128))
    with pytest.raises(ValueError, match="max_depth"):
        AmfLimits(max_depth=1000)
