"""Bad peers: each one loses its own connection and nothing else."""

from __future__ import annotations

import itertools
import os
import socket
import time

import pytest

from ingest.connection import ConnectionLimits
from ingest.gatekeeper import EndReason
from ingest.protocol import ChunkLimits, Message, WindowAckSize, encode_control
from ingest.server import IngestConfig
from tests.ingest.clients import RawPublisher, ffmpeg_publish
from tests.ingest.harness import EVENT_LOOPS, FakeGatekeeper

pytestmark = pytest.mark.parametrize("loop_thread", list(EVENT_LOOPS), indirect=True)

FAST = ConnectionLimits(handshake_timeout=0.5, publish_timeout=1.0, media_timeout=1.0)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def released_reason(gatekeeper: FakeGatekeeper, timeout: float = 5.0) -> EndReason:
    deadline = time.monotonic() + timeout
    while not gatekeeper.released and time.monotonic() < deadline:
        time.sleep(0.02)
    return gatekeeper.released[0][1]


def still_serves(ingest, key: str = "good") -> None:
    """A real client can still publish: the server survived whatever came before."""
    ingest.gatekeeper.keys[key] = key
    result = ffmpeg_publish(ingest.url(key), frames=30)
    assert result.returncode == 0, result.stderr
    assert ingest.sink_for(key).video_frames == 30


def test_a_stalled_handshake_is_closed_at_its_deadline(start_ingest) -> None:
    ingest = start_ingest(config=IngestConfig(node="t", limits=FAST))
    started = time.monotonic()
    with socket.create_connection((ingest.host, ingest.port)) as sock:
        sock.sendall(b"\x03" + b"\x00" * 100)  # C0 and a sliver of C1, then nothing
        assert closed_within(sock, 5)
    assert 0.4 < time.monotonic() - started < 3
    still_serves(ingest)


def test_a_wrong_handshake_version_is_closed(start_ingest) -> None:
    ingest = start_ingest(config=IngestConfig(node="t", limits=FAST))
    with socket.create_connection((ingest.host, ingest.port)) as sock:
        sock.sendall(b"\x06" + os.urandom(1536))
        assert closed_within(sock, 2)


def test_garbage_after_the_handshake_is_closed_and_others_keep_going(start_ingest) -> None:
    ingest = start_ingest(config=IngestConfig(node="t", limits=FAST))
    ingest.gatekeeper.keys["live1"] = "running"
    running = ffmpeg_publish(ingest.url("live1"), frames=90, realtime=True, background=True)
    for _ in range(20):
        client = RawPublisher(ingest.host, ingest.port)
        client.handshake()
        client.sock.sendall(os.urandom(4096))
        assert client.closed_by_server(3)
        client.close()
    _, stderr = running.communicate(timeout=30)
    assert running.returncode == 0, stderr
    assert ingest.sink_for("running").video_frames == 90


def test_no_publish_in_time_is_closed(start_ingest) -> None:
    ingest = start_ingest(config=IngestConfig(node="t", limits=FAST))
    client = RawPublisher(ingest.host, ingest.port)
    client.handshake()
    client.command("connect", 1.0, {"app": "live"})
    assert client.closed_by_server(4)


def test_a_publisher_that_goes_silent_ends_as_no_media(start_ingest) -> None:
    ingest = start_ingest(FakeGatekeeper(keys={"k": "quiet"}), IngestConfig(node="t", limits=FAST))
    client = RawPublisher(ingest.host, ingest.port)
    client.connect_and_publish("k")
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    assert client.closed_by_server(5)
    assert released_reason(ingest.gatekeeper) is EndReason.NO_MEDIA


def test_an_unknown_application_is_rejected_at_connect(start_ingest) -> None:
    ingest = start_ingest()
    client = RawPublisher(ingest.host, ingest.port)
    client.handshake()
    client.command("connect", 1.0, {"app": "admin"})
    assert client.read_until(lambda cmds: any(c.name == "_error" for c in cmds))
    assert client.closed_by_server()


def test_connections_over_the_per_address_cap_are_closed_at_once(start_ingest) -> None:
    ingest = start_ingest(config=IngestConfig(node="t", max_connections_per_ip=2))
    held = [socket.create_connection((ingest.host, ingest.port)) for _ in range(2)]
    time.sleep(0.2)
    with socket.create_connection((ingest.host, ingest.port)) as third:
        assert closed_within(third, 2)
    for sock in held:
        sock.close()
    time.sleep(0.2)
    still_serves(ingest)  # places free up when connections close


def test_a_header_announcing_an_oversized_message_is_refused(start_ingest) -> None:
    ingest = start_ingest(
        config=IngestConfig(
            node="t", limits=ConnectionLimits(chunk=ChunkLimits(max_message_size=1 << 20))
        )
    )
    client = RawPublisher(ingest.host, ingest.port)
    client.handshake()
    # fmt 0 header on csid 4: length 0xFFFFFF (16 MiB), video; no body follows.
    client.sock.sendall(bytes([0x04, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]))
    assert client.closed_by_server(3)
    still_serves(ingest)


