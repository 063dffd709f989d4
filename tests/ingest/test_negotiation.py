"""Command negotiation on one connection, without a server: bytes go into an
`RtmpConnection` through a transport of our own, and its replies are read back.

The way gortmplib tests its ServerConn alone: what a publisher sends, what the server
answers, and how the connection ends, with nothing but the connection, a fake gatekeeper
and a recording sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ingest.connection import ConnectionLimits, RtmpConnection
from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal
from ingest.protocol import (
    ChunkReader,
    ChunkWriter,
    Command,
    LimitType,
    Message,
    SetChunkSize,
    SetPeerBandwidth,
    UserControl,
    UserControlEvent,
    WindowAckSize,
    decode_command,
    decode_control,
    encode_command,
)
from ingest.protocol.handshake import ClientHandshake
from ingest.sink import RecordingSink
from ingest.throttle import FailedKeyThrottle
from tests.ingest.harness import FakeGatekeeper

T = TypeVar("T")
PEER = ("203.0.113.7", 50123)
KEY = "live_4f9c2e7d"
FAST = ConnectionLimits(failed_key_delay=0.0)
KEYFRAME = Message(6, 9, 1, 0, bytes([0x17, 1, 0, 0, 0]) + b"\x00\x00\x00\x02\x65\x88")


class FakeTransport:
    """What the connection sees of its socket: what it writes is kept; abort closes."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.aborted = False
        self.reading = True
        self.protocol: RtmpConnection | None = None

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after the socket closed"
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        if not self.closing:
            self.closing = self.aborted = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": PEER}.get(name, default)


@dataclass
class Peer:
    """The publisher's end: sends chunked messages, reads back what the server wrote."""

    connection: RtmpConnection
    transport: FakeTransport
    sinks: list[RecordingSink]
    tasks: list[asyncio.Task[None]]
    writer: ChunkWriter = field(default_factory=ChunkWriter)
    reader: ChunkReader = field(default_factory=ChunkReader)
    read: int = 0
    received: list[Message] = field(default_factory=list)

    def shake(self) -> None:
        client = ClientHandshake()
        self.connection.data_received(client.start())
        c2 = client.feed(bytes(self.transport.written))
        assert client.done
        self.read = len(self.transport.written)
        self.connection.data_received(c2)

    def send(self, *messages: Message) -> None:
        self.connection.data_received(b"".join(self.writer.encode(m) for m in messages))

    def replies(self) -> list[Message]:
        """Every message the server has written since the handshake."""
        fresh = bytes(self.transport.written[self.read :])
        self.read = len(self.transport.written)
        self.received.extend(self.reader.feed(fresh))
        return self.received

    def commands(self) -> list[Command]:
        return [decode_command(m.payload) for m in self.replies() if m.type_id == 20]

    async def until(self, condition: Callable[[], bool], limit: float = 3.0) -> None:
        """Lets the connection's task run until ``condition()`` holds."""
        async with asyncio.timeout(limit):
            while not condition():  # noqa: ASYNC110 (the condition is the server's output)
                await asyncio.sleep(0.002)

    async def finished(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.tasks), 5)


def command(name: str, txn: float, obj: Any = None, *args: Any, stream_id: int = 0) -> Message:
    return Message(3, 20, stream_id, 0, encode_command(name, txn, obj, *args))


CONNECT = command("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live", "type": "nonprivate"})


async def open_connection(
    gatekeeper: FakeGatekeeper,
    limits: ConnectionLimits = FAST,
    on_open: Callable[[RtmpConnection, list[asyncio.Task[None]]], None] | None = None,
    heartbeat_interval: float = 60.0,
) -> Peer:
    sinks: list[RecordingSink] = []
    tasks: list[asyncio.Task[None]] = []

    def sink_factory(grant: Grant) -> RecordingSink:
        sinks.append(RecordingSink(grant))
        return sinks[-1]

    def serve(connection: RtmpConnection) -> None:
        if on_open is not None:
            on_open(connection, tasks)
        else:
            tasks.append(asyncio.ensure_future(connection.run()))

    connection = RtmpConnection(
        node="test",
        gatekeeper=gatekeeper,
        sink_factory=sink_factory,
        throttle=FailedKeyThrottle(),
        limits=limits,
        allowed_apps=frozenset({"live"}),
        heartbeat_interval=heartbeat_interval,
        on_open=serve,
    )
    transport = FakeTransport()
    transport.protocol = connection
    connection.connection_made(transport)  # type: ignore[arg-type]
    return Peer(connection, transport, sinks, tasks)


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


