"""AMF0 values, command messages (types 20 and 17) and data messages (18 and 15).

Python mapping: number -> float, boolean -> bool, string and long string -> str,
object -> dict, ECMA array -> EcmaArray, strict array -> list, null -> None,
undefined -> UNDEFINED, unsupported -> UNSUPPORTED, date -> aware UTC datetime (the
time-zone field is ignored, as the spec says it should be), XML document ->
XmlDocument, typed object -> TypedObject, avmplus -> the AMF3 value (see `amf3`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeAlias

from ingest.protocol.amf3 import (
    DEFAULT_LIMITS,
    UNDEFINED,
    UNSUPPORTED,
    Amf3Reader,
    AmfLimits,
    AmfValue,
    Cursor,
    DecodeBudget,
    EcmaArray,
    Reference,
    Sentinel,
    TypedObject,
    XmlDocument,
    datetime_from_ms,
    encode_amf3,
    ms_from_datetime,
)
from ingest.protocol.errors import LimitExceeded, ProtocolError, TruncatedInput, UnsupportedFeature

__all__ = [
    "DEFAULT_LIMITS",
    "UNDEFINED",
    "UNSUPPORTED",
    "AmfLimits",
    "AmfValue",
    "Command",
    "EcmaArray",
    "LenientResult",
    "Sentinel",
    "TypedObject",
    "XmlDocument",
    "decode_command",
    "decode_data",
    "decode_values",
    "decode_values_lenient",
    "encode_command",
    "encode_data",
    "encode_values",
]

TYPE_DATA_AMF3 = 15
TYPE_COMMAND_AMF3 = 17
TYPE_DATA_AMF0 = 18
TYPE_COMMAND_AMF0 = 20

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
MOVIECLIP: Final = 0x04
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
REFERENCE: Final = 0x07
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
UNSUPPORTED_MARKER: Final = 0x0D
RECORDSET: Final = 0x0E
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10
AVMPLUS: Final = 0x11

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_END = b"\x00\x00\x09"

LenientResult: TypeAlias = tuple[list[AmfValue], ProtocolError | None]


class _Partial(ProtocolError):
    """A container cut short by `cause`, carried up so lenient decoding keeps it."""

    def __init__(self, value: AmfValue, cause: ProtocolError) -> None:
        super().__init__(str(cause))
        self.value = value
        self.cause = cause


class _Amf0Reader:
    def __init__(self, cursor: Cursor, budget: DecodeBudget, lenient: bool) -> None:
        self.cursor = cursor
        self.budget = budget
        self.lenient = lenient
        self.refs: list[Reference] = []

    def read_value(self, level: int) -> AmfValue:
        cursor = self.cursor
        marker = cursor.byte("AMF0 marker")
        self.budget.count()
        if marker == NUMBER:
            return cursor.double("AMF0 number")
        if marker == BOOLEAN:
            return cursor.byte("AMF0 boolean") != 0
        if marker == STRING:
            return cursor.utf8(cursor.u16("AMF0 string length"), "AMF0 string")
        if marker == OBJECT:
            return self._properties(level, {}, None)
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == REFERENCE:
            index = cursor.u16("AMF0 reference")
            if index >= len(self.refs):
                raise ProtocolError(f"AMF0 reference {index} of {len(self.refs)}")
            return self.budget.charge(self.refs[index], level)
        if marker == ECMA_ARRAY:
            # The count is only a hint (encoders get it wrong): read to the end marker.
            cursor.u32("AMF0 ECMA array count")
            return self._properties(level, EcmaArray(), None)
        if marker == STRICT_ARRAY:
            return self._strict_array(level, cursor.u32("AMF0 strict array count"))
        if marker == DATE:
            ms = cursor.double("AMF0 date")
            cursor.need(2, "AMF0 date time zone")
            return datetime_from_ms(ms)
        if marker == LONG_STRING:
            return cursor.utf8(cursor.u32("AMF0 long string length"), "AMF0 long string")
        if marker == UNSUPPORTED_MARKER:
            return UNSUPPORTED
        if marker == XML_DOCUMENT:
            return XmlDocument(cursor.utf8(cursor.u32("AMF0 XML length"), "AMF0 XML"))
        if marker == TYPED_OBJECT:
            class_name = cursor.utf8(cursor.u16("AMF0 class name length"), "AMF0 class name")
            fields: dict[str, AmfValue] = {}
            return self._properties(level, fields, TypedObject(class_name, fields))
        if marker == AVMPLUS:
            # A fresh AMF3 context (reference tables) per avmplus value.
            return Amf3Reader(cursor, self.budget).read_value(level)
        if marker in (MOVIECLIP, RECORDSET):
            raise UnsupportedFeature(f"reserved AMF0 marker {marker:#x}")
        if marker == OBJECT_END:
            raise ProtocolError("AMF0 object end marker outside an object")
        raise ProtocolError(f"unknown AMF0 marker {marker:#x}")

    def _properties(
        self, level: int, target: dict[str, AmfValue], typed: TypedObject | None
    ) -> AmfValue:
        result: AmfValue = typed if typed is not None else target
        cursor = self.cursor
        budget = self.budget
        max_keys = budget.limits.max_object_keys
        entry = Reference()
        self.refs.append(entry)
        token = budget.enter(level)
        key = ""
        try:
            while True:
                length = cursor.u16("AMF0 property name length")
                if length == 0 and cursor.peek() == OBJECT_END:
                    cursor.pos += 1
                    break
                # An empty name followed by anything but the end marker is a property.
                key = cursor.utf8(length, "AMF0 property name")
                if len(target) >= max_keys and key not in target:
                    raise LimitExceeded(f"AMF0 object with more than {max_keys} keys")
                target[key] = self.read_value(level + 1)
        except _Partial as exc:
            target[key] = exc.value
            raise _Partial(result, exc.cause) from None
        except ProtocolError as exc:
            if self.lenient:
                raise _Partial(result, exc) from None
            raise
        entry.value = result
        budget.leave(level, token, entry)
        return result

    def _strict_array(self, level: int, count: int) -> AmfValue:
        if count > self.cursor.remaining:
            raise TruncatedInput(f"AMF0 strict array of {count} in {self.cursor.remaining} bytes")
        budget = self.budget
        items: list[AmfValue] = []
        entry = Reference()
        self.refs.append(entry)
        token = budget.enter(level)
        try:
            for _ in range(count):
                items.append(self.read_value(level + 1))
        except _Partial as exc:
            items.append(exc.value)
            raise _Partial(items, exc.cause) from None
        except ProtocolError as exc:
            if self.lenient:
                raise _Partial(items, exc) from None
            raise
        entry.value = items
        budget.leave(level, token, entry)
        return items


def _decode(
    payload: bytes | bytearray | memoryview, limits: AmfLimits, lenient: bool, start: int = 0
) -> LenientResult:
    cursor = Cursor(payload, start)
    reader = _Amf0Reader(cursor, DecodeBudget(limits), lenient)
    values: list[AmfValue] = []
    while cursor.remaining:
        try:
            values.append(reader.read_value(1))
        except _Partial as exc:
            values.append(exc.value)
            return values, exc.cause
        except ProtocolError as exc:
            if lenient:
                return values, exc
            raise
    return values, None


def decode_values(
    payload: bytes | bytearray | memoryview, limits: AmfLimits = DEFAULT_LIMITS
) -> list[AmfValue]:
    """Every AMF0 value in `payload`. Raises ProtocolError on any malformed byte."""
    return _decode(payload, limits, lenient=False)[0]


def decode_values_lenient(
    payload: bytes | bytearray | memoryview, limits: AmfLimits = DEFAULT_LIMITS
) -> LenientResult:
    """The AMF0 values before the first bad byte, and the error (None if there was none).

    A container cut short by the error is kept with the members read before it: an
    onMetaData with one odd field still yields the rest. Never raises ProtocolError.
    """
    return _decode(payload, limits, lenient=True)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    transaction_id: float
    command_object: AmfValue
    args: tuple[AmfValue, ...]


def _amf3_start(payload: bytes | bytearray | memoryview, amf3: bool) -> int:
    # Types 17 and 15 put one format byte (0) before AMF0 values.
    return 1 if amf3 and len(payload) > 0 and payload[0] == 0 else 0


def decode_command(
    payload: bytes | bytearray | memoryview,
    amf3: bool = False,
    limits: AmfLimits = DEFAULT_LIMITS,
) -> Command:
    """A command message: type 20, or type 17 with `amf3`. A missing transaction id
    reads as 0 and a missing command object as None. Raises ProtocolError."""
    values = _decode(payload, limits, lenient=False, start=_amf3_start(payload, amf3))[0]
    if not values or not isinstance(values[0], str):
        raise ProtocolError("command message does not start with a name")
    transaction_id: AmfValue = values[1] if len(values) > 1 else 0.0
    if isinstance(transaction_id, bool) or not isinstance(transaction_id, int | float):
        raise ProtocolError(f"command {values[0]!r} transaction id is {transaction_id!r}")
    return Command(
        values[0],
        float(transaction_id),
        values[2] if len(values) > 2 else None,
        tuple(values[3:]),
    )


def decode_data(
    payload: bytes | bytearray | memoryview,
    amf3: bool = False,
    limits: AmfLimits = DEFAULT_LIMITS,
) -> LenientResult:
    """A data message (type 18, or 15 with `amf3`), such as @setDataFrame, decoded
    leniently: metadata never kills a publish. Never raises ProtocolError."""
    return _decode(payload, limits, lenient=True, start=_amf3_start(payload, amf3))


def _encode_string_body(text: str, out: bytearray, what: str) -> None:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"{what} of {len(raw)} bytes does not fit a 16-bit length")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(members: dict[str, AmfValue], out: bytearray) -> None:
    for key, item in members.items():
        _encode_string_body(key, out, "AMF0 property name")
        _encode_value(item, out)
    out += _END


def _encode_value(value: AmfValue, out: bytearray) -> None:
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif value is UNSUPPORTED:
        out.append(UNSUPPORTED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, int(value)))
    elif isinstance(value, int | float):
        out.append(NUMBER)
        try:
            out += _DOUBLE.pack(float(value))
        except OverflowError:
            raise ValueError(f"{value} does not fit an AMF0 number") from None
    elif isinstance(value, XmlDocument):
        raw = value.encode("utf-8")
        out.append(XML_DOCUMENT)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, datetime):
        out.append(DATE)
        out += _DOUBLE.pack(ms_from_datetime(value))
        out += b"\x00\x00"
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(value, out)
    elif isinstance(value, TypedObject):
        out.append(TYPED_OBJECT)
        _encode_string_body(value.class_name, out, "AMF0 class name")
        _encode_properties(value.fields, out)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(value, out)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_value(item, out)
    elif isinstance(value, bytes):
        # AMF0 has no byte array; AMF3's is reachable through the avmplus marker.
        out.append(AVMPLUS)
        out += encode_amf3(value)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def encode_values(*values: AmfValue) -> bytes:
    """AMF0 encoding of `values`, one after another. Raises TypeError/ValueError for
    values AMF0 cannot carry."""
    out = bytearray()
    for value in values:
        _encode_value(value, out)
    return bytes(out)


def encode_command(
    name: str,
    transaction_id: float,
    command_object: AmfValue = None,
    *args: AmfValue,
    amf3: bool = False,
) -> bytes:
    """A command message body: type 20, or type 17 with `amf3` (a leading 0 byte)."""
    body = encode_values(name, transaction_id, command_object, *args)
    return b"\x00" + body if amf3 else body


def encode_data(*values: AmfValue, amf3: bool = False) -> bytes:
    """A data message body: type 18, or type 15 with `amf3` (a leading 0 byte)."""
    body = encode_values(*values)
    return b"\x00" + body if amf3 else body
