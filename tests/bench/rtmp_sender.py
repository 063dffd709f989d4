"""Many RTMP publishers from one process, replaying an FLV file in real time.

    python -m tests.bench.rtmp_sender --port P --streams N --seconds S FILE
                                      [--host H] [--writes chunk|message]

What N `ffmpeg -re -stream_loop -1 -i FILE -c copy -f flv rtmp://…` processes send, for a
fraction of their CPU: 200 ffmpeg processes take most of a 2-core machine, which then
measures the scheduler rather than the server. The file's tags are chunked once (4 KiB
chunks, as ffmpeg and OBS send them) and every publisher writes the same bytes on its own
clock: connect, releaseStream, FCPublish, createStream and publish as ffmpeg sends them;
`@setDataFrame onMetaData` and the sequence headers once; the media looped for `seconds`
(timestamps continue across loops); then FCUnpublish, deleteStream and a close.

With ``--writes chunk`` (the default) each chunk is one write, as encoders do; ``message``
writes each message at once. Prints one JSON line at the end: how many publishes started
and finished, the most bytes any connection had waiting to be sent (a server that does
not keep up makes this grow), and how late the sender itself was (a busy machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from ingest.protocol import (
    ChunkReader,
    ChunkWriter,
    Message,
    SetChunkSize,
    decode_command,
    encode_command,
    encode_control,
    encode_values,
)
from ingest.protocol.handshake import ClientHandshake
from ingest.runner import run

CHUNK_SIZE = 4096
COMMAND_CSID, AUDIO_CSID, VIDEO_CSID, DATA_CSID = 3, 4, 6, 5
STREAM_ID = 1
SETUP_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Tag:
    type_id: int  # 8 audio, 9 video, 18 script data
    timestamp: int
    data: bytes

    @property
    def sequence_header(self) -> bool:
        if self.type_id == 9:
            return len(self.data) > 1 and self.data[1] == 0 and self.data[0] & 0x0F == 7
        if self.type_id == 8:
            return len(self.data) > 1 and self.data[0] >> 4 == 10 and self.data[1] == 0
        return False

    @property
    def end(self) -> bool:
        """An AVC end-of-sequence tag: no frame, and wrong in the middle of a loop."""
        return self.type_id == 9 and len(self.data) > 1 and self.data[1] == 2


def read_flv(path: Path) -> list[Tag]:
    """The tags of an FLV file, in order. Raises ValueError for a file that is not FLV."""
    data = path.read_bytes()
    if data[:3] != b"FLV":
        raise ValueError(f"{path} is not an FLV file")
    offset = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while offset + 11 <= len(data):
        type_id = data[offset] & 0x1F
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        timestamp = int.from_bytes(data[offset + 4 : offset + 7], "big") | data[offset + 7] << 24
        body = data[offset + 11 : offset + 11 + size]
        if len(body) < size:
            break
        tags.append(Tag(type_id, timestamp, body))
        offset += 11 + size + 4
    return tags


@dataclass(frozen=True, slots=True)
class Schedule:
    """What every publisher sends once publishing: `start` once, then `loop` over and
    over. Each entry is (due in ms from the start, the writes that carry it)."""

    start: list[tuple[int, list[bytes]]]
    loop: list[tuple[int, list[bytes]]]
    loop_ms: int


def build_schedule(tags: list[Tag], writes: str) -> Schedule:
    """Chunks the file once for all publishers. A loop's media is chunked twice with one
    writer: the second time, every header is relative to the one before (type 1-3), so
    those bytes repeat unchanged in every later loop."""
    media = [t for t in tags if t.type_id in (8, 9) and not t.sequence_header and not t.end]
    headers = [t for t in tags if t.type_id in (8, 9) and t.sequence_header]
    metadata = [t for t in tags if t.type_id == 18][:1]
    if not media:
        raise ValueError("the file has no audio or video")
    # A loop lasts as long as its longest track, its last frame included (as ffmpeg's
    # -stream_loop counts it): timestamps keep increasing from one loop to the next.
    ends = []
    for type_id in (8, 9):
        times = [t.timestamp for t in media if t.type_id == type_id]
        if times:
            step = round((times[-1] - times[0]) / max(1, len(times) - 1))
            ends.append(times[-1] + step)
    loop_ms = max(ends) - media[0].timestamp
    writer = ChunkWriter(CHUNK_SIZE, repeat_extended_timestamp=True)

    def encode(csid: int, type_id: int, timestamp: int, payload: bytes) -> list[bytes]:
        encoded = writer.encode(Message(csid, type_id, STREAM_ID, timestamp, payload))
        if writes == "message":
            return [encoded]
        # Split where each chunk starts: continuation headers are one byte (csid < 64).
        count = max(1, -(-len(payload) // CHUNK_SIZE))
        first = len(encoded) - len(payload) - (count - 1) + min(CHUNK_SIZE, len(payload))
        pieces, offset = [encoded[:first]], first
        while offset < len(encoded):
            pieces.append(encoded[offset : offset + 1 + CHUNK_SIZE])
            offset += 1 + CHUNK_SIZE
        return pieces

    start: list[tuple[int, list[bytes]]] = []
    for tag in metadata:
        payload = encode_values("@setDataFrame") + tag.data
        start.append((0, encode(DATA_CSID, 18, 0, payload)))
    for tag in headers:
        csid = VIDEO_CSID if tag.type_id == 9 else AUDIO_CSID
        start.append((0, encode(csid, tag.type_id, 0, tag.data)))
    loops = []
    for index in range(3):
        shift = index * loop_ms - media[0].timestamp
        loops.append(
            [
                (
                    t.timestamp + shift,
                    encode(VIDEO_CSID if t.type_id == 9 else AUDIO_CSID, t.type_id,
                           t.timestamp + shift, t.data),
                )
                for t in media
            ]
        )
    second, third = loops[1], loops[2]
    if [w for _, w in second] != [w for _, w in third]:
        raise ValueError("the file's loops do not chunk alike (timestamps jump?)")
    start += loops[0]
    return Schedule(start, [(due - loop_ms, w) for due, w in second], loop_ms)


class Publisher(asyncio.Protocol):
    """One publish: ffmpeg's command sequence, then the schedule on its own clock."""

    def __init__(self, key: str, schedule: Schedule, seconds: float) -> None:
        self.key = key
        self._schedule = schedule
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._handshake: ClientHandshake | None = ClientHandshake()
        self._reader = ChunkReader()
        self._writer = ChunkWriter()
        self._app = "live"
        self.started = asyncio.Event()
        self.done: asyncio.Future[str] = self._loop.create_future()
        self.max_buffered = 0
        self.max_late_ms = 0.0
        self._begin = 0.0
        self._entries = schedule.start
        self._index = 0
        self._shift_ms = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- the socket ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        assert self._handshake is not None
        self._transport.write(self._handshake.start())

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if self._handshake is not None:
            reply = self._handshake.feed(data)
            if reply:
                self._transport.write(reply)
            if not self._handshake.done:
                return
            data = self._handshake.leftover
            self._handshake = None
            self._send_control(encode_control(SetChunkSize(CHUNK_SIZE)))
            self._writer.set_chunk_size(CHUNK_SIZE)
            tc_url = "rtmp://127.0.0.1/live"
            self._command(
                "connect", 1.0, {"app": self._app, "type": "nonprivate", "tcUrl": tc_url}
            )
        for message in self._reader.feed(data):
            if message.type_id == 20:
                self._answer(decode_command(message.payload))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.done.done():
            self.done.set_result(f"closed by the server ({exc or 'EOF'})")
        self.started.set()

    # -- commands ------------------------------------------------------------------------

    def _send_control(self, message: Message) -> None:
        assert self._transport is not None
        self._transport.write(self._writer.encode(message))

    def _command(self, name: str, txn: float, obj: object, *args: object, stream: int = 0) -> None:
        payload = encode_command(name, txn, obj, *args)  # type: ignore[arg-type]
        self._send_control(Message(COMMAND_CSID, 20, stream, 0, payload))

    def _answer(self, command: object) -> None:
        name = getattr(command, "name", "")
        txn = getattr(command, "transaction_id", 0.0)
        if name == "_result" and txn == 1.0:
            self._command("releaseStream", 2.0, None, self.key)
            self._command("FCPublish", 3.0, None, self.key)
            self._command("createStream", 4.0, None)
        elif name == "_result" and txn == 4.0:
            self._command("publish", 5.0, None, self.key, "live", stream=STREAM_ID)
        elif name == "onStatus":
            info = getattr(command, "args", ())
            code = info[0].get("code") if info and isinstance(info[0], dict) else None
            if code == "NetStream.Publish.Start" and not self.started.is_set():
                self._begin = self._loop.time()
                self.started.set()
                self._send_due()
            elif isinstance(code, str) and "Publish" in code and code.endswith(
                ("BadName", "Rejected", "Failed")
            ):
                self._finish(f"refused: {code}")
        elif name == "_error":
            self._finish("connect refused")

    # -- media ---------------------------------------------------------------------------

    def _send_due(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        now_ms = (self._loop.time() - self._begin) * 1000
        end_ms = self._seconds * 1000
        entries = self._entries
        while True:
            if self._index == len(entries):
                self._entries = entries = self._schedule.loop
                self._index = 0
                self._shift_ms += self._schedule.loop_ms
            due, writes = entries[self._index]
            due += self._shift_ms
            if due >= end_ms:
                self._unpublish()
                return
            if due > now_ms:
                break
            self.max_late_ms = max(self.max_late_ms, now_ms - due)
            for piece in writes:
                transport.write(piece)
            self._index += 1
        self.max_buffered = max(self.max_buffered, transport.get_write_buffer_size())
        self._timer = self._loop.call_at(self._begin + due / 1000, self._send_due)

    def _unpublish(self) -> None:
        self._command("FCUnpublish", 6.0, None, self.key, stream=0)
        self._command("deleteStream", 7.0, None, float(STREAM_ID), stream=0)
        self._finish("")

    def _finish(self, problem: str) -> None:
        if not self.done.done():
            self.done.set_result(problem)
        if self._transport is not None:
            self._transport.close()  # after what is buffered has gone
        self.started.set()


async def publish_all(
    host: str, port: int, streams: int, seconds: float, path: Path, writes: str
) -> dict[str, object]:
    schedule = build_schedule(read_flv(path), writes)
    loop = asyncio.get_running_loop()
    publishers = [Publisher(f"bench{i:03}", schedule, seconds) for i in range(streams)]
    gate = asyncio.Semaphore(50)  # a burst of hundreds would overflow the listen backlog

    async def start(publisher: Publisher) -> None:
        async with gate:
            try:
                await loop.create_connection(lambda: publisher, host, port)
            except OSError as error:
                publisher.done.set_result(f"could not connect: {error}")
                return
            try:
                await asyncio.wait_for(publisher.started.wait(), SETUP_SECONDS)
            except TimeoutError:
                publisher._finish("no Publish.Start in time")

    began = time.monotonic()
    await asyncio.gather(*(start(p) for p in publishers))
    results = await asyncio.gather(*(p.done for p in publishers))
    await asyncio.sleep(0.5)  # let the last closes go out
    problems = {p.key: r for p, r in zip(publishers, results, strict=True) if r}
    return {
        "streams": streams,
        "finished": streams - len(problems),
        "problems": dict(sorted(problems.items())[:5]),
        "max_buffered": max(p.max_buffered for p in publishers),
        "max_late_ms": round(max(p.max_late_ms for p in publishers), 1),
        "seconds": round(time.monotonic() - began, 2),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.rtmp_sender")
    parser.add_argument("file", type=Path, help="an FLV file (H.264/AAC)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="media per publish")
    parser.add_argument("--writes", choices=("chunk", "message"), default="chunk")
    args = parser.parse_args(argv)
    report = run(
        publish_all(args.host, args.port, args.streams, args.seconds, args.file, args.writes)
    )
    print(json.dumps(report), flush=True)
    return 0 if report["finished"] == args.streams else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
