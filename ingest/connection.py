"""One publisher's RTMP connection: the socket, its deadlines, and the commands OBS sends.

The protocol work is done by `ingest.protocol` (pure, over bytes); media messages become
packets in `ingest.media`; an admitted publish is an `ingest.publish.Publish`. This layer
owns the socket, the order of messages (media at once, commands in the connection's
task), the deadlines, the parse budget and the command negotiation. A connection ends one
way, `RtmpConnection.end(reason, why)`, whoever asks; its task then closes the socket and
ends its publish, which releases the grant exactly once. Nothing here can touch another
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, cast

from ingest.gatekeeper import (
    EndReason,
    Gatekeeper,
    Grant,
    PublishRequest,
    Refusal,
    RefusalCode,
)
from ingest.health import StreamHealth
from ingest.media import AGGREGATE, AUDIO, DATA_AMF0, DATA_AMF3, VIDEO, split_aggregate
from ingest.protocol import (
    UNDEFINED,
    Acknowledgement,
    AckTracker,
    AmfValue,
    ChunkLimits,
    ChunkReader,
    ChunkWriter,
    ControlMessage,
    LimitType,
    Message,
    ProtocolError,
    SetChunkSize,
    SetPeerBandwidth,
    UserControl,
    UserControlEvent,
    WindowAckSize,
    decode_command,
    decode_control,
    encode_command,
    encode_control,
)
from ingest.protocol.handshake import ServerHandshake
from ingest.publish import BUSY, Publish, admit
from ingest.sink import SinkFactory
from ingest.throttle import FailedKeyThrottle

log = logging.getLogger(__name__)

__all__ = ["ConnectionLimits", "Ending", "RtmpConnection"]

# Message types (RTMP spec 5.4, 7.1) besides media and data (ingest.media).
COMMAND_AMF3, COMMAND_AMF0 = 17, 20
CONTROL_TYPES = frozenset({1, 2, 3, 4, 5, 6})
_MEDIA = frozenset({AUDIO, VIDEO})
_COMMANDS = frozenset({COMMAND_AMF0, COMMAND_AMF3})
_DATA = frozenset({DATA_AMF0, DATA_AMF3})
SHARED_OBJECT_TYPES = frozenset({16, 19})
COMMAND_CSID = 3
MEDIA_STREAM_ID = 1
# What the server asks of the peer: acknowledge every 2.5 MB, our chunks are 4 KiB.
SERVER_WINDOW = 2_500_000
SERVER_CHUNK_SIZE = 4096
# Video FourCCs this server takes, advertised in connect's _result (Enhanced RTMP).
FOURCC_LIST = ["av01", "vp09", "hvc1", "avc1"]


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


class Ending(Exception):
    """Why a connection ends: the reason its publish is released with, and a sentence for
    the log. Raised from deep inside the connection's task; `RtmpConnection.end` takes
    the same two from anywhere else."""

    def __init__(self, reason: EndReason, why: str) -> None:
        super().__init__(why)
        self.reason = reason
        self.why = why


async def _no_takeover(session_id: int) -> bool:
    return False


class RtmpConnection(asyncio.Protocol):
    """One publisher's connection, as the event loop's protocol for its socket.

    Bytes are parsed the moment they arrive (`data_received`), and media goes to the
    publish right there: no task wakes up per read. Commands, which await the gatekeeper
    or the socket, run in the connection's task (`run`), strictly in arrival order: from
    the first command of a read until the task has handled it and what followed it,
    reading pauses, so nothing piles up in memory and nothing overtakes a command.
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
        known; it either starts `run` in a task or ends the connection. `take_over(session_id)`
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
        self._app: str | None = None  # once connected
        self._publish: Publish | None = None
        self._publish_deadline = 0.0
        self._amf3_client = False
        self._streams_created = 0
        self._commands_seen = 0
        self._budget_start = 0.0
        self._budget_chunks = 0
        # Messages the task must handle, in order, and whether it is at it (then reading
        # is paused and bytes counted in `_unaccounted` wait for `_account`).
        self._backlog: deque[Message] = deque()
        self._busy = False
        self._unaccounted = 0
        self._ending: Ending | None = None  # the first reason given to `end`
        self._closed = False
        self._wakeup: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._watchdog: asyncio.TimerHandle | None = None
        self._now = 0.0  # the event loop's time at the read being handled
        self._received_at = 0.0  # the wall clock at that read, for program-date-time
        self._watermark = 1  # the socket's SO_RCVLOWAT (_batch_reads)

    @property
    def grant(self) -> Grant | None:
        """The running publish's grant, if one is admitted."""
        return self._publish.grant if self._publish is not None else None

    def regrant(self, grant: Grant) -> None:
        """New terms for this connection's publish (the same session; see
        `Publish.regrant`). Nothing when it is not publishing."""
        if self._publish is not None:
            self._publish.regrant(grant)

    @property
    def ending(self) -> Ending | None:
        """Why the connection ends or ended; None while it runs."""
        return self._ending

    def silence(self) -> float:
        """Seconds since the admitted publisher last sent media (or was admitted)."""
        publish = self._publish
        return self._loop.time() - publish.last_media if publish is not None else 0.0

    def set_no_delay(self) -> None:
        """Our answers are small and awaited by the publisher: no Nagle delay."""
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- the one way to end -----------------------------------------------------------------

    def end(self, reason: EndReason, why: str, *, drain: bool = False) -> None:
        """Ends the connection: a shutdown, a force stop or a takeover from the server, a
        refusal at accept, a deadline, the peer, the connection's own task. Idempotent:
        the first reason stands (it is the one the publish is released with).

        Without ``drain`` the socket is cut now and what was received but not yet handled
        is dropped. With it (the peer closed in order) the task first handles what came
        before, answering its commands. Either way the task then closes (`_close`): the
        socket, then the publish, released once. A connection no task serves (refused
        at accept) is closed here and now."""
        if self._ending is None:
            self._ending = Ending(reason, why)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if not drain:
            self._backlog.clear()
            if self._transport is not None:
                self._transport.abort()
        self._wake()

    async def _close(self) -> None:
        """The end of `run`: the socket, then the publish. Runs once."""
        if self._closed:
            return
        self._closed = True
        ending = self._ending or Ending(EndReason.CONNECTION_LOST, "connection lost")
        self.end(ending.reason, ending.why)
        log.info("%s: %s", self._label(), ending.why)
        await self._end_publish(ending.reason)

    async def _end_publish(self, reason: EndReason) -> None:
        """Ends the running publish, if any; the socket stays (FCUnpublish)."""
        publish, self._publish = self._publish, None
        if publish is not None:
            await publish.end(reason)

    def _label(self) -> str:
        grant = self.grant
        return f"rtmp {self.peer_ip} [{grant.channel if grant else '-'}]"

    # -- the connection's task --------------------------------------------------------------

    async def run(self) -> None:
        """Serves the connection until it ends, then closes it. Never raises but for its
        own cancellation (after closing)."""
        try:
            await self._serve()
        except Ending as ending:
            self.end(ending.reason, ending.why)
        except ProtocolError as error:
            self.end(EndReason.PROTOCOL_ERROR, f"protocol error: {error}")
        except (ConnectionError, OSError) as error:
            self.end(EndReason.CONNECTION_LOST, f"connection lost: {error}")
        except asyncio.CancelledError:
            self.end(EndReason.SERVER_SHUTDOWN, "cancelled")
            raise
        except Exception:
            # A bug here must end this connection only, as if it had dropped.
            log.exception("%s: failed", self._label())
            self.end(EndReason.CONNECTION_LOST, "internal error")
        finally:
            await self._close()

    async def _serve(self) -> None:
        while True:
            while self._backlog:
                message = self._backlog.popleft()
                self._now = self._loop.time()
                if message.type_id in _COMMANDS:
                    await self._command(message)
                else:
                    self._dispatch(message)
            if self._busy:
                self._busy = False
                unaccounted, self._unaccounted = self._unaccounted, 0
                self._account(unaccounted)
                transport = self._transport
                if self._ending is None and transport is not None and not transport.is_closing():
                    transport.resume_reading()
                    self._arm_watchdog()
            if self._ending is not None:
                return
            self._wakeup = self._loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    # -- the socket's events (asyncio.Protocol) ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self._transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        self._arm_watchdog()
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        if self._ending is not None:
            return  # ending: the task closes the socket
        try:
            if self._handshake is not None:
                data = self._shake(data)
                if not data:
                    return
            self._receive(data)
        except Ending as ending:
            self.end(ending.reason, ending.why)
        except ProtocolError as error:
            self.end(EndReason.PROTOCOL_ERROR, f"protocol error: {error}")
        except Exception:
            log.exception("%s: failed on received data", self._label())
            self.end(EndReason.CONNECTION_LOST, "internal error")

    def eof_received(self) -> bool:
        # Half-closed: the task still answers what came before (GStreamer's deleteStream),
        # then closes the socket.
        self.end(EndReason.PUBLISHER_STOPPED, "peer closed the connection", drain=True)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        # What arrived before still counts (an FCUnpublish right before a reset); commands
        # in it that want to answer find the socket gone and end the connection there.
        if exc is None:
            self.end(EndReason.PUBLISHER_STOPPED, "peer closed the connection", drain=True)
        else:
            self.end(EndReason.CONNECTION_LOST, f"connection lost: {exc}", drain=True)
        self._resume_writing_waiter()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        self._resume_writing_waiter()

    # -- reading ----------------------------------------------------------------------------

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
        received_at = self._received_at = time.time()
        if self._busy:
            # A command is being handled (reading was paused, these bytes were on their
            # way): everything waits its turn behind it.
            self._backlog.extend(messages)
            self._unaccounted += len(data)
            return
        now = self._now = self._loop.time()
        publish = self._publish
        for index, message in enumerate(messages):
            type_id = message.type_id
            if type_id in _MEDIA:
                # The hot path: no task, no coroutine per frame. Media before an admitted
                # publish is dropped, never buffered.
                if publish is not None:
                    publish.media(message, now, received_at)
            elif type_id in _COMMANDS:
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

    def _arm_watchdog(self) -> None:
        # One timer per connection, re-armed only when it fires, instead of a timeout per
        # read: reads are frequent, and a timer set and cancelled each time costs more.
        if self._watchdog is None and self._ending is None:
            self._check_deadline()

    def _check_deadline(self) -> None:
        self._watchdog = None
        if self._ending is not None or self._busy:
            return  # ending, or the task is handling a command and re-arms when done
        if self._handshake is not None:
            deadline = self._handshake_deadline
            expired = (EndReason.PROTOCOL_ERROR, "handshake not completed in time")
        elif self._publish is not None:
            deadline = self._publish.last_media + self._limits.media_timeout
            expired = (EndReason.NO_MEDIA, "no media received in time")
        else:
            deadline = self._publish_deadline
            expired = (EndReason.PROTOCOL_ERROR, "no publish within the time allowed")
        if self._loop.time() >= deadline:
            self.end(*expired)
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)

    def _account(self, size: int) -> None:
        now = self._now
        if self._publish is not None:
            self._publish.health.add_bytes(size, now)
        due = self._ack.update(self._chunks.bytes_received)
        if due is not None:
            self._send_control(Acknowledgement(due))
        elapsed = now - self._budget_start
        if elapsed >= 2.0:
            rate = (self._chunks.chunks_parsed - self._budget_chunks) / elapsed
            if rate > self._limits.max_chunks_per_second:
                raise Ending(
                    EndReason.PROTOCOL_ERROR, f"parse budget exceeded ({rate:.0f} chunks/s)"
                )
            self._budget_start, self._budget_chunks = now, self._chunks.chunks_parsed

    def _batch_reads(self, health: StreamHealth | None = None) -> None:
        """Asks the kernel to wake us only once ~`read_batch_seconds` of media is waiting
        (SO_RCVLOWAT). Encoders write each 4 KiB chunk separately; waking for each costs
        more CPU than parsing it. The delay this adds is bounded by that batch time, and
        the watermark is never above what the stream sends in it, so a stream that slows
        down is not held back (re-tuned at every heartbeat, left alone when the bitrate
        moved less than an eighth; without ``health``, every byte wakes us again)."""
        bitrate_kbps = health.bitrate_kbps if health is not None else 0.0
        per_batch = int(bitrate_kbps * 1000 / 8 * self._limits.read_batch_seconds * 0.5)
        watermark = max(1, min(per_batch, 64 * 1024))
        current = self._watermark
        if watermark == current or (watermark > 1 and abs(watermark - current) < current / 8):
            return
        transport = self._transport
        if transport is None or transport.is_closing() or not hasattr(socket, "SO_RCVLOWAT"):
            return  # closed already (a connection ending), or not Linux
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        with contextlib.suppress(OSError, ValueError):  # uvloop: ValueError once closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, watermark)
            self._watermark = watermark

    # -- messages ---------------------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        """Any message but a command."""
        type_id = message.type_id
        if type_id in _MEDIA:
            if self._publish is not None:
                self._publish.media(message, self._now, self._received_at)
        elif type_id in _DATA:
            if self._publish is not None:
                self._publish.metadata(message)
        elif type_id in CONTROL_TYPES:
            self._control(message)
        elif type_id == AGGREGATE:
            for part in split_aggregate(message):
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

    # -- commands ---------------------------------------------------------------------------

    async def _command(self, message: Message) -> None:
        command = decode_command(message.payload, amf3=message.type_id == COMMAND_AMF3)
        if self._publish is None:
            self._commands_seen += 1
            if self._commands_seen > self._limits.max_commands_before_publish:
                raise Ending(EndReason.PROTOCOL_ERROR, "too many commands before publishing")
        name, txn = command.name, command.transaction_id
        stream_id = message.stream_id or MEDIA_STREAM_ID
        if name == "connect":
            await self._connect(txn, command.command_object)
            return
        if self._app is None:
            raise Ending(EndReason.PROTOCOL_ERROR, f"{name!r} before connect")
        if name == "createStream":
            self._streams_created += 1
            if self._streams_created > self._limits.max_streams_per_connection:
                raise Ending(EndReason.PROTOCOL_ERROR, "too many createStream calls")
            await self._send_command("_result", txn, None, float(MEDIA_STREAM_ID))
        elif name in ("releaseStream", "FCPublish"):
            # Answered so clients that track their calls (ffmpeg) see them complete; the
            # key they carry is not looked at until publish.
            await self._send_command("_result", txn, None, UNDEFINED)
        elif name == "publish":
            await self._start_publish(stream_id, command.args)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self._publish is not None:
                # The publish ends now; the connection stays until the client closes it
                # (GStreamer sends deleteStream after FCUnpublish and fails if we hang up).
                await self._end_publish(EndReason.PUBLISHER_STOPPED)
                self._batch_reads()  # commands again: every byte wakes us
                await self._on_status(
                    stream_id, "status", "NetStream.Unpublish.Success", "Stream ended."
                )
                self._publish_deadline = self._loop.time() + self._limits.publish_timeout
        elif name == "play":
            await self._on_status(
                stream_id,
                "error",
                "NetStream.Play.Failed",
                "golive does not play over RTMP: watch in the browser.",
            )
            raise Ending(EndReason.PROTOCOL_ERROR, "play requested")
        elif name == "_checkbw":
            await self._send_command("_result", txn, None, UNDEFINED)
        # Anything else (getStreamLength, custom calls) is ignored, as other servers do.

    async def _connect(self, txn: float, properties: AmfValue) -> None:
        if self._app is not None:
            raise Ending(EndReason.PROTOCOL_ERROR, "connect sent twice")
        if not isinstance(properties, dict):
            raise Ending(EndReason.PROTOCOL_ERROR, "connect without a command object")
        app = properties.get("app")
        app = app.split("?", 1)[0].strip("/") if isinstance(app, str) else ""
        self._amf3_client = properties.get("objectEncoding") == 3.0
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
            raise Ending(EndReason.PROTOCOL_ERROR, "unknown application")
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
        self._app = app

    async def _start_publish(self, stream_id: int, args: tuple[AmfValue, ...]) -> None:
        if self._publish is not None:
            raise Ending(EndReason.PROTOCOL_ERROR, "publish sent twice")
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
        assert self._app is not None
        request = PublishRequest(app=self._app, key=key, peer_ip=self.peer_ip, node=self._node)
        limit = self._limits.admit_timeout
        outcome = await admit(self._gatekeeper, request, limit, self._label())
        if (
            isinstance(outcome, Refusal)
            and outcome.takeover is not None
            and await self._take_over(outcome.takeover)
        ):
            # The channel's own key, and its publish here had gone silent: that publish
            # has just ended (into the reconnect grace), so this one now resumes it.
            outcome = await admit(self._gatekeeper, request, limit, self._label())
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
        label = f"rtmp {self.peer_ip} [{outcome.channel}]"
        publish = self._publish = Publish(
            outcome,
            self._sink_factory(outcome),
            self._gatekeeper,
            heartbeat_interval=self._heartbeat_interval,
            label=label,
            on_force_stop=self._force_stop,
            on_health=self._batch_reads,
        )
        self._send_control(UserControl(UserControlEvent.STREAM_BEGIN, stream_id))
        await self._on_status(
            stream_id, "status", "NetStream.Publish.Start", f"{outcome.channel} is now live."
        )
        await self._send_command(
            "onFCPublish", 0.0, None, _status("status", "NetStream.Publish.Start", outcome.channel)
        )
        publish.start()
        log.info("%s: publishing (session %d)", label, outcome.session_id)

    def _force_stop(self) -> None:
        self.end(EndReason.FORCE_STOPPED, "stopped by the platform")

    async def _refuse(self, stream_id: int, refusal: Refusal) -> NoReturn:
        """Tells the publisher why, then ends the connection (raises Ending)."""
        await self._on_status(stream_id, "error", refusal.code.value, refusal.description)
        raise Ending(EndReason.PROTOCOL_ERROR, f"publish refused: {refusal.reason}")

    # -- writing ----------------------------------------------------------------------------

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
            raise Ending(EndReason.CONNECTION_LOST, "peer went away")
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
            raise Ending(EndReason.CONNECTION_LOST, "peer stopped reading") from None

    def _resume_writing_waiter(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)


def _status(level: str, code: str, description: str) -> dict[str, AmfValue]:
    return {"level": level, "code": code, "description": description}
