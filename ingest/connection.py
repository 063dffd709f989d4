"""One publisher's RTMP connection: handshake, commands as OBS sends them, media out.

The protocol work is done by `ingest.protocol` (pure, over bytes); this layer owns the
socket, the deadlines, the parse budget, the gatekeeper calls and the hand-off to the
media sink. Whatever happens, a connection ends by closing its own socket and, if it was
admitted, releasing its grant exactly once: nothing here can touch another connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import Enum, auto
from typing import NoReturn, cast

from ingest.gatekeeper import (
    EndReason,
    Gatekeeper,
    Grant,
    PublishRequest,
    Refusal,
    RefusalCode,
    StreamDescription,
)
from ingest.health import HealthMeter, StreamHealth
from ingest.protocol import (
    UNDEFINED,
    Acknowledgement,
    AckTracker,
    AmfValue,
    AudioCodec,
    AudioPacketType,
    ChunkLimits,
    ChunkReader,
    ChunkWriter,
    ControlMessage,
    LimitType,
    Message,
    ProtocolError,
    SetChunkSize,
    SetPeerBandwidth,
    UnsupportedFeature,
    UserControl,
    UserControlEvent,
    VideoCodec,
    VideoPacketType,
    WindowAckSize,
    decode_command,
    decode_control,
    decode_data,
    encode_command,
    encode_control,
    find_coded_video,
    is_raw_aac,
    parse_audio,
    parse_video,
)
from ingest.protocol.flv import LEGACY_AAC_HEADER_SIZE, LEGACY_VIDEO_HEADER_SIZE
from ingest.protocol.handshake import ServerHandshake
from ingest.sink import MediaPacket, MediaSink, SinkFactory, TrackKind
from ingest.throttle import FailedKeyThrottle
from transcoder.codecs import CodecConfigError, parse_audio_config, parse_video_config

log = logging.getLogger(__name__)

# The refusal of a publish the platform did not answer in time: it says nothing of the key.
BUSY = "busy"
# Releases of admissions that answered after their publisher was told to retry.
_LATE_RELEASES: set[asyncio.Future[None]] = set()

# Message types (RTMP spec 5.4, 7.1).
AUDIO, VIDEO, DATA_AMF3, COMMAND_AMF3, DATA_AMF0, COMMAND_AMF0, AGGREGATE = 8, 9, 15, 17, 18, 20, 22
CONTROL_TYPES = frozenset({1, 2, 3, 4, 5, 6})
SHARED_OBJECT_TYPES = frozenset({16, 19})
COMMAND_CSID = 3
MEDIA_STREAM_ID = 1
# What the server asks of the peer: acknowledge every 2.5 MB, our chunks are 4 KiB.
SERVER_WINDOW = 2_500_000
SERVER_CHUNK_SIZE = 4096
# Video FourCCs this server takes, advertised in connect's _result (Enhanced RTMP).
FOURCC_LIST = ["av01", "vp09", "hvc1", "avc1"]
_VIDEO_FOURCC = {
    VideoCodec.AVC: "avc1",
    VideoCodec.HEVC: "hvc1",
    VideoCodec.AV1: "av01",
    VideoCodec.VP9: "vp09",
}
_AUDIO_FOURCC = {AudioCodec.AAC: "mp4a", AudioCodec.OPUS: "Opus"}
_AAC = AudioCodec.AAC.value


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits. Times in seconds, sizes in bytes."""

    handshake_timeout: float = 5.0
    publish_timeout: float = 10.0  # from the end of the handshake to an admitted publish
    media_timeout: float = 10.0  # longest silence from an admitted publisher
    # Longest wait for the platform's answer to a publish (not counted against the peer's
    # publish_timeout): past it the publisher is told to retry, not silently dropped.
    admit_timeout: float = 15.0
    write_timeout: float = 10.0
    chunk: ChunkLimits = field(default_factory=ChunkLimits)
    # Parse budget: a sustained chunk rate above this (chunks a second, averaged over
    # ~2 s) closes the connection. OBS at 4 KiB chunks and 20 Mb/s sends ~700 a second.
    max_chunks_per_second: int = 40_000
    max_commands_before_publish: int = 64
    max_streams_per_connection: int = 8
    failed_key_delay: float = 1.0  # the most a failed key is held before its answer
    # Wake for at most ~1/2 of this much media at a time (RtmpConnection._batch_reads). 0.1 s
    # costs viewers ~50 ms and cuts ingest CPU ~2.5x (tests/bench: 0.91 -> 0.37 % a stream).
    read_batch_seconds: float = 0.1