async def publishing(gatekeeper: FakeGatekeeper, limits: ConnectionLimits = FAST) -> Peer:
    """A connection that has gone through ffmpeg's sequence and is publishing."""
    peer = await open_connection(gatekeeper, limits)
    peer.shake()
    peer.send(
        CONNECT,
        command("releaseStream", 2.0, None, KEY),
        command("FCPublish", 3.0, None, KEY),
        command("createStream", 4.0),
    )
    await peer.until(lambda: any(c.transaction_id == 4.0 for c in peer.commands()))
    peer.send(command("publish", 5.0, None, KEY, "live", stream_id=1))
    await peer.until(lambda: any(c.name == "onFCPublish" for c in peer.commands()))
    return peer


def statuses(peer: Peer) -> list[tuple[str, str]]:
    found = []
    for c in peer.commands():
        if c.name == "onStatus" and c.args and isinstance(c.args[0], dict):
            found.append((str(c.args[0]["code"]), str(c.args[0]["description"])))
    return found


def test_connect_is_answered_with_window_bandwidth_chunk_size_and_fourccs() -> None:
    async def scenario() -> list[Message]:
        peer = await open_connection(FakeGatekeeper())
        peer.shake()
        peer.send(CONNECT)
        await peer.until(lambda: any(c.name == "_result" for c in peer.commands()))
        return peer.replies()

    replies = run(scenario)

    controls = [decode_control(m.type_id, m.payload) for m in replies if m.type_id < 7]
    assert controls == [
        WindowAckSize(2_500_000),
        SetPeerBandwidth(2_500_000, LimitType.DYNAMIC),
        SetChunkSize(4096),
    ]
    result = decode_command(replies[-1].payload)
    assert (result.name, result.transaction_id) == ("_result", 1.0)
    assert isinstance(result.command_object, dict)
    assert result.command_object["fourCcList"] == ["av01", "vp09", "hvc1", "avc1"]
    info = result.args[0]
    assert isinstance(info, dict)
    assert info["code"] == "NetConnection.Connect.Success"
    assert info["objectEncoding"] == 0.0


def test_ffmpegs_sequence_is_answered_in_order_and_publishes_after_admission() -> None:
    gatekeeper = FakeGatekeeper(keys={KEY: "alice"})

    async def scenario() -> tuple[Peer, Grant | None]:
        peer = await publishing(gatekeeper)
        peer.send(KEYFRAME)
        return peer, peer.connection.grant

    peer, grant = run(scenario)

    answers = [(c.name, c.transaction_id) for c in peer.commands()]
    assert answers == [
        ("_result", 1.0), ("_result", 2.0), ("_result", 3.0), ("_result", 4.0),
        ("onStatus", 0.0), ("onFCPublish", 0.0),
    ]
    assert peer.commands()[3].args == (1.0,), "createStream gives stream 1"
    begin = [m for m in peer.replies() if m.type_id == 4]
    assert [decode_control(4, m.payload) for m in begin] == [
        UserControl(UserControlEvent.STREAM_BEGIN, 1)
    ]
    assert statuses(peer) == [("NetStream.Publish.Start", "alice is now live.")]
    assert gatekeeper.admitted == [Grant(1, "alice")]
    assert grant == Grant(1, "alice")
    assert peer.sinks[0].video_frames == 1
    assert KEY.encode() not in peer.transport.written, "the key is never echoed"


def test_a_wrong_key_gets_its_sentence_and_the_connection_ends() -> None:
    gatekeeper = FakeGatekeeper(keys={KEY: "alice"})

    async def scenario() -> Peer:
        peer = await open_connection(gatekeeper)
        peer.shake()
        peer.send(CONNECT, command("createStream", 2.0))
        peer.send(command("publish", 3.0, None, "guess", "live", stream_id=1))
        await peer.finished()
        return peer

    peer = run(scenario)

    assert statuses(peer) == [("NetStream.Publish.BadName", "Unknown stream key.")]
    assert peer.connection.ending is not None
    assert peer.connection.ending.reason is EndReason.PROTOCOL_ERROR
    assert peer.transport.aborted
    assert not gatekeeper.released, "nothing was admitted, nothing is released"


