"""The connection as the event loop's protocol: media is handled as it arrives, commands in
the connection's task, and nothing overtakes a command."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass, field, replace

import pytest

from ingest.connection import ConnectionLimits
from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth
from ingest.protocol import Message, encode_command
from ingest.server import IngestConfig
from tests.ingest.clients import RawPublisher
from tests.ingest.harness import EVENT_LOOPS, FakeGatekeeper, RunningIngest

pytestmark = pytest.mark.parametrize("loop_thread", list(EVENT_LOOPS), indirect=True)

FAST = ConnectionLimits(handshake_timeout=0.5, publish_timeout=1.0, media_timeout=1.0)


@dataclass
class SlowGatekeeper(FakeGatekeeper):
    """Takes `admit_seconds` to answer a publish, as a busy database might."""

    admit_seconds: float = 0.0

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        await asyncio.sleep(self.admit_seconds)
        return await super().admit(request)


def video_frame(index: int) -> Message:
    key = index == 0
    return Message(6, 9, 1, index * 33, bytes([0x17 if key else 0x27, 1, 0, 0, 0]) + bytes(2000))


def publish_command(key: str) -> Message:
    return Message(3, 20, 1, 0, encode_command("publish", 5.0, None, key, "live"))


def created_stream(client: RawPublisher) -> None:
    client.handshake()
    client.command("connect", 1.0, {"app": "live"})
    client.command("createStream", 2.0, None)
    assert client.read_until(
        lambda cmds: any(c.name == "_result" and c.transaction_id == 2.0 for c in cmds)
    )


def wait_for_frames(ingest: RunningIngest, count: int, limit: float = 5.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if ingest.sinks and ingest.sinks[0].video_frames >= count:
            break
        time.sleep(0.02)
    return ingest.sinks[0].video_frames if ingest.sinks else 0


def released(gatekeeper: FakeGatekeeper, limit: float = 5.0) -> EndReason | None:
    deadline = time.monotonic() + limit
    while not gatekeeper.released and time.monotonic() < deadline:
        time.sleep(0.02)
    return gatekeeper.released[0][1] if gatekeeper.released else None


def test_media_sent_right_behind_publish_waits_for_the_admission_and_is_kept(
    start_ingest,
) -> None:
    ingest = start_ingest(SlowGatekeeper(keys={"k": "eager"}, admit_seconds=0.3))
    client = RawPublisher(ingest.host, ingest.port)
    created_stream(client)
    # One write: the publish, then frames the server reads before the gatekeeper answers.
    burst = [publish_command("k"), *(video_frame(i) for i in range(10))]
    client.sock.sendall(b"".join(client.writer.encode(m) for m in burst))
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    assert wait_for_frames(ingest, 10) == 10
    client.close()


def test_a_slow_admission_does_not_count_against_the_publish_deadline(start_ingest) -> None:
    gatekeeper = SlowGatekeeper(keys={"k": "slowdb"}, admit_seconds=1.5)
    ingest = start_ingest(gatekeeper, IngestConfig(node="t", limits=FAST))
    client = RawPublisher(ingest.host, ingest.port)
    created_stream(client)
    client.sock.sendall(client.writer.encode(publish_command("k")))
    assert client.read_until(
        lambda cmds: any(c.name == "onStatus" and "Start" in str(c.args) for c in cmds)
    )
    for index in range(5):
        client.sock.sendall(client.writer.encode(video_frame(index)))
    assert wait_for_frames(ingest, 5) == 5
    assert not gatekeeper.released
    client.close()


def test_commands_then_a_close_in_one_write_are_all_answered(start_ingest) -> None:
    # GStreamer's rtmp2sink ends with FCUnpublish and deleteStream right before its FIN.
    gatekeeper = FakeGatekeeper(keys={"k": "tidy"})
    ingest = start_ingest(gatekeeper)
    client = RawPublisher(ingest.host, ingest.port)
    client.connect_and_publish("k")
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    ending = [
        video_frame(0),
        Message(3, 20, 0, 0, encode_command("FCUnpublish", 6.0, None, "k")),
        Message(3, 20, 0, 0, encode_command("deleteStream", 7.0, None, 1.0)),
    ]
    client.sock.sendall(b"".join(client.writer.encode(m) for m in ending))
    client.sock.shutdown(socket.SHUT_WR)
    assert client.read_until(
        lambda cmds: any("Unpublish.Success" in str(c.args) for c in cmds), limit=5
    )
    assert released(gatekeeper) is EndReason.PUBLISHER_STOPPED
    assert gatekeeper.released[0][3].video_frames == 1
    assert client.closed_by_server(5)
    client.close()


def test_a_publisher_silent_after_a_slow_admission_still_ends_as_no_media(start_ingest) -> None:
    gatekeeper = SlowGatekeeper(keys={"k": "mute"}, admit_seconds=0.5)
    ingest = start_ingest(gatekeeper, IngestConfig(node="t", limits=FAST))
    client = RawPublisher(ingest.host, ingest.port)
    client.connect_and_publish("k")
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    started = time.monotonic()
    assert client.closed_by_server(5)
    assert 0.8 < time.monotonic() - started < 3
    assert released(gatekeeper) is EndReason.NO_MEDIA


def test_an_unpublish_right_before_a_reset_still_ends_the_publish_in_order(start_ingest) -> None:
    # ffmpeg closes with unread bytes in its socket, which sends a reset right behind its
    # FCUnpublish: the bytes that came before the reset are still the publisher's word.
    gatekeeper = FakeGatekeeper(keys={"k": "abrupt"})
    ingest = start_ingest(gatekeeper)
    client = RawPublisher(ingest.host, ingest.port)
    client.connect_and_publish("k")
    # Everything the server says to a publish read, so it writes nothing into the reset.
    assert client.read_until(lambda cmds: any(c.name == "onFCPublish" for c in cmds))
    ending = [
        video_frame(0),
        Message(3, 20, 0, 0, encode_command("FCUnpublish", 6.0, None, "k")),
    ]
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # all sent at once
    client.sock.sendall(b"".join(client.writer.encode(m) for m in ending))
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert released(gatekeeper) is EndReason.PUBLISHER_STOPPED
    assert gatekeeper.released[0][3].video_frames == 1


@dataclass
class UpgradingGatekeeper(FakeGatekeeper):
    """Admits source-only; once a channel is in `upgraded`, its heartbeats are answered
    with the same grant, transcoded (a slot freed)."""

    upgraded: set[str] = field(default_factory=set)

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        grant = await super().admit(request)
        if isinstance(grant, Grant):
            grant = replace(grant, transcode=False)
            self.admitted[-1] = grant
        return grant

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool | Grant:
        await super().heartbeat(grant, description, health)
        return replace(grant, transcode=True) if grant.channel in self.upgraded else True


def test_new_terms_in_a_heartbeats_answer_reach_the_sink_and_the_release(start_ingest) -> None:
    gatekeeper = UpgradingGatekeeper(keys={"k": "later"})
    ingest = start_ingest(gatekeeper, IngestConfig(node="t", heartbeat_interval=0.2))
    client = RawPublisher(ingest.host, ingest.port)
    created_stream(client)
    client.sock.sendall(client.writer.encode(publish_command("k")))
    assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
    for index in range(3):
        client.sock.sendall(client.writer.encode(video_frame(index)))
    assert wait_for_frames(ingest, 3) == 3
    sink = ingest.sinks[0]
    assert not sink.grant.transcode

    gatekeeper.upgraded.add("later")
    deadline = time.monotonic() + 3
    while not sink.regrants and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [g.transcode for g in sink.regrants] == [True]
    assert sink.regrants[0].session_id == gatekeeper.admitted[0].session_id
    time.sleep(0.5)  # more heartbeats: the same terms are not told again
    assert len(sink.regrants) == 1
    assert gatekeeper.heartbeats[-1][0].transcode  # the heartbeats carry the new terms
    client.close()
    assert released(gatekeeper) is not None
    assert gatekeeper.released[0][0].transcode  # and so does the release