async def _no_takeover(session_id: int) -> bool:
    return False


class _Phase(Enum):
    CONNECTING = auto()
    CONNECTED = auto()
    PUBLISHING = auto()


class _Stop(Exception):
    """Ends the connection with a reason; raised from deep inside message handling."""

    def __init__(self, reason: EndReason, why: str) -> None:
        super().__init__(why)
        self.reason = reason


class RtmpConnection(asyncio.Protocol):
    """One publisher's connection, as the event loop's protocol for its socket.

    Bytes are parsed the moment they arrive (`data_received`), and media goes to the sink
    right there: no task wakes up per read. Commands, which await the gatekeeper or the
    socket, run in the connection's task (`run`), strictly in arrival order: from the first
    command of a read until the task has handled it and what followed it, reading pauses,
    so nothing piles up in memory and nothing overtakes a command. `run` ends the
    connection: by its own socket closing and, if it was admitted, one release.
    """

    def __init__(
        self,
        *,
        node: str,
        gatekeeper: Gatekeeper,
        sink_factory: SinkFactory,
        throttle: FailedKeyThrottle,
        limits: ConnectionLimits,
        allowed_apps: frozenset[str],
        heartbeat_interval: float,
        on_open: Callable[[RtmpConnection], None],
        take_over: Callable[[int], Awaitable[bool]] = _no_takeover,
    ) -> None:
        """`on_open(connection)` is called once the socket is connected and `peer_ip` is
        known; it either starts `run` in a task or calls `refuse`. `take_over(session_id)`
        ends this node's silent publish of that session for a reconnect of the same
        stream, and says whether it did."""
        self.peer_ip = "?"
        self._on_open = on_open
        self._take_over = take_over
        self._node = node
        self._gatekeeper = gatekeeper
        self._sink_factory = sink_factory
        self._throttle = throttle
        self._limits = limits
        self._allowed_apps = allowed_apps
        self._heartbeat_interval = heartbeat_interval
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._handshake: ServerHandshake | None = ServerHandshake(timestamp=0)
        self._handshake_deadline = self._loop.time() + limits.handshake_timeout
        self._chunks = ChunkReader(limits.chunk)
        self._out = ChunkWriter()
        self._ack = AckTracker(SERVER_WINDOW)
        self._phase = _Phase.CONNECTING
        self._publish_deadline = 0.0
        self._app = ""
        self._amf3_client = False
        self._streams_created = 0
        self._commands_seen = 0
        self.grant: Grant | None = None
        self._sink: MediaSink | None = None
        self._health = HealthMeter()
        self._description = StreamDescription()
        self._last_media = 0.0
        self._stop_reason: EndReason | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._budget_start = 0.0
        self._budget_chunks = 0
        self._skipped = 0
        # Messages the task must handle, in order, and whether it is at it (then reading
        # is paused and bytes counted in `_unaccounted` wait for `_account`).
        self._backlog: deque[Message] = deque()
        self._busy = False
        self._unaccounted = 0
        # Why the connection ends, once known: raised in the task when its backlog is done.
        self._ended: Exception | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._watchdog: asyncio.TimerHandle | None = None
        self._now = 0.0  # the event loop's time at the read being handled
        self._received_at = 0.0  # the wall clock at that read, for program-date-time

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        reason = EndReason.CONNECTION_LOST
        try:
            await self._serve()
        except _Stop as stop:
            reason = stop.reason
            log.info("%s: %s", self._label(), stop)
        except ProtocolError as error:
            reason = EndReason.PROTOCOL_ERROR
            log.info("%s: protocol error: %s", self._label(), error)
        except (ConnectionError, OSError):
            reason = EndReason.CONNECTION_LOST
        except asyncio.CancelledError:
            reason = self._stop_reason or EndReason.SERVER_SHUTDOWN
            raise
        finally:
            await self._finish(self._stop_reason or reason)

    def stop(self, reason: EndReason) -> None:
        """Ends the connection from outside (shutdown, force stop). Idempotent."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._end(_Stop(reason, "stopped"))
        self._abort()

    def refuse(self) -> None:
        """Closes a connection that will never be served (no task runs for it)."""
        self._ended = _Stop(EndReason.CONNECTION_LOST, "refused")
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._abort()

    def regrant(self, grant: Grant) -> None:
        """The platform changed the terms of this publish (the same session, e.g. given a
        transcode slot): kept for the heartbeats and the release, told to the sink.
        Ignored for another session or when no longer publishing. Idempotent."""
        current = self.grant
        if current is None or grant.session_id != current.session_id or grant == current:
            return
        self.grant = grant
        log.info("%s: new terms for session %d (transcode %s)", self._label(),
                 grant.session_id, "yes" if grant.transcode else "no")
        if self._sink is not None:
            try:
                self._sink.regrant(grant)
            except Exception:
                log.exception("%s: media sink failed taking new terms", self._label())

    def set_no_delay(self) -> None:
        """Our answers are small and awaited by the publisher: no Nagle delay."""
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def silence(self) -> float:
        """Seconds since the admitted publisher last sent media (or was admitted)."""
        return self._loop.time() - self._last_media

    async def _finish(self, reason: EndReason) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._abort()
        await self._end_publish(reason)

    async def _end_publish(self, reason: EndReason) -> None:
        """Ends the current publish (if any): sink, then the platform. The socket stays."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        grant, self.grant = self.grant, None
        if grant is None:
            return
        self._phase = _Phase.CONNECTED
        if self._sink is not None:
            try:
                self._sink.end(reason)
            except Exception:
                log.exception("%s: media sink failed at end", self._label())
        health = self._health.snapshot(self._loop.time())
        description = self._described()
        # Shielded: the release must reach the platform even when we are being cancelled.
        release = asyncio.ensure_future(
            self._gatekeeper.release(grant, reason, description, health)
        )
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            await asyncio.wait([release], timeout=10)
            raise
        except Exception:
            log.exception("%s: releasing the session failed", self._label())
        log.info(
            "rtmp %s [%s]: publish ended (%s) after %d video frames, %d bytes",
            self.peer_ip,
            grant.channel,
            reason,
            health.video_frames,
            health.bytes_in,
        )
        self._sink = None
        self._health = HealthMeter()
        self._description = StreamDescription()

    def _label(self) -> str:
        channel = self.grant.channel if self.grant else "-"
        return f"rtmp {self.peer_ip} [{channel}]"

    # -- the socket's events (asyncio.Protocol) --------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self._transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        self._arm_watchdog()
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        if self._ended is not None:
            return  # ending: the task closes the socket
        try:
            if self._handshake is not None:
                data = self._shake(data)
                if not data:
                    return
            self._receive(data)
        except Exception as error:  # the task ends the connection and logs what it must
            self._end(error)

    def eof_received(self) -> bool:
        # Half-closed: the task still answers what came before (GStreamer's deleteStream),
        # then closes the socket.
        self._end(_Stop(EndReason.PUBLISHER_STOPPED, "peer closed the connection"), drain=True)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        # What arrived before still counts (an FCUnpublish right before a reset); commands
        # in it that want to answer find the socket gone and end the connection there.
        if exc is None:
            exc = _Stop(EndReason.PUBLISHER_STOPPED, "peer closed the connection")
        self._end(exc, drain=True)
        self._resume_writing_waiter()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        self._resume_writing_waiter()

    # -- reading --------------------------------------------------------------------------

    def _shake(self, data: bytes) -> bytes:
        """Feeds the handshake; returns the bytes after it once it is done, else b""."""
        assert self._handshake is not None
        assert self._transport is not None
        reply = self._handshake.feed(data)
        if reply:
            self._transport.write(reply)
        if not self._handshake.done:
            return b""
        leftover = self._handshake.leftover
        self._handshake = None
        now = self._loop.time()
        self._publish_deadline = now + self._limits.publish_timeout
        self._budget_start = now
        return leftover

    def _receive(self, data: bytes) -> None:
        messages = self._chunks.feed(data)
        self._received_at = time.time()
        if self._busy:
            # A command is being handled (reading was paused, these bytes were on their
            # way): everything waits its turn behind it.
            self._backlog.extend(messages)
            self._unaccounted += len(data)
            return
        self._now = self._loop.time()
        for index, message in enumerate(messages):
            type_id = message.type_id
            if type_id in (VIDEO, AUDIO):
                self._media(message)  # the hot path: no task, no coroutine per frame
            elif type_id in (COMMAND_AMF0, COMMAND_AMF3):
                self._backlog.extend(messages[index:])
                self._unaccounted += len(data)
                self._hand_over()
                return
            else:
                self._dispatch(message)
        # After handling, so a window size that arrived in this read applies to it.
        self._account(len(data))

    def _hand_over(self) -> None:
        """The task takes the backlog; reading pauses until it is done."""
        self._busy = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._wake()

    async def _serve(self) -> None:
        while True:
            while self._backlog:
                message = self._backlog.popleft()
                self._now = self._loop.time()
                if message.type_id in (COMMAND_AMF0, COMMAND_AMF3):
                    await self._command(message)
                else:
                    self._dispatch(message)
            if self._busy:
                self._busy = False
                unaccounted, self._unaccounted = self._unaccounted, 0
                self._account(unaccounted)
                transport = self._transport
                if self._ended is None and transport is not None and not transport.is_closing():
                    transport.resume_reading()
                    self._arm_watchdog()
            if self._ended is not None:
                raise self._ended
            self._wakeup = self._loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _end(self, error: Exception, *, drain: bool = False) -> None:
        """Records why the connection ends (the first reason stands) and wakes the task.
        With `drain`, the task first handles what was received before (an orderly close)."""
        if self._ended is None:
            self._ended = error
        if not drain:
            self._backlog.clear()
        self._wake()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _arm_watchdog(self) -> None:
        # One timer per connection, re-armed only when it fires, instead of a timeout per
        # read: reads are frequent, and a timer set and cancelled each time costs more.
        if self._watchdog is None:
            self._check_deadline()

    def _check_deadline(self) -> None:
        self._watchdog = None
        if self._ended is not None or self._busy:
            return  # ending, or the task is handling a command and re-arms when done
        if self._handshake is not None:
            deadline = self._handshake_deadline
            expired = (EndReason.PROTOCOL_ERROR, "handshake not completed in time")
        elif self._phase is _Phase.PUBLISHING:
            deadline = self._last_media + self._limits.media_timeout
            expired = (EndReason.NO_MEDIA, "no media received in time")
        else:
            deadline = self._publish_deadline
            expired = (EndReason.PROTOCOL_ERROR, "no publish within the time allowed")
        if self._loop.time() >= deadline:
            self._end(_Stop(*expired))
            self._abort()
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)

    def _account(self, size: int) -> None:
        now = self._now
        if self._phase is _Phase.PUBLISHING:
            self._health.add_bytes(size, now)
        due = self._ack.update(self._chunks.bytes_received)
        if due is not None:
            self._send_control(Acknowledgement(due))
        elapsed = now - self._budget_start
        if elapsed >= 2.0:
            rate = (self._chunks.chunks_parsed - self._budget_chunks) / elapsed
            if rate > self._limits.max_chunks_per_second:
                raise _Stop(
                    EndReason.PROTOCOL_ERROR, f"parse budget exceeded ({rate:.0f} chunks/s)"
                )
            self._budget_start, self._budget_chunks = now, self._chunks.chunks_parsed

    # -- messages -------------------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        """Any message but a command."""
        type_id = message.type_id
        if type_id in (VIDEO, AUDIO):
            self._media(message)
        elif type_id in (DATA_AMF0, DATA_AMF3):
            self._data(message)
        elif type_id in CONTROL_TYPES:
            self._control(message)
        elif type_id == AGGREGATE:
            for part in _split_aggregate(message):
                if part.type_id in (AUDIO, VIDEO, DATA_AMF0):
                    self._dispatch(part)
        elif type_id in SHARED_OBJECT_TYPES:
            pass  # shared objects are a Flash Media Server feature; nobody publishes with them
        else:
            log.debug("%s: skipping message type %d", self._label(), type_id)

    def _control(self, message: Message) -> None:
        control = decode_control(message.type_id, message.payload)
        if isinstance(control, WindowAckSize):
            # The publisher says how often it wants acknowledgements.
            self._ack.set_window(control.size)
        elif isinstance(control, UserControl) and control.event == UserControlEvent.PING_REQUEST:
            self._send_control(UserControl(UserControlEvent.PING_RESPONSE, control.value))

    async def _command(self, message: Message) -> None:
        command = decode_command(message.payload, amf3=message.type_id == COMMAND_AMF3)
        if self._phase is not _Phase.PUBLISHING:
            self._commands_seen += 1
            if self._commands_seen > self._limits.max_commands_before_publish:
                raise _Stop(EndReason.PROTOCOL_ERROR, "too many commands before publishing")
        name, txn = command.name, command.transaction_id
        if name == "connect":
            await self._connect(txn, command.command_object)
            return
        if self._phase is _Phase.CONNECTING:
            raise _Stop(EndReason.PROTOCOL_ERROR, f"{name!r} before connect")
        if name == "createStream":
            self._streams_created += 1
            if self._streams_created > self._limits.max_streams_per_connection:
                raise _Stop(EndReason.PROTOCOL_ERROR, "too many createStream calls")
            await self._send_command("_result", txn, None, float(MEDIA_STREAM_ID))
        elif name in ("releaseStream", "FCPublish"):
            # Answered so clients that track their calls (ffmpeg) see them complete; the
            # key they carry is not looked at until publish.
            await self._send_command("_result", txn, None, UNDEFINED)
        elif name == "publish":
            await self._publish(txn, message.stream_id or MEDIA_STREAM_ID, command.args)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self._phase is _Phase.PUBLISHING:
                # The publish ends now; the connection stays until the client closes it
                # (GStreamer sends deleteStream after FCUnpublish and fails if we hang up).
                await self._end_publish(EndReason.PUBLISHER_STOPPED)
                self._batch_reads(0)  # commands again: every byte wakes us
                await self._on_status(
                    message.stream_id or MEDIA_STREAM_ID,
                    "status",
                    "NetStream.Unpublish.Success",
                    "Stream ended.",
                )
                self._publish_deadline = self._loop.time() + self._limits.publish_timeout
        elif name == "play":
            await self._on_status(
                message.stream_id or MEDIA_STREAM_ID,
                "error",
                "NetStream.Play.Failed",
                "golive does not play over RTMP: watch in the browser.",
            )
            raise _Stop(EndReason.PROTOCOL_ERROR, "play requested")
        elif name == "_checkbw":
            await self._send_command("_result", txn, None, UNDEFINED)
        # Anything else (getStreamLength, custom calls) is ignored, as other servers do.

    async def _connect(self, txn: float, properties: AmfValue) -> None:
        if self._phase is not _Phase.CONNECTING:
            raise _Stop(EndReason.PROTOCOL_ERROR, "connect sent twice")
        if not isinstance(properties, dict):
            raise _Stop(EndReason.PROTOCOL_ERROR, "connect without a command object")
        app = properties.get("app")
        app = app.split("?", 1)[0].strip("/") if isinstance(app, str) else ""
        encoding = properties.get("objectEncoding")
        self._amf3_client = encoding == 3.0
        if app not in self._allowed_apps:
            await self._send_command(
                "_error",
                txn,
                None,
                _status(
                    "error",
                    "NetConnection.Connect.Rejected",
                    f"Unknown application {app[:64]!r}: publish to rtmp://<host>/live",
                ),
            )
            raise _Stop(EndReason.PROTOCOL_ERROR, "unknown application")
        self._app = app
        self._send_control(WindowAckSize(SERVER_WINDOW))
        self._send_control(SetPeerBandwidth(SERVER_WINDOW, LimitType.DYNAMIC))
        self._send_control(SetChunkSize(SERVER_CHUNK_SIZE))
        self._out.set_chunk_size(SERVER_CHUNK_SIZE)
        await self._send_command(
            "_result",
            txn,
            {
                "fmsVer": "FMS/3,5,7,7009",
                "capabilities": 31.0,
                "mode": 1.0,
                "fourCcList": list(FOURCC_LIST),
            },
            {
                **_status("status", "NetConnection.Connect.Success", "Connection succeeded."),
                "objectEncoding": 3.0 if self._amf3_client else 0.0,
            },
        )
        self._phase = _Phase.CONNECTED

    async def _publish(self, txn: float, stream_id: int, args: tuple[AmfValue, ...]) -> None:
        if self._phase is _Phase.PUBLISHING:
            raise _Stop(EndReason.PROTOCOL_ERROR, "publish sent twice")
        key = args[0] if args and isinstance(args[0], str) else ""
        key = key.split("?", 1)[0]
        attempt = await self._throttle.begin(self.peer_ip, key)
        if attempt.wait:
            await self._refuse(
                stream_id,
                Refusal(
                    RefusalCode.REJECTED,
                    "throttled",
                    f"Too many wrong stream keys from your address: try again in {attempt.wait} s.",
                    retry_after=attempt.wait,
                ),
            )
        request = PublishRequest(app=self._app, key=key, peer_ip=self.peer_ip, node=self._node)
        outcome = await self._admit(request)
        if (
            isinstance(outcome, Refusal)
            and outcome.takeover is not None
            and await self._take_over(outcome.takeover)
        ):
            # The channel's own key, and its publish here had gone silent: that publish
            # has just ended (into the reconnect grace), so this one now resumes it.
            outcome = await self._admit(request)
        if isinstance(outcome, Refusal) and outcome.counts_as_failed_key:
            delay = await self._throttle.failed(self.peer_ip, attempt)
            # Each wrong guess costs the guesser time, up to the limit.
            await asyncio.sleep(min(delay, self._limits.failed_key_delay))
        elif not (isinstance(outcome, Refusal) and outcome.reason == BUSY):
            # The platform knew the key (whether or not it admitted it).
            await self._throttle.key_accepted(self.peer_ip, key, attempt)
        del key, request
        if isinstance(outcome, Refusal):
            await self._refuse(stream_id, outcome)
        self.grant = outcome
        self._sink = self._sink_factory(outcome)
        self._last_media = self._loop.time()
        self._phase = _Phase.PUBLISHING
        self._send_control(UserControl(UserControlEvent.STREAM_BEGIN, stream_id))
        await self._on_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            f"{outcome.channel} is now live.",
        )
        await self._send_command(
            "onFCPublish", 0.0, None, _status("status", "NetStream.Publish.Start", outcome.channel)
        )
        self._heartbeat_task = asyncio.ensure_future(self._heartbeats(outcome))
        log.info("%s: publishing (session %d)", self._label(), outcome.session_id)

    async def _admit(self, request: PublishRequest) -> Grant | Refusal:
        """The platform's answer, within `admit_timeout`. The peer's own deadline waits
        meanwhile (the watchdog holds off while a command is in progress): a platform busy
        deciding a thousand publishes at once is not the publisher's fault. An answer that
        comes too late is released at once."""
        limit = self._limits.admit_timeout
        admission = asyncio.ensure_future(self._gatekeeper.admit(request))
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(admission)
        except asyncio.CancelledError:
            admission.add_done_callback(self._release_late_grant)  # the answer outlives us
            raise
        except TimeoutError:
            admission.add_done_callback(self._release_late_grant)
            log.warning("%s: no admission answer within %.0f s", self._label(), limit)
            return Refusal(
                RefusalCode.REJECTED, BUSY,
                "golive could not check your stream key in time: try again in a minute.",
                retry_after=60,
            )

    def _release_late_grant(self, admission: asyncio.Future[Grant | Refusal]) -> None:
        if admission.cancelled() or admission.exception() is not None:
            return
        grant = admission.result()
        if isinstance(grant, Grant):
            release = self._gatekeeper.release(
                grant, EndReason.CONNECTION_LOST, StreamDescription(), StreamHealth()
            )
            task = asyncio.ensure_future(release)
            _LATE_RELEASES.add(task)
            task.add_done_callback(_LATE_RELEASES.discard)

    async def _refuse(self, stream_id: int, refusal: Refusal) -> NoReturn:
        await self._on_status(stream_id, "error", refusal.code.value, refusal.description)
        raise _Stop(EndReason.PROTOCOL_ERROR, f"publish refused: {refusal.reason}")

    def _data(self, message: Message) -> None:
        values, _error = decode_data(message.payload, amf3=message.type_id == DATA_AMF3)
        # @setDataFrame("onMetaData", {...}) from encoders, or onMetaData alone.
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            metadata = values[1]
            self._description = _merge_metadata(self._description, metadata)
            if self._sink is not None:
                self._sink.metadata(dict(metadata))

    def _media(self, message: Message) -> None:
        sink = self._sink
        if self._phase is not _Phase.PUBLISHING or sink is None:
            return  # media before an admitted publish is dropped, never buffered
        now = self._now
        self._last_media = now
        received_at = self._received_at
        payload = message.payload
        # The fast path first: what OBS and FFmpeg send for nearly every frame.
        if message.type_id == VIDEO:
            coded = find_coded_video(payload)
            if coded is not None:
                codec, keyframe, composition = coded
                self._health.video(message.timestamp, keyframe, now)
                sink.media(
                    MediaPacket(
                        TrackKind.VIDEO,
                        codec.value,
                        message.timestamp,
                        memoryview(payload)[LEGACY_VIDEO_HEADER_SIZE:],
                        keyframe,
                        False,
                        composition,
                        received_at,
                    )
                )
                return
        elif is_raw_aac(payload):
            self._health.audio()
            sink.media(
                MediaPacket(
                    TrackKind.AUDIO,
                    _AAC,
                    message.timestamp,
                    memoryview(payload)[LEGACY_AAC_HEADER_SIZE:],
                    False,
                    False,
                    0,
                    received_at,
                )
            )
            return
        self._media_tag(message, sink, now, received_at)

    def _media_tag(self, message: Message, sink: MediaSink, now: float, received_at: float) -> None:
        """Any audio or video body, through the complete FLV parser."""
        if message.type_id == VIDEO:
            try:
                tag = parse_video(message.payload)
            except UnsupportedFeature:
                self._skipped += 1  # a codec or packet type we do not take: skip, stay up
                return
            if tag.codec is None:
                return  # command frames carry no media
            # A multitrack tag carries its first track at the top level: that one is used.
            if tag.packet_type is VideoPacketType.SEQUENCE_START:
                self._video_config(tag.codec, tag.data)
                sink.media(
                    MediaPacket(
                        TrackKind.VIDEO,
                        tag.codec.value,
                        message.timestamp,
                        tag.data,
                        sequence_header=True,
                        received_at=received_at,
                    )
                )
            elif tag.packet_type in (VideoPacketType.CODED_FRAMES, VideoPacketType.CODED_FRAMES_X):
                keyframe = tag.is_keyframe
                self._health.video(message.timestamp, keyframe, now)
                sink.media(
                    MediaPacket(
                        TrackKind.VIDEO,
                        tag.codec.value,
                        message.timestamp,
                        tag.data,
                        keyframe=keyframe,
                        composition_offset=tag.composition_time,
                        received_at=received_at,
                    )
                )
        else:
            try:
                audio = parse_audio(message.payload)
            except UnsupportedFeature:
                self._skipped += 1
                return
            if audio.packet_type is AudioPacketType.SEQUENCE_START:
                self._audio_config(audio.codec, audio.data)
                sequence_header = True
            elif audio.packet_type is AudioPacketType.CODED_FRAMES:
                self._health.audio()
                sequence_header = False
            else:
                return
            sink.media(
                MediaPacket(
                    TrackKind.AUDIO,
                    audio.codec.value,
                    message.timestamp,
                    audio.data,
                    sequence_header=sequence_header,
                    received_at=received_at,
                )
            )

    def _video_config(self, codec: VideoCodec, data: bytes | memoryview) -> None:
        fourcc = _VIDEO_FOURCC.get(codec)
        if fourcc is None:
            self._description = _replace(self._description, video_codec=codec.value)
            return
        try:
            config = parse_video_config(fourcc, data)
        except CodecConfigError as error:
            log.info("%s: unreadable %s sequence header: %s", self._label(), fourcc, error)
            self._description = _replace(self._description, video_codec=fourcc)
            return
        self._description = _replace(
            self._description,
            video_codec=config.codec_string,
            width=config.width or self._description.width,
            height=config.height or self._description.height,
            frame_rate=float(config.frame_rate)
            if config.frame_rate
            else self._description.frame_rate,
        )

    def _audio_config(self, codec: AudioCodec, data: bytes | memoryview) -> None:
        fourcc = _AUDIO_FOURCC.get(codec)
        try:
            codec_string = parse_audio_config(fourcc, data).codec_string if fourcc else codec.value
        except CodecConfigError:
            codec_string = codec.value
        self._description = _replace(self._description, audio_codec=codec_string)

    def _described(self) -> StreamDescription:
        measured = self._health.measured_frame_rate()
        if measured is None:
            return self._description
        return _replace(self._description, frame_rate=measured)

    async def _heartbeats(self, grant: Grant) -> None:
        # The first beat comes soon, so the session row shows codec and resolution early.
        await asyncio.sleep(min(1.0, self._heartbeat_interval))
        while True:
            grant = self.grant or grant  # its terms may have changed (`regrant`)
            health = self._health.snapshot(self._loop.time())
            self._batch_reads(health.bitrate_kbps)
            try:
                answer = await self._gatekeeper.heartbeat(grant, self._described(), health)
            except Exception:
                log.exception("%s: heartbeat failed", self._label())
                answer = True
            if answer is False:
                self.stop(EndReason.FORCE_STOPPED)
                return
            if isinstance(answer, Grant):
                self.regrant(answer)
            await asyncio.sleep(self._heartbeat_interval)

    def _batch_reads(self, bitrate_kbps: float) -> None:
        """Asks the kernel to wake us only once ~`read_batch_seconds` of media is waiting
        (SO_RCVLOWAT). Encoders write each 4 KiB chunk separately; waking for each costs
        more CPU than parsing it. The delay this adds is bounded by that batch time, and
        the watermark is never above what the stream sends in it, so a stream that slows
        down is not held back (re-tuned at every heartbeat)."""
        transport = self._transport
        if transport is None or transport.is_closing() or not hasattr(socket, "SO_RCVLOWAT"):
            return  # closed already (a connection ending), or not Linux
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        per_batch = int(bitrate_kbps * 1000 / 8 * self._limits.read_batch_seconds * 0.5)
        watermark = max(1, min(per_batch, 64 * 1024))
        with contextlib.suppress(OSError, ValueError):  # uvloop: ValueError once closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, watermark)

    # -- writing --------------------------------------------------------------------------

    def _send_control(self, control: ControlMessage) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # the peer is gone; writing on would only fill asyncio's warning log
        transport.write(self._out.encode(encode_control(control)))

    async def _send_command(self, name: str, txn: float, obj: AmfValue, *args: AmfValue) -> None:
        payload = encode_command(name, txn, obj, *args)
        await self._write(Message(COMMAND_CSID, COMMAND_AMF0, 0, 0, payload))

    async def _on_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        payload = encode_command("onStatus", 0.0, None, _status(level, code, description))
        await self._write(Message(5, COMMAND_AMF0, stream_id, 0, payload))

    async def _write(self, message: Message) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise _Stop(EndReason.CONNECTION_LOST, "peer went away")
        transport.write(self._out.encode(message))
        await self._drain()

    async def _drain(self) -> None:
        """Waits while the transport's buffer is above its high-water mark."""
        writable = self._writable
        if writable is None:
            return
        try:
            async with asyncio.timeout(self._limits.write_timeout):
                await asyncio.shield(writable)
        except TimeoutError:
            raise _Stop(EndReason.CONNECTION_LOST, "peer stopped reading") from None

    def _resume_writing_waiter(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)


