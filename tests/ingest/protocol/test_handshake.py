from __future__ import annotations

import pytest

from ingest.protocol.errors import ProtocolError
from ingest.protocol.handshake import (
    ACCEPTED_VERSIONS,
    HANDSHAKE_SIZE,
    ClientHandshake,
    ServerHandshake,
)

RANDOM = bytes(range(256)) * 5 + bytes(range(248))


def test_server_answers_c0_c1_with_s0_s1_s2_echoing_c1() -> None:
    client = ClientHandshake(timestamp=7, random_bytes=RANDOM)
    server = ServerHandshake(timestamp=99)
    c0c1 = client.start()

    reply = server.feed(c0c1)

    assert len(reply) == 1 + 2 * HANDSHAKE_SIZE
    assert reply[0] == 3
    assert reply[1 + HANDSHAKE_SIZE :] == c0c1[1:]
    assert reply[1:5] == (99).to_bytes(4, "big")
    assert reply[5:9] == bytes(4), "zero version tells digest clients this is the simple form"


def test_client_and_server_complete_and_hand_over_the_chunk_stream_bytes() -> None:
    client = ClientHandshake()
    server = ServerHandshake()

    s0s1s2 = server.feed(client.start())
    c2 = client.feed(s0s1s2 + b"server-chunks")
    assert server.feed(c2 + b"client-chunks") == b""

    assert client.done
    assert server.done
    assert client.leftover == b"server-chunks"
    assert server.leftover == b"client-chunks"
    assert client.s2_echoes_c1
    assert server.c2_echoes_s1


def test_server_accepts_a_c2_that_does_not_echo_s1() -> None:
    server = ServerHandshake()
    server.feed(ClientHandshake().start())

    server.feed(b"\x00" * HANDSHAKE_SIZE)

    assert server.done
    assert not server.c2_echoes_s1


def test_server_waits_for_all_of_c1_before_answering() -> None:
    server = ServerHandshake()
    c0c1 = ClientHandshake().start()

    assert server.feed(c0c1[:1000]) == b""
    assert len(server.feed(c0c1[1000:])) == 1 + 2 * HANDSHAKE_SIZE
    assert not server.done


def test_handshake_fed_one_byte_at_a_time_completes() -> None:
    client = ClientHandshake()
    server = ServerHandshake()
    c0c1 = client.start()
    s0s1s2 = b"".join(server.feed(c0c1[i : i + 1]) for i in range(len(c0c1)))
    c2 = b"".join(client.feed(s0s1s2[i : i + 1]) for i in range(len(s0s1s2)))
    for i in range(len(c2)):
        server.feed(c2[i : i + 1])

    assert client.done
    assert server.done


@pytest.mark.parametrize("version", [0, 6, 8, 9, 255])
def test_version_byte_other_than_3_is_refused_as_soon_as_it_arrives(version: int) -> None:
    assert version not in ACCEPTED_VERSIONS

    with pytest.raises(ProtocolError, match="version"):
        ServerHandshake().feed(bytes((version,)))


def test_client_refuses_a_server_speaking_another_version() -> None:
    client = ClientHandshake()
    client.start()

    with pytest.raises(ProtocolError, match="version"):
        client.feed(b"\x06")


def test_feeding_a_finished_handshake_is_a_programming_error() -> None:
    server = ServerHandshake()
    server.feed(ClientHandshake().start() + bytes(HANDSHAKE_SIZE))

    with pytest.raises(RuntimeError):
        server.feed(b"x")
