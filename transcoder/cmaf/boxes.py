"""ISO base media file format (ISO/IEC 14496-12) boxes: writing them, and reading them back.

Pure functions over bytes. Writers return ``bytes``; the reader walks a buffer without
copying it. The reader is strict about sizes (a box never runs past its parent) and is
meant for checking what the packager wrote and for tests, not for hostile input at scale.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

_HEADER = struct.Struct(">I4s")
_LARGE_SIZE = struct.Struct(">Q")
_FULL_BOX_HEADER = struct.Struct(">I4sI")

Buffer = bytes | bytearray | memoryview


class BoxError(ValueError):
    """A box is truncated, runs past its parent, or is not where it was expected."""


def box(kind: bytes, *payload: bytes) -> bytes:
    """One box: a 32-bit size, the four-character type, then the payload parts."""
    body = b"".join(payload)
    return _HEADER.pack(8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A FullBox: the box header, then version (8 bits) and flags (24 bits)."""
    body = b"".join(payload)
    return _FULL_BOX_HEADER.pack(12 + len(body), kind, version << 24 | flags) + body


@dataclass(frozen=True, slots=True)
class Box:
    """Where a box sits in the buffer it was read from: ``start`` is the offset of its
    header, ``payload`` the offset of its first payload byte, ``end`` one past its last."""

    kind: str
    start: int
    payload: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def iter_boxes(data: Buffer, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes laid end to end in ``data[start:end]``.

    Raises BoxError when a box header is truncated or a box runs past ``end``. A size of 0
    ("to the end") is read as running to ``end``.
    """
    stop = len(data) if end is None else end
    offset = start
    while offset < stop:
        if stop - offset < _HEADER.size:
            raise BoxError(f"truncated box header at {offset}")
        size, kind = _HEADER.unpack_from(data, offset)
        payload = offset + _HEADER.size
        if size == 1:
            if stop - payload < _LARGE_SIZE.size:
                raise BoxError(f"truncated 64-bit box size at {offset}")
            (size,) = _LARGE_SIZE.unpack_from(data, payload)
            payload += _LARGE_SIZE.size
        elif size == 0:
            size = stop - offset
        if size < payload - offset or offset + size > stop:
            raise BoxError(f"box {kind!r} at {offset} has a bad size {size}")
        yield Box(kind.decode("latin-1"), offset, payload, offset + size)
        offset += size


def children(data: Buffer, parent: Box, skip: int = 0) -> Iterator[Box]:
    """The boxes inside ``parent``, after ``skip`` bytes of its own payload fields."""
    return iter_boxes(data, parent.payload + skip, parent.end)


def find_box(data: Buffer, path: str, start: int = 0, end: int | None = None) -> Box | None:
    """The first box along a slash-separated path of container boxes ("moov/trak/mdia"),
    or None. Only plain containers can be walked through (not FullBoxes such as stsd)."""
    first, _, rest = path.partition("/")
    for found in iter_boxes(data, start, end):
        if found.kind == first:
            if not rest:
                return found
            return find_box(data, rest, found.payload, found.end)
    return None


def get_box(data: Buffer, path: str, start: int = 0, end: int | None = None) -> Box:
    """Like find_box, but raises BoxError when the box is missing."""
    found = find_box(data, path, start, end)
    if found is None:
        raise BoxError(f"no {path} box")
    return found