def test_an_unknown_application_is_rejected() -> None:
    async def scenario() -> Peer:
        peer = await open_connection(FakeGatekeeper())
        peer.shake()
        peer.send(command("connect", 1.0, {"app": "vod"}))
        await peer.finished()
        return peer

    peer = run(scenario)

    (error,) = peer.commands()
    assert error.name == "_error"
    assert isinstance(error.args[0], dict)
    assert error.args[0]["code"] == "NetConnection.Connect.Rejected"
    assert peer.connection.ending is not None
    assert peer.connection.ending.why == "unknown application"
    assert peer.transport.aborted


def test_a_command_before_connect_ends_the_connection_unanswered() -> None:
    async def scenario() -> Peer:
        peer = await open_connection(FakeGatekeeper())
        peer.shake()
        peer.send(command("createStream", 1.0))
        await peer.finished()
        return peer

    peer = run(scenario)

    assert peer.commands() == []
    assert peer.connection.ending is not None
    assert peer.connection.ending.reason is EndReason.PROTOCOL_ERROR


def test_play_is_refused_with_a_sentence() -> None:
    async def scenario() -> Peer:
        peer = await open_connection(FakeGatekeeper())
        peer.shake()
        peer.send(CONNECT, command("createStream", 2.0))
        peer.send(command("play", 3.0, None, "alice", stream_id=1))
        await peer.finished()
        return peer

    peer = run(scenario)

    assert statuses(peer) == [
        ("NetStream.Play.Failed", "golive does not play over RTMP: watch in the browser.")
    ]


def test_reading_pauses_while_a_publish_waits_for_the_platform() -> None:
    @dataclass
    class SlowGatekeeper(FakeGatekeeper):
        async def admit(self, request: PublishRequest) -> Grant | Refusal:
            await asyncio.sleep(0.2)
            return await super().admit(request)

    async def scenario() -> tuple[bool, bool, int]:
        peer = await open_connection(SlowGatekeeper(keys={KEY: "alice"}))
        peer.shake()
        peer.send(CONNECT, command("createStream", 2.0))
        await peer.until(lambda: len(peer.commands()) == 2)
        # The publish and a frame in one read: the frame waits behind the admission.
        peer.send(command("publish", 3.0, None, KEY, "live", stream_id=1), KEYFRAME)
        await asyncio.sleep(0.05)
        paused = not peer.transport.reading
        await peer.until(lambda: any(c.name == "onFCPublish" for c in peer.commands()))
        return paused, peer.transport.reading, peer.sinks[0].video_frames

    paused, reading_after, frames = run(scenario)

    assert paused
    assert reading_after
    assert frames == 1, "the frame behind the publish is kept"


def test_fcunpublish_ends_the_publish_and_the_connection_may_publish_again() -> None:
    gatekeeper = FakeGatekeeper(keys={KEY: "alice"})

    async def scenario() -> tuple[Peer, list[Any], Grant | None]:
        peer = await publishing(gatekeeper)
        peer.send(KEYFRAME, command("FCUnpublish", 6.0, None, KEY))
        await peer.until(lambda: len(statuses(peer)) == 2)
        peer.send(command("createStream", 7.0))
        peer.send(command("publish", 8.0, None, KEY, "live", stream_id=1))
        await peer.until(lambda: len(statuses(peer)) == 3)
        return peer, list(gatekeeper.released), peer.connection.grant

    peer, released, grant = run(scenario)

    assert [code for code, _ in statuses(peer)] == [
        "NetStream.Publish.Start", "NetStream.Unpublish.Success", "NetStream.Publish.Start"
    ]
    assert [(g.session_id, reason) for g, reason, _, _ in released] == [
        (1, EndReason.PUBLISHER_STOPPED)
    ]
    assert released[0][3].video_frames == 1
    assert grant == Grant(2, "alice"), "the connection stayed and published again"


