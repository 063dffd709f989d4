"""Bounds-checked bit reading shared by the parameter-set and config-record parsers."""

from __future__ import annotations

from transcoder.codecs.config import CodecConfigError

# ue(v)/se(v) code at most 32-bit values; more leading zeros is corrupt input, and
# capping them keeps a run of zero bytes from becoming a huge integer.
_MAX_GOLOMB_ZEROS = 31


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00) from a NAL unit.

    Left-to-right non-overlapping replacement matches the spec's scan: after an
    emulation-prevention byte the zero count restarts.
    """
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class BitReader:
    """MSB-first reader over bytes; every read past the end raises CodecConfigError."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._end = len(data) * 8

    @property
    def bits_left(self) -> int:
        return self._end - self._pos

    @property
    def bytes_left(self) -> int:
        return (self._end - self._pos) >> 3

    def u(self, n: int) -> int:
        """Read an n-bit unsigned integer (n >= 0)."""
        if n == 0:
            return 0
        end = self._pos + n
        if end > self._end:
            raise CodecConfigError(f"truncated: needed {n} bits, {self.bits_left} left")
        first = self._pos >> 3
        last = (end + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        self._pos = end
        return (chunk >> (last * 8 - end)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return self.u(1) == 1

    def skip(self, n: int) -> None:
        if n < 0 or self._pos + n > self._end:
            raise CodecConfigError(f"truncated: cannot skip {n} bits, {self.bits_left} left")
        self._pos += n

    def ue(self) -> int:
        """Read an unsigned exp-Golomb code, ue(v)."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > _MAX_GOLOMB_ZEROS:
                raise CodecConfigError("exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Read a signed exp-Golomb code, se(v)."""
        k = self.ue()
        return (k + 1) >> 1 if k & 1 else -(k >> 1)

    def ue_max(self, limit: int, name: str) -> int:
        """Read ue(v) and reject values above limit (the spec's range for that field)."""
        value = self.ue()
        if value > limit:
            raise CodecConfigError(f"{name} is {value}, at most {limit} allowed")
        return value

    def align(self) -> None:
        self._pos = min(self._end, (self._pos + 7) & ~7)

    def read_bytes(self, n: int) -> bytes:
        """Read n whole bytes; the reader must be byte-aligned."""
        if self._pos & 7:
            raise CodecConfigError("byte read at an unaligned position")
        if n < 0 or n > self.bytes_left:
            raise CodecConfigError(f"truncated: length {n}, {self.bytes_left} bytes left")
        start = self._pos >> 3
        self._pos += n * 8
        return self._data[start : start + n]
