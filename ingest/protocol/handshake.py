"""RTMP simple handshake (version 3, no digest) as sans-IO state machines."""

from __future__ import annotations

import os
import struct

from ingest.protocol.errors import UnsupportedFeature

RTMP_VERSION = 3
# 6, 8 and 9 are RTMPE (encrypted) and are refused like any other byte.
ACCEPTED_VERSIONS = frozenset({RTMP_VERSION})
HANDSHAKE_SIZE = 1536
_RANDOM_SIZE = HANDSHAKE_SIZE - 8
_U32 = struct.Struct(">I")


def _make_signature(timestamp: int, random_bytes: bytes | None) -> bytes:
    # Zero in bytes 4..7 (the "version" of the digest handshake) tells FFmpeg and
    # Flash-style clients that this is the simple handshake, so they skip digests.
    if random_bytes is None:
        random_bytes = os.urandom(_RANDOM_SIZE)
    if len(random_bytes) != _RANDOM_SIZE:
        raise ValueError(f"handshake random part must be {_RANDOM_SIZE} bytes")
    return _U32.pack(timestamp & 0xFFFFFFFF) + bytes(4) + random_bytes


def _check_version(version: int) -> None:
    if version not in ACCEPTED_VERSIONS:
        raise UnsupportedFeature(f"RTMP version byte {version}, only 3 is accepted")


class ServerHandshake:
    """Server side: answers C0+C1 with S0+S1+S2, then waits for C2.

    C2 is not required to echo S1: real clients do not always. `timestamp` (ms) and
    `random_bytes` fill S1 and exist for reproducible tests.
    """

    def __init__(self, *, timestamp: int = 0, random_bytes: bytes | None = None) -> None:
        self._s1 = _make_signature(timestamp, random_bytes)
        self._buf = bytearray()
        self._answered = False
        self._done = False
        self._leftover = b""
        self.c1 = b""
        self.c2_echoes_s1 = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def leftover(self) -> bytes:
        """Bytes that followed C2 in the last feed: the start of the chunk stream."""
        return self._leftover

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Bytes to send now (S0+S1+S2 once, else b""). Raises UnsupportedFeature (a
        ProtocolError) on a version byte other than 3; RuntimeError if fed after `done`."""
        if self._done:
            raise RuntimeError("handshake already done; feed the chunk reader instead")
        buf = self._buf
        buf += data
        out = b""
        if not self._answered:
            if not buf:
                return out
            _check_version(buf[0])
            if len(buf) < 1 + HANDSHAKE_SIZE:
                return out
            self.c1 = bytes(buf[1 : 1 + HANDSHAKE_SIZE])
            del buf[: 1 + HANDSHAKE_SIZE]
            # S2 echoes C1 whole: librtmp compares it byte for byte and warns otherwise.
            out = bytes((RTMP_VERSION,)) + self._s1 + self.c1
            self._answered = True
        if len(buf) >= HANDSHAKE_SIZE:
            self.c2_echoes_s1 = buf[8:HANDSHAKE_SIZE] == self._s1[8:]
            self._leftover = bytes(buf[HANDSHAKE_SIZE:])
            buf.clear()
            self._done = True
        return out


class ClientHandshake:
    """Client side, for tests and the fuzzer: `start()` gives C0+C1, `feed` answers
    S1 with C2 and finishes after S2. Does not require S2 to echo C1 (see
    `s2_echoes_c1`)."""

    def __init__(
        self,
        *,
        timestamp: int = 0,
        random_bytes: bytes | None = None,
        version: int = RTMP_VERSION,
    ) -> None:
        self._version = version
        self._c1 = _make_signature(timestamp, random_bytes)
        self._buf = bytearray()
        self._started = False
        self._replied = False
        self._done = False
        self._leftover = b""
        self.s2_echoes_c1 = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def leftover(self) -> bytes:
        return self._leftover

    def start(self) -> bytes:
        """C0+C1; call once, before `feed`."""
        if self._started:
            raise RuntimeError("handshake already started")
        self._started = True
        return bytes((self._version,)) + self._c1

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Bytes to send now (C2 once S1 is in, else b"")."""
        if not self._started:
            raise RuntimeError("call start() first")
        if self._done:
            raise RuntimeError("handshake already done; feed the chunk reader instead")
        buf = self._buf
        buf += data
        out = b""
        if not self._replied:
            if not buf:
                return out
            _check_version(buf[0])
            if len(buf) < 1 + HANDSHAKE_SIZE:
                return out
            out = bytes(buf[1 : 1 + HANDSHAKE_SIZE])
            del buf[: 1 + HANDSHAKE_SIZE]
            self._replied = True
        if len(buf) >= HANDSHAKE_SIZE:
            self.s2_echoes_c1 = buf[8:HANDSHAKE_SIZE] == self._c1[8:]
            self._leftover = bytes(buf[HANDSHAKE_SIZE:])
            buf.clear()
            self._done = True
        return out