def _status(level: str, code: str, description: str) -> dict[str, AmfValue]:
    return {"level": level, "code": code, "description": description}


def _replace(description: StreamDescription, **changes: object) -> StreamDescription:
    return replace(description, **changes)  # type: ignore[arg-type]


def _number(value: AmfValue) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _merge_metadata(
    description: StreamDescription, metadata: dict[str, AmfValue]
) -> StreamDescription:
    """Fills what the sequence headers did not say from onMetaData (which may lie)."""
    width, height, rate = (_number(metadata.get(k)) for k in ("width", "height", "framerate"))
    return _replace(
        description,
        width=description.width or (int(width) if width and 0 < width < 65536 else None),
        height=description.height or (int(height) if height and 0 < height < 65536 else None),
        frame_rate=description.frame_rate or (rate if rate and 0 < rate < 1000 else None),
    )


def _split_aggregate(message: Message) -> list[Message]:
    """The FLV tags inside an aggregate message, with timestamps rebased on its own."""
    payload = message.payload
    parts: list[Message] = []
    offset, first_ts = 0, None
    while offset + 11 <= len(payload):
        tag_type = payload[offset]
        size = int.from_bytes(payload[offset + 1 : offset + 4], "big")
        ts = int.from_bytes(payload[offset + 4 : offset + 7], "big") | (payload[offset + 7] << 24)
        end = offset + 11 + size
        if end + 4 > len(payload):
            raise ProtocolError("aggregate message: a tag runs past the end")
        if first_ts is None:
            first_ts = ts
        parts.append(
            Message(
                message.csid,
                tag_type,
                message.stream_id,
                message.timestamp + ts - first_ts,
                payload[offset + 11 : end],
            )
        )
        offset = end + 4
    return parts