def test_chunk_size_16_mib_carries_a_large_keyframe(start_ingest) -> None:
    ingest = start_ingest(FakeGatekeeper(keys={"k": "big"}))
    client = RawPublisher(ingest.host, ingest.port)
    client.connect_and_publish("k")
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    client.set_chunk_size(16 * 1024 * 1024)
    # An AVC keyframe of 3 MiB in one chunk (OBS at high bitrates sends over 1 MiB).
    body = (
        bytes([0x17, 1, 0, 0, 0])
        + (3 * 1024 * 1024 - 4).to_bytes(4, "big")
        + bytes(3 * 1024 * 1024 - 4)
    )
    client.send(9, body, csid=6, stream_id=1, timestamp=0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (ingest.sinks and ingest.sinks[0].video_frames):
        time.sleep(0.05)
    assert ingest.sinks[0].video_frames == 1
    client.close()


def test_a_flood_of_one_byte_chunks_is_cut_off_by_the_parse_budget(start_ingest) -> None:
    ingest = start_ingest(
        FakeGatekeeper(keys={"k": "flood"}),
        IngestConfig(node="t", limits=ConnectionLimits(max_chunks_per_second=2000)),
    )
    client = RawPublisher(ingest.host, ingest.port)
    client.connect_and_publish("k")
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    client.set_chunk_size(1)
    frame = bytes([0x27, 1, 0, 0, 0]) + bytes(995)
    closed = False
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            client.send(9, frame, csid=6, stream_id=1)
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    assert closed
    assert released_reason(ingest.gatekeeper) is EndReason.PROTOCOL_ERROR


def test_the_server_acknowledges_every_window_the_publisher_asks_for(start_ingest) -> None:
    ingest = start_ingest(FakeGatekeeper(keys={"k": "acks"}))
    client = RawPublisher(ingest.host, ingest.port)
    client.connect_and_publish("k")
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    client.sock.sendall(client.writer.encode(encode_control(WindowAckSize(10_000))))
    for index in range(10):
        client.send(
            9, bytes([0x27, 1, 0, 0, 0]) + bytes(5000), csid=6, stream_id=1, timestamp=index * 33
        )
        time.sleep(0.05)  # separate reads: one acknowledgement per window crossed
    client.sock.settimeout(2)
    acks = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(acks) < 4:
        try:
            data = client.sock.recv(65536)
        except TimeoutError:
            break
        client._take(data)
        acks = [m for m in client.received if m.type_id == 3]
    assert len(acks) >= 4
    values = [int.from_bytes(m.payload, "big") for m in acks]
    assert all(later - earlier >= 10_000 for earlier, later in itertools.pairwise(values))
    client.close()


def test_a_publisher_the_platform_stops_is_dropped_within_two_seconds(start_ingest) -> None:
    gatekeeper = FakeGatekeeper(keys={"k": "stopme"})
    ingest = start_ingest(gatekeeper, IngestConfig(node="t", heartbeat_interval=0.5))
    running = ffmpeg_publish(ingest.url("k"), frames=600, realtime=True, background=True)
    deadline = time.monotonic() + 10
    while not gatekeeper.admitted and time.monotonic() < deadline:
        time.sleep(0.05)
    gatekeeper.stop_channels.add("stopme")
    stopped_at = time.monotonic()
    running.communicate(timeout=10)
    assert time.monotonic() - stopped_at < 2.5
    assert released_reason(gatekeeper) is EndReason.FORCE_STOPPED


def test_media_before_publish_is_dropped_not_buffered(start_ingest) -> None:
    ingest = start_ingest(FakeGatekeeper(keys={"k": "early"}))
    client = RawPublisher(ingest.host, ingest.port)
    client.handshake()
    client.command("connect", 1.0, {"app": "live"})
    for _ in range(50):
        client.send(9, bytes([0x17, 1, 0, 0, 0]) + bytes(10_000), csid=6, stream_id=1)
    client.command("createStream", 2.0)
    client.command("publish", 3.0, None, "k", "live", stream_id=1)
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    time.sleep(0.2)
    assert ingest.sinks[0].video_frames == 0
    client.close()


def test_message_stream_ids_and_timestamps_survive_the_32_bit_wrap(start_ingest) -> None:
    ingest = start_ingest(FakeGatekeeper(keys={"k": "wrap"}))
    ingest.sinks.clear()
    client = RawPublisher(ingest.host, ingest.port)
    client.connect_and_publish("k")
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    start = (1 << 32) - 100
    for index in range(10):
        timestamp = (start + index * 33) & 0xFFFFFFFF
        client.sock.sendall(
            client.writer.encode(
                Message(
                    6, 9, 1, timestamp, bytes([0x27 if index else 0x17, 1, 0, 0, 0]) + bytes(100)
                )
            )
        )
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and ingest.sinks[0].video_frames < 10:
        time.sleep(0.05)
    sink = ingest.sinks[0]
    assert sink.video_frames == 10
    assert sink.last_timestamp - sink.first_timestamp == 9 * 33
    client.close()


@pytest.mark.parametrize("reply", [b"", b"\x03"])
def test_a_client_that_closes_mid_handshake_costs_nothing(start_ingest, reply) -> None:
    ingest = start_ingest()
    for _ in range(50):
        with socket.create_connection((ingest.host, ingest.port)) as sock:
            sock.sendall(reply)
    time.sleep(0.3)
    assert ingest.server.connections == []
