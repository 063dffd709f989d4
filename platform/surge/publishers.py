"""A publisher surge: M publish attempts spread evenly over T seconds against the ingest
nodes it is given, each reporting what the server answered and how long the answer took
(from the `publish` command's write to its `onStatus`).

Speaks RTMP with golive's own sans-IO codecs. An admitted publisher keeps its slot until
the end of the run by sending a tiny audio message every second (a silent publisher is
dropped after 10 s, which would free its slot for the next one and muddle the count).

Against an ingest on this machine, the publishes can come from many loopback addresses
(127.1.0.1, 127.1.0.2, ...), as a real surge comes from many encoders: from one address,
the ingest's wrong-key throttle checks at most a handful of keys at a time, rightly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ingest.protocol import ChunkReader, ChunkWriter, Message, decode_command, encode_command
from ingest.protocol.amf0 import AmfValue
from ingest.protocol.handshake import ClientHandshake

from .report import percentiles

ADMITTED = "NetStream.Publish.Start"
MAX_PUBLISHES = 20_000
MAX_SECONDS = 3600.0
MAX_ADDRESSES = 250 * 256
# An AAC sequence header (AAC LC, 44.1 kHz, stereo): media that keeps an admitted
# publisher alive without feeding the packager any frame.
_KEEPALIVE = b"\xaf\x00\x12\x10"

# The refusal's reason from its sentence (streams.broadcasts and ingest word them).
_REASONS = (
    ("capacity", re.compile(r"golive is at capacity \(")),
    ("partner_reserve", re.compile(r"slots are kept for partner")),
    ("already_live", re.compile(r"already live")),
    ("unknown_key", re.compile(r"Unknown or revoked stream key")),
    ("cooldown", re.compile(r"stopped by golive staff")),
    ("banned", re.compile(r"banned")),
    ("busy", re.compile(r"could not check your stream key in time")),
)
_WAIT = re.compile(r"[Tt]ry again in (about (an?|\d+) (minute|minutes|hour|hours))")


def reason_of(description: str) -> str:
    for reason, pattern in _REASONS:
        if pattern.search(description):
            return reason
    return "other"


def wait_of(description: str) -> int | None:
    """The wait a refusal estimated, in seconds; None when it gave none."""
    match = _WAIT.search(description)
    if match is None:
        return None
    amount = 1 if match.group(2) in ("a", "an") else int(match.group(2))
    return amount * (3600 if match.group(3).startswith("hour") else 60)


@dataclass
class Attempt:
    key_index: int
    code: str = ""
    description: str = ""
    decision: float | None = None  # s from the publish command to its answer
    error: str = ""

    @property
    def admitted(self) -> bool:
        return self.code == ADMITTED


def source_address(index: int) -> str:
    """The ``index``-th loopback address publishes may come from: 127.1.0.1 onwards."""
    if not 0 <= index < MAX_ADDRESSES:
        raise ValueError(f"at most {MAX_ADDRESSES} source addresses")
    return f"127.1.{index // 250}.{index % 250 + 1}"


def _address(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "rtmp" or not parts.hostname:
        raise ValueError(f"an rtmp:// URL of an ingest node, not {url!r}")
    return parts.hostname, parts.port or 1935, parts.path.strip("/").split("/")[0] or "live"


async def attempt(
    url: str, key: str, index: int, decided: asyncio.Future[Attempt], release: asyncio.Event,
    limit: float = 30.0, source: str | None = None,
) -> Attempt:
    """One publish (from the local address ``source``, default the system's choice);
    ``decided`` resolves with the answer, and an admitted publisher then keeps its slot
    until ``release`` is set."""
    try:
        return await _attempt(url, key, index, decided, release, limit, source)
    finally:
        if not decided.done():
            decided.set_result(Attempt(index, error="no answer"))


async def _attempt(
    url: str, key: str, index: int, decided: asyncio.Future[Attempt], release: asyncio.Event,
    limit: float, source: str | None,
) -> Attempt:
    host, port, app = _address(url)
    result = Attempt(index)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(
                host, port, local_addr=(source, 0) if source else None)
    except (OSError, TimeoutError) as error:
        result.error = f"connect: {error!r}"
        return result
    chunks_in, chunks_out = ChunkReader(), ChunkWriter()

    def command(
        name: str, txn: float, obj: AmfValue, *args: AmfValue, stream_id: int = 0
    ) -> None:
        payload = encode_command(name, txn, obj, *args)
        writer.write(chunks_out.encode(Message(3, 20, stream_id, 0, payload)))

    try:
        async with asyncio.timeout(limit):
            handshake = ClientHandshake()
            writer.write(handshake.start())
            while not handshake.done:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("closed during the handshake")
                reply = handshake.feed(data)
                if reply:
                    writer.write(reply)
            command("connect", 1.0, {"app": app, "type": "nonprivate",
                                     "tcUrl": f"rtmp://{host}:{port}/{app}"})
            command("createStream", 2.0, None)
            command("publish", 3.0, None, key, "live", stream_id=1)
            sent = loop.time()
            data = handshake.leftover
            while not result.code:
                for message in chunks_in.feed(data):
                    if message.type_id != 20:
                        continue
                    decoded = decode_command(message.payload)
                    if decoded.name == "onStatus" and decoded.args:
                        info = decoded.args[0]
                        if isinstance(info, dict):
                            result.decision = loop.time() - sent
                            result.code = str(info.get("code", ""))
                            result.description = str(info.get("description", ""))
                            break
                if result.code:
                    break
                data = await reader.read(65536)
                if not data:
                    result.error = "closed before an answer"
                    return result
        decided.set_result(result)
        if result.admitted:
            # Hold the slot until every publish has its answer, as a live encoder would:
            # a slot given back early would be taken by a later publish.
            timestamp = 0
            while not release.is_set():
                writer.write(chunks_out.encode(Message(4, 8, 1, timestamp, _KEEPALIVE)))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await release.wait()
                timestamp += 1000
    except (TimeoutError, ConnectionError, OSError) as error:
        result.error = result.error or repr(error)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return result


async def surge(
    urls: list[str], keys: list[str], count: int, seconds: float, hold: float = 5.0,
    addresses: int = 0,
) -> list[Attempt]:
    """``count`` publishes, evenly spread over ``seconds``, the ingest URLs taken in turn
    and the keys in order (repeating when there are fewer keys than publishes), from
    ``addresses`` loopback addresses in turn (0: the system's choice). Admitted
    publishers hold their slot until ``hold`` seconds after the last answer."""
    if not urls or not keys:
        raise ValueError("at least one ingest URL and one key")
    if not 1 <= count <= MAX_PUBLISHES or not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"1 to {MAX_PUBLISHES} publishes over 0 to {MAX_SECONDS:g} s")
    if not 0 <= addresses <= MAX_ADDRESSES:
        raise ValueError(f"0 to {MAX_ADDRESSES} source addresses")
    for url in urls:
        host = _address(url)[0]
        if addresses and not ipaddress.ip_address(
                socket.gethostbyname(host)).is_loopback:
            raise ValueError(f"publishes come from loopback addresses: {host} is not one")
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    release = asyncio.Event()
    tasks, answers = [], []
    for i in range(count):
        delay = start + seconds * i / count - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        decided: asyncio.Future[Attempt] = loop.create_future()
        answers.append(decided)
        source = source_address(i % addresses) if addresses else None
        tasks.append(loop.create_task(
            attempt(urls[i % len(urls)], keys[i % len(keys)], i, decided, release,
                    source=source)))
    results = list(await asyncio.gather(*answers))
    await asyncio.sleep(hold)
    release.set()
    await asyncio.gather(*tasks)
    return results


def summarise(attempts: list[Attempt], seconds: float) -> dict[str, Any]:
    refused = [a for a in attempts if a.code and not a.admitted]
    waits = Counter(str(wait_of(a.description)) for a in refused)
    return {
        "sent": len(attempts),
        "seconds": seconds,
        "admitted": sum(a.admitted for a in attempts),
        "refused": len(refused),
        "errors": sum(bool(a.error) and not a.code for a in attempts),
        "refusals": dict(Counter(reason_of(a.description) for a in refused).most_common()),
        "waits": dict(sorted(waits.items())),
        "decision_seconds": percentiles([a.decision for a in attempts if a.decision is not None]),
        "refusal_samples": sorted({a.description for a in refused})[:5],
        "at": time.time(),
    }
