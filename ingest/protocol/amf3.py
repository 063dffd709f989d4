"""AMF3 values, and the Python value model shared with AMF0.

The model lives here because AMF3's value space is a superset of AMF0's (it adds
integers and byte arrays); `amf0` imports it and switches here on the avmplus marker.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Final, TypeAlias, TypeVar

from ingest.protocol.errors import LimitExceeded, ProtocolError, TruncatedInput, UnsupportedFeature


class Sentinel(Enum):
    UNDEFINED = "undefined"
    UNSUPPORTED = "unsupported"

    def __repr__(self) -> str:
        return self.name


UNDEFINED: Final = Sentinel.UNDEFINED
UNSUPPORTED: Final = Sentinel.UNSUPPORTED


class EcmaArray(dict[str, "AmfValue"]):
    """A dict that AMF0 encodes as an ECMA array (the form onMetaData usually takes)."""

    __slots__ = ()


class XmlDocument(str):
    """A string that encodes as an XML document rather than a string."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TypedObject:
    class_name: str
    fields: dict[str, AmfValue]


AmfValue: TypeAlias = (
    bool
    | int
    | float
    | str
    | bytes
    | datetime
    | Sentinel
    | TypedObject
    | dict[str, "AmfValue"]
    | list["AmfValue"]
    | None
)


@dataclass(frozen=True, slots=True)
class AmfLimits:
    # Containers nested deeper than this are refused (counting through references).
    max_depth: int = 32
    # Values per payload, counting every value a reference stands for: a few bytes of
    # references must not expand into a structure that takes ages to walk.
    max_values: int = 65536
    max_object_keys: int = 4096

    def __post_init__(self) -> None:
        # The decoders recurse about three frames per level: stay far from Python's
        # recursion limit so a deep payload is a LimitExceeded, never a RecursionError.
        if not 1 <= self.max_depth <= 128:
            raise ValueError(f"max_depth {self.max_depth} outside 1..128")


DEFAULT_LIMITS: Final = AmfLimits()
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_DOUBLE = struct.Struct(">d")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")


def datetime_from_ms(ms: float) -> datetime:
    """A UTC datetime from milliseconds since the epoch. Raises ProtocolError when
    Python cannot represent it (NaN, infinities, beyond year 9999)."""
    try:
        return EPOCH + timedelta(milliseconds=ms)
    except (OverflowError, ValueError):
        raise ProtocolError(f"date {ms!r} ms is out of range") from None