def test_an_orderly_close_answers_what_came_before_it_then_ends_once() -> None:
    gatekeeper = FakeGatekeeper(keys={KEY: "alice"})

    async def scenario() -> Peer:
        peer = await publishing(gatekeeper)
        peer.send(
            KEYFRAME,
            command("FCUnpublish", 6.0, None, KEY),
            command("deleteStream", 7.0, None, 1.0),
        )
        peer.connection.eof_received()
        await peer.finished()
        return peer

    peer = run(scenario)

    assert statuses(peer)[-1][0] == "NetStream.Unpublish.Success"
    assert [reason for _, reason, _, _ in gatekeeper.released] == [EndReason.PUBLISHER_STOPPED]
    assert peer.connection.ending is not None
    assert peer.connection.ending.reason is EndReason.PUBLISHER_STOPPED


def test_ending_is_one_path_whoever_asks_and_the_first_reason_stands() -> None:
    gatekeeper = FakeGatekeeper(keys={KEY: "alice"})

    async def scenario() -> Peer:
        peer = await publishing(gatekeeper)
        peer.connection.end(EndReason.FORCE_STOPPED, "stopped by an admin")
        peer.connection.end(EndReason.SERVER_SHUTDOWN, "server shutting down")
        peer.connection.data_received(b"\xff" * 100)  # after the end: ignored
        await peer.finished()
        peer.connection.end(EndReason.NO_MEDIA, "too late")
        return peer

    peer = run(scenario)

    assert peer.transport.aborted
    assert peer.connection.ending is not None
    assert peer.connection.ending.why == "stopped by an admin"
    assert [reason for _, reason, _, _ in gatekeeper.released] == [EndReason.FORCE_STOPPED]
    assert peer.sinks[0].ended is EndReason.FORCE_STOPPED


def test_a_connection_refused_at_accept_is_closed_with_no_task() -> None:
    def refuse(connection: RtmpConnection, tasks: list[asyncio.Task[None]]) -> None:
        connection.end(EndReason.CONNECTION_LOST, "refused: too many connections")

    async def scenario() -> Peer:
        peer = await open_connection(FakeGatekeeper(), on_open=refuse)
        peer.connection.data_received(b"\x03" + bytes(1536))
        await asyncio.sleep(0.01)
        return peer

    peer = run(scenario)

    assert peer.tasks == []
    assert peer.transport.aborted
    assert peer.transport.written == b"", "not even a handshake reply"


def test_garbage_after_the_handshake_ends_as_a_protocol_error() -> None:
    async def scenario() -> Peer:
        peer = await open_connection(FakeGatekeeper())
        peer.shake()
        peer.connection.data_received(bytes([0xC5]) + bytes(64))  # type 3 opens a stream
        await peer.finished()
        return peer

    peer = run(scenario)

    assert peer.connection.ending is not None
    assert peer.connection.ending.reason is EndReason.PROTOCOL_ERROR
    assert peer.connection.ending.why.startswith("protocol error:")


def test_a_handshake_that_stalls_ends_at_its_deadline() -> None:
    async def scenario() -> Peer:
        limits = ConnectionLimits(handshake_timeout=0.05)
        peer = await open_connection(FakeGatekeeper(), limits)
        peer.connection.data_received(b"\x03" + bytes(100))
        await peer.finished()
        return peer

    peer = run(scenario)

    assert peer.connection.ending is not None
    assert peer.connection.ending.why == "handshake not completed in time"


def test_the_platform_answering_stop_at_a_heartbeat_ends_the_connection() -> None:
    gatekeeper = FakeGatekeeper(keys={KEY: "alice"}, stop_channels={"alice"})

    async def scenario() -> Peer:
        peer = await open_connection(gatekeeper, heartbeat_interval=0.02)
        peer.shake()
        peer.send(CONNECT, command("createStream", 2.0))
        peer.send(command("publish", 3.0, None, KEY, "live", stream_id=1))
        await peer.finished()
        return peer

    peer = run(scenario)

    assert peer.connection.ending is not None
    assert peer.connection.ending.reason is EndReason.FORCE_STOPPED
    assert [reason for _, reason, _, _ in gatekeeper.released] == [EndReason.FORCE_STOPPED]

