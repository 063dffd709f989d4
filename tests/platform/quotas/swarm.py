"""A swarm of RTMP publishers on one event loop: many publish attempts at once, each
reporting what the server answered (NetStream.Publish.Start, or the refusal's words).

Speaks the protocol with golive's own sans-IO codecs (a client needs the same chunk and
AMF encoding); the server under test decides, the swarm only asks and listens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ingest.protocol import ChunkReader, ChunkWriter, Message, decode_command, encode_command
from ingest.protocol.handshake import ClientHandshake

ADMITTED = "NetStream.Publish.Start"


@dataclass
class Attempt:
    key: str
    code: str = ""
    description: str = ""
    writer: asyncio.StreamWriter | None = None
    sent_at: float = 0.0  # loop time the publish command was sent

    @property
    def admitted(self) -> bool:
        return self.code == ADMITTED

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def attempt(host: str, port: int, key: str, limit: float = 30.0) -> Attempt:
    """Handshake, connect, createStream, publish; returns when the server has answered
    the publish (the connection stays open if it was admitted: `Attempt.close`)."""
    result = Attempt(key)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
    chunks_in, chunks_out = ChunkReader(), ChunkWriter()

    def command(name: str, txn: float, obj: object, *args: object, stream_id: int = 0) -> None:
        payload = encode_command(name, txn, obj, *args)  # type: ignore[arg-type]
        writer.write(chunks_out.encode(Message(3, 20, stream_id, 0, payload)))

    try:
        async with asyncio.timeout(limit):
            handshake = ClientHandshake()
            writer.write(handshake.start())
            leftover = b""
            while not handshake.done:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("closed during the handshake")
                reply = handshake.feed(data)
                if reply:
                    writer.write(reply)
            leftover = handshake.leftover
            command("connect", 1.0, {"app": "live", "type": "nonprivate",
                                     "tcUrl": f"rtmp://{host}:{port}/live"})
            command("createStream", 2.0, None)
            command("publish", 3.0, None, key, "live", stream_id=1)
            result.sent_at = asyncio.get_running_loop().time()
            data = leftover
            while True:
                for message in chunks_in.feed(data):
                    if message.type_id != 20:
                        continue
                    decoded = decode_command(message.payload)
                    if decoded.name == "onStatus" and decoded.args:
                        info = decoded.args[0]
                        assert isinstance(info, dict)
                        result.code = str(info.get("code", ""))
                        result.description = str(info.get("description", ""))
                        if result.admitted:
                            result.writer = writer
                        else:
                            writer.close()
                        return result
                data = await reader.read(65536)
                if not data:
                    result.code = "closed"
                    writer.close()
                    return result
    except (TimeoutError, ConnectionError, OSError) as error:
        result.code = f"error: {error!r}"
        writer.close()
        return result


async def swarm(host: str, ports: list[int], keys: list[str]) -> list[Attempt]:
    """Every key publishes at once, spread over the ingest ports in turn."""
    return list(
        await asyncio.gather(
            *(attempt(host, ports[i % len(ports)], key) for i, key in enumerate(keys))
        )
    )
