"""Mutation fuzzing of the live server, seeded from a real ffmpeg session.

10,000 mutated or truncated sessions hit the server while a real ffmpeg stream runs
beside them. The server must stay up, the real stream must lose no frame, memory must
stay bounded, and no connection may end in anything but an orderly close (an unexpected
exception is logged at ERROR by the server and fails the test).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest

from ingest.connection import ConnectionLimits
from ingest.server import IngestConfig
from ingest.throttle import ThrottlePolicy
from tests.ingest.clients import ffmpeg_publish
from tests.ingest.harness import EVENT_LOOPS, FakeGatekeeper

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("loop_thread", list(EVENT_LOOPS), indirect=True),
]

SESSIONS = 10_000
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


def test_ten_thousand_mutated_sessions_beside_a_real_stream(start_ingest, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="ingest")
    gatekeeper = FakeGatekeeper(keys={"fuzz": "fuzzed", "real": "real"})
    ingest = start_ingest(
        gatekeeper,
        IngestConfig(
            node="fuzz",
            max_connections_per_ip=CONCURRENCY * 4,
            limits=ConnectionLimits(
                handshake_timeout=2, publish_timeout=2, media_timeout=2, failed_key_delay=0
            ),
            throttle=ThrottlePolicy(max_failures=10**9),
        ),
    )
    target = (ingest.host, ingest.port)
    seed = asyncio.run(record_session(target, frames=60))
    assert len(seed) > HANDSHAKE + 10_000

    rss_before = resident_megabytes()
    real_frames = 1500
    real = ffmpeg_publish(ingest.url("real"), frames=real_frames, realtime=True, background=True)
    started = time.monotonic()
    outcomes = asyncio.run(fuzz(target, seed, SESSIONS))
    fuzz_seconds = time.monotonic() - started
    rss_after = resident_megabytes()

    assert real.poll() is None, "the real stream ended during the fuzz: lengthen it"
    _, stderr = real.communicate(timeout=120)
    assert real.returncode == 0, stderr
    assert ingest.sink_for("real").video_frames == real_frames
    assert outcomes["sent"] + outcomes["reset"] == SESSIONS
    deadline = time.monotonic() + 10
    while ingest.server.connections and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ingest.server.connections == []
    assert rss_after - rss_before < 200, f"memory grew {rss_after - rss_before:.0f} MB"
    unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unexpected, unexpected[0].getMessage()
    # The server still takes a clean publish afterwards.
    gatekeeper.keys["after"] = "after"
    result = ffmpeg_publish(ingest.url("after"), frames=30)
    assert result.returncode == 0, result.stderr
    print(
        f"\nfuzz: {SESSIONS} sessions in {fuzz_seconds:.1f} s ({outcomes}), "
        f"{len(gatekeeper.admitted)} admitted, RSS {rss_before:.0f} -> {rss_after:.0f} MB"
    )