def ms_from_datetime(value: datetime) -> float:
    """Milliseconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    return float(delta.days * 86_400_000 + delta.seconds * 1000) + delta.microseconds / 1000


class Reference:
    """One entry of a reference table. Weight (values) and height (container levels)
    let a reference be charged what it stands for."""

    __slots__ = ("complete", "height", "value", "weight")

    def __init__(self) -> None:
        self.value: AmfValue = None
        self.complete = False
        self.weight = 1
        self.height = 0


class DecodeBudget:
    """Limits shared by every value decoded from one payload, AMF0 and AMF3 alike."""

    __slots__ = ("deepest", "limits", "values")

    def __init__(self, limits: AmfLimits) -> None:
        self.limits = limits
        self.values = 0
        self.deepest = 0

    def count(self, n: int = 1) -> None:
        self.values += n
        if self.values > self.limits.max_values:
            raise LimitExceeded(f"more than {self.limits.max_values} AMF values")

    def enter(self, level: int) -> tuple[int, int]:
        """Open a container at nesting `level` (top level is 1); returns a token for `leave`."""
        if level > self.limits.max_depth:
            raise LimitExceeded(f"AMF nesting deeper than {self.limits.max_depth}")
        token = (self.deepest, self.values)
        self.deepest = level
        return token

    def leave(self, level: int, token: tuple[int, int], entry: Reference | None) -> None:
        outer, values_before = token
        if entry is not None:
            entry.height = self.deepest - level + 1
            entry.weight = self.values - values_before + 1
            entry.complete = True
        self.deepest = max(outer, self.deepest)

    def charge(self, entry: Reference, level: int) -> AmfValue:
        """The value of a back-reference placed at `level`. Raises ProtocolError for a
        reference to a container still being decoded (a cycle)."""
        if not entry.complete:
            raise ProtocolError("AMF reference to an object that contains it")
        if entry.height:
            deepest = level + entry.height - 1
            if deepest > self.limits.max_depth:
                raise LimitExceeded(f"AMF nesting deeper than {self.limits.max_depth}")
            self.deepest = max(self.deepest, deepest)
        self.count(entry.weight)
        return entry.value


class Cursor:
    """Bounds-checked reads over a payload; every overrun is TruncatedInput."""

    __slots__ = ("end", "pos", "view")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        self.pos = pos
        self.end = len(self.view)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int, what: str) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise TruncatedInput(f"{what}: need {n} bytes, {self.end - pos} left")
        self.pos = pos + n
        return pos

    def byte(self, what: str = "byte") -> int:
        return self.view[self.need(1, what)]

    def peek(self) -> int | None:
        return self.view[self.pos] if self.pos < self.end else None

    def u16(self, what: str) -> int:
        p = self.need(2, what)
        return (self.view[p] << 8) | self.view[p + 1]

    def u32(self, what: str) -> int:
        value: int = _U32.unpack_from(self.view, self.need(4, what))[0]
        return value

    def double(self, what: str) -> float:
        value: float = _DOUBLE.unpack_from(self.view, self.need(8, what))[0]
        return value

    def utf8(self, n: int, what: str) -> str:
        p = self.need(n, what)
        # Flash-era encoders put Latin-1 in metadata: replace rather than fail, and
        # never hand lone surrogates to the database.
        return str(self.view[p : p + n], "utf-8", "replace")

    def take(self, n: int, what: str) -> bytes:
        p = self.need(n, what)
        return self.view[p : p + n].tobytes()


# AMF3 markers.
_UNDEFINED = 0x00
_NULL = 0x01
_FALSE = 0x02
_TRUE = 0x03
_INTEGER = 0x04
_DOUBLE_MARKER = 0x05
_STRING = 0x06
_XML_DOC = 0x07
_DATE = 0x08
_ARRAY = 0x09
_OBJECT = 0x0A
_XML = 0x0B
_BYTE_ARRAY = 0x0C
_VECTOR_INT = 0x0D
_VECTOR_UINT = 0x0E
_VECTOR_DOUBLE = 0x0F
_VECTOR_OBJECT = 0x10
_DICTIONARY = 0x11

_INT_MIN = -(1 << 28)
_INT_MAX = (1 << 28) - 1
_U29_MAX = (1 << 29) - 1


@dataclass(frozen=True, slots=True)
class _Traits:
    class_name: str
    dynamic: bool
    members: tuple[str, ...]


_T = TypeVar("_T")


def _lookup(table: list[_T], index: int, what: str) -> _T:
    if index >= len(table):
        raise ProtocolError(f"AMF3 {what} reference {index} of {len(table)}")
    return table[index]


class Amf3Reader:
    """Decodes one AMF3 value graph; reference tables live as long as the reader.

    AMF0's avmplus marker starts a fresh reader for each value, sharing the budget.
    """

    def __init__(self, cursor: Cursor, budget: DecodeBudget) -> None:
        self.cursor = cursor
        self.budget = budget
        self._strings: list[str] = []
        self._objects: list[Reference] = []
        self._traits: list[_Traits] = []

    def read_value(self, level: int = 1) -> AmfValue:
        """One value; `level` is the nesting level a container here would have."""
        cursor = self.cursor
        marker = cursor.byte("AMF3 marker")
        self.budget.count()
        if marker == _UNDEFINED:
            return UNDEFINED
        if marker == _NULL:
            return None
        if marker == _FALSE:
            return False
        if marker == _TRUE:
            return True
        if marker == _INTEGER:
            value = self._u29()
            return value - (1 << 29) if value & (1 << 28) else value
        if marker == _DOUBLE_MARKER:
            return cursor.double("AMF3 double")
        if marker == _STRING:
            return self._string()
        if marker in (_XML_DOC, _XML):
            return self._xml(level)
        if marker == _DATE:
            return self._date(level)
        if marker == _ARRAY:
            return self._array(level)
        if marker == _OBJECT:
            return self._object(level)
        if marker == _BYTE_ARRAY:
            return self._byte_array(level)
        if marker in (_VECTOR_INT, _VECTOR_UINT, _VECTOR_DOUBLE, _VECTOR_OBJECT):
            return self._vector(marker, level)
        if marker == _DICTIONARY:
            raise UnsupportedFeature("AMF3 dictionary")
        raise ProtocolError(f"unknown AMF3 marker {marker:#x}")

    def _u29(self) -> int:
        cursor = self.cursor
        value = 0
        for _ in range(3):
            b = cursor.byte("AMF3 U29")
            if b < 0x80:
                return (value << 7) | b
            value = (value << 7) | (b & 0x7F)
        return (value << 8) | cursor.byte("AMF3 U29")

    def _string(self) -> str:
        header = self._u29()
        if not header & 1:
            return _lookup(self._strings, header >> 1, "string")
        text = self.cursor.utf8(header >> 1, "AMF3 string")
        if text:
            self._strings.append(text)
        return text

    def _reference(self, header: int, level: int) -> AmfValue:
        entry = _lookup(self._objects, header >> 1, "object")
        return self.budget.charge(entry, level)

    def _register(self) -> Reference:
        entry = Reference()
        self._objects.append(entry)
        return entry

    def _leaf(self, value: AmfValue) -> AmfValue:
        entry = self._register()
        entry.value = value
        entry.complete = True
        return value

    def _xml(self, level: int) -> AmfValue:
        header = self._u29()
        if not header & 1:
            return self._reference(header, level)
        return self._leaf(XmlDocument(self.cursor.utf8(header >> 1, "AMF3 XML")))

    def _date(self, level: int) -> AmfValue:
        header = self._u29()
        if not header & 1:
            return self._reference(header, level)
        return self._leaf(datetime_from_ms(self.cursor.double("AMF3 date")))

    def _byte_array(self, level: int) -> AmfValue:
        header = self._u29()
        if not header & 1:
            return self._reference(header, level)
        return self._leaf(self.cursor.take(header >> 1, "AMF3 byte array"))

    def _check_count(self, count: int, item_size: int, what: str) -> None:
        # Refuse the count before looping on it: it must fit in what is left.
        if count * item_size > self.cursor.remaining:
            raise TruncatedInput(f"{what} of {count} items in {self.cursor.remaining} bytes")

    def _array(self, level: int) -> AmfValue:
        header = self._u29()
        if not header & 1:
            return self._reference(header, level)
        dense_count = header >> 1
        self._check_count(dense_count, 1, "AMF3 array")
        budget = self.budget
        entry = self._register()
        token = budget.enter(level)
        assoc = EcmaArray()
        while True:
            key = self._string()
            if not key:
                break
            if len(assoc) >= budget.limits.max_object_keys:
                raise LimitExceeded(f"more than {budget.limits.max_object_keys} keys")
            assoc[key] = self.read_value(level + 1)
        dense = [self.read_value(level + 1) for _ in range(dense_count)]
        value: AmfValue
        if assoc:
            for index, item in enumerate(dense):
                assoc[str(index)] = item
            value = assoc
        else:
            value = dense
        entry.value = value
        budget.leave(level, token, entry)
        return value

    def _object(self, level: int) -> AmfValue:
        header = self._u29()
        if not header & 1:
            return self._reference(header, level)
        budget = self.budget
        if not header & 2:
            traits = _lookup(self._traits, header >> 2, "traits")
        elif header & 4:
            raise UnsupportedFeature("AMF3 externalizable object")
        else:
            member_count = header >> 4
            if member_count > budget.limits.max_object_keys:
                raise LimitExceeded(f"AMF3 object with {member_count} sealed members")
            self._check_count(member_count, 1, "AMF3 sealed members")
            class_name = self._string()
            members = tuple(self._string() for _ in range(member_count))
            traits = _Traits(class_name, bool(header & 8), members)
            self._traits.append(traits)
        entry = self._register()
        token = budget.enter(level)
        fields: dict[str, AmfValue] = {}
        for name in traits.members:
            fields[name] = self.read_value(level + 1)
        if traits.dynamic:
            while True:
                key = self._string()
                if not key:
                    break
                if len(fields) >= budget.limits.max_object_keys:
                    raise LimitExceeded(f"more than {budget.limits.max_object_keys} keys")
                fields[key] = self.read_value(level + 1)
        value: AmfValue = TypedObject(traits.class_name, fields) if traits.class_name else fields
        entry.value = value
        budget.leave(level, token, entry)
        return value

    def _vector(self, marker: int, level: int) -> AmfValue:
        header = self._u29()
        if not header & 1:
            return self._reference(header, level)
        count = header >> 1
        cursor = self.cursor
        cursor.byte("AMF3 vector fixed flag")
        budget = self.budget
        if marker == _VECTOR_OBJECT:
            self._check_count(count, 1, "AMF3 vector")
            self._string()  # element type name: nothing to check it against
            entry = self._register()
            token = budget.enter(level)
            items = [self.read_value(level + 1) for _ in range(count)]
            entry.value = items
            budget.leave(level, token, entry)
            return items
        self._check_count(count, 8 if marker == _VECTOR_DOUBLE else 4, "AMF3 vector")
        budget.count(count)
        numbers: list[AmfValue]
        if marker == _VECTOR_DOUBLE:
            numbers = [cursor.double("AMF3 vector") for _ in range(count)]
        elif marker == _VECTOR_INT:
            start = cursor.need(4 * count, "AMF3 vector")
            numbers = [v for (v,) in _I32.iter_unpack(cursor.view[start : start + 4 * count])]
        else:
            start = cursor.need(4 * count, "AMF3 vector")
            numbers = [v for (v,) in _U32.iter_unpack(cursor.view[start : start + 4 * count])]
        return self._leaf(numbers)


def decode_amf3(
    data: bytes | bytearray | memoryview, limits: AmfLimits = DEFAULT_LIMITS
) -> AmfValue:
    """Decode exactly one AMF3 value filling `data`. Raises ProtocolError."""
    cursor = Cursor(data)
    value = Amf3Reader(cursor, DecodeBudget(limits)).read_value()
    if cursor.remaining:
        raise ProtocolError(f"{cursor.remaining} bytes after the AMF3 value")
    return value


def _encode_u29(value: int, out: bytearray) -> None:
    if not 0 <= value <= _U29_MAX:
        raise ValueError(f"{value} does not fit AMF3's 29-bit integer")
    if value < 0x80:
        out.append(value)
    elif value < 0x4000:
        out += bytes(((value >> 7) | 0x80, value & 0x7F))
    elif value < 0x200000:
        out += bytes(((value >> 14) | 0x80, ((value >> 7) & 0x7F) | 0x80, value & 0x7F))
    else:
        out += bytes(
            (
                (value >> 22) | 0x80,
                ((value >> 15) & 0x7F) | 0x80,
                ((value >> 8) & 0x7F) | 0x80,
                value & 0xFF,
            )
        )


def _encode_string_body(text: str, out: bytearray) -> None:
    raw = text.encode("utf-8")
    _encode_u29((len(raw) << 1) | 1, out)
    out += raw


def _encode_value(value: AmfValue, out: bytearray) -> None:
    if value is UNDEFINED:
        out.append(_UNDEFINED)
    elif value is None:
        out.append(_NULL)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int) and _INT_MIN <= value <= _INT_MAX:
        out.append(_INTEGER)
        _encode_u29(value & _U29_MAX, out)
    elif isinstance(value, int | float):
        out.append(_DOUBLE_MARKER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, XmlDocument):
        out.append(_XML)
        _encode_string_body(value, out)
    elif isinstance(value, str):
        out.append(_STRING)
        _encode_string_body(value, out)
    elif isinstance(value, datetime):
        out.append(_DATE)
        out.append(0x01)
        out += _DOUBLE.pack(ms_from_datetime(value))
    elif isinstance(value, bytes):
        out.append(_BYTE_ARRAY)
        _encode_u29((len(value) << 1) | 1, out)
        out += value
    elif isinstance(value, EcmaArray):
        out.append(_ARRAY)
        out.append(0x01)  # no dense part
        _encode_members(value, out)
    elif isinstance(value, list):
        out.append(_ARRAY)
        _encode_u29((len(value) << 1) | 1, out)
        out.append(0x01)  # empty associative part
        for item in value:
            _encode_value(item, out)
    elif isinstance(value, TypedObject):
        out.append(_OBJECT)
        out.append(0x0B)  # inline traits, dynamic, no sealed members
        _encode_string_body(value.class_name, out)
        _encode_members(value.fields, out)
    elif isinstance(value, dict):
        out.append(_OBJECT)
        out += b"\x0b\x01"  # inline dynamic traits, anonymous class
        _encode_members(value, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF3")


def _encode_members(members: dict[str, AmfValue], out: bytearray) -> None:
    for key, item in members.items():
        if not key:
            raise ValueError("AMF3 cannot encode an empty key: it ends the member list")
        _encode_string_body(key, out)
        _encode_value(item, out)
    out.append(0x01)


def encode_amf3(value: AmfValue) -> bytes:
    """One AMF3 value, without references. Integers outside 29 bits become doubles;
    raises TypeError/ValueError for what AMF3 cannot carry (UNSUPPORTED, empty keys)."""
    out = bytearray()
    _encode_value(value, out)
    return bytes(out)
