"""Mutation fuzzing of a live ingest: a real ffmpeg session recorded through a proxy, then
sent back mutated, many at a time."""

from __future__ import annotations

import asyncio
import random

from tests.ingest.clients import ffmpeg_publish

CONCURRENCY = 48


HANDSHAKE = 1 + 1536 + 1536


def resident_megabytes() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def record_session(target: tuple[str, int], frames: int) -> bytes:
    """Runs ffmpeg through a recording proxy; returns what the client sent."""
    recorded = bytearray()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            while data := await src.read(65536):
                if keep:
                    recorded.extend(data)
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pump(reader, upstream_writer, True),
            pump(upstream_reader, writer, False),
            return_exceptions=True,
        )

    proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    result = await asyncio.to_thread(
        ffmpeg_publish, f"rtmp://127.0.0.1:{port}/live/fuzz", frames=frames, size="320x240"
    )
    assert result.returncode == 0, result.stderr
    proxy.close()
    return bytes(recorded)


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed[: rng.randint(HANDSHAKE // 2, len(seed))])
    # Mostly past the handshake, where the chunk, AMF and FLV parsers live.
    low = HANDSHAKE if rng.random() < 0.85 and len(data) > HANDSHAKE + 16 else 0
    for _ in range(rng.randint(1, 6)):
        if len(data) <= low + 1:
            break
        at = rng.randrange(low, len(data))
        kind = rng.randrange(6)
        if kind == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[at] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC3, 0x03))
        elif kind == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        elif kind == 3:
            del data[at : at + rng.randint(1, 256)]
        elif kind == 4:
            end = min(len(data), at + rng.randint(1, 512))
            data[at:at] = data[at:end]
        else:
            data[at : at + 4] = rng.choice(
                (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f")
            )
    return bytes(data)


async def fuzz(
    target: tuple[str, int], seed: bytes, count: int, first: int = 0
) -> dict[str, int]:
    """Sends ``count`` mutated sessions (numbered from ``first``: each number is one
    mutation, always the same), CONCURRENCY at a time."""
    outcomes = {"sent": 0, "reset": 0}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(session: int) -> None:
        async with gate:
            # Made here, not up front: 10,000 payloads at once would be half a gigabyte.
            payload = mutate(seed, random.Random(session * 7919 + 20261121))
            try:
                reader, writer = await asyncio.open_connection(*target)
                for start in range(0, len(payload), 8192):
                    writer.write(payload[start : start + 8192])
                await writer.drain()
                writer.write_eof()
                async with asyncio.timeout(5):
                    while await reader.read(65536):
                        pass
                outcomes["sent"] += 1
            except (ConnectionError, TimeoutError, OSError):
                outcomes["reset"] += 1
            finally:
                if "writer" in locals():
                    writer.close()

    await asyncio.gather(*(one(session) for session in range(first, first + count)))
    return outcomes
