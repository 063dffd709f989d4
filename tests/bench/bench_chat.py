"""`python -m tests.bench chat`: chat fan-out in one origin process.

N WebSocket clients join one room of one `daphne golive.asgi:application` process (the
cluster configuration: Redis bus, SQLite for the room lookup); the bench publishes 10
messages a second into the room the way a sending origin does (one PUBLISH on the room's
channel) and every client notes each message's delivery latency (now minus the send time
the message carries). The same clients, in the same run, then join the reference: the
channels_redis core layer's groups (`tests/bench/chat_reference.py`: ``group_add`` per
socket, ``group_send`` per message, as in Channels' tutorial).

Printed per setup: sockets connected and still connected at the end, messages delivered
out of those sent (per socket), delivery latency p50/p99/max, and the server's memory per
socket (VmRSS with N sockets minus before any, over N). Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.processes import (
    Processes,
    cpu_seconds,
    free_port,
    raise_open_files_limit,
    rss_bytes,
    tail,
    wait_listening,
)

ROOT = Path(__file__).resolve().parents[2]
ROOM = "benchroom"


@dataclass
class Result:
    name: str
    sockets: int
    connected: int = 0
    alive_at_end: int = 0
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    rss_idle: int = 0
    rss_held: int = 0
    cpu: float = 0.0
    seconds: float = 0.0
    connect_seconds: float = 0.0

    @property
    def delivered(self) -> float:
        expected = self.sent * max(self.connected, 1)
        return len(self.latencies) / expected if expected else 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def server_env(workdir: Path, redis_url: str, prefix: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("GOLIVE_", "S3_", "DATABASE_", "CELERY_", "REDIS_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        DJANGO_SETTINGS_MODULE="golive.settings",
        REDIS_URL=redis_url,
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECRET_KEY=secrets.token_urlsafe(32),
        GOLIVE_DATA_DIR=str(workdir / "var"),
        MEDIA_ROOT=str(workdir / "media"),
        GOLIVE_REDIS_PREFIX=prefix,
        LOG_LEVEL="WARNING",
    )
    return env


def prepare(env: dict[str, str]) -> None:
    for command in (["migrate", "-v", "0"], ["createstreamer", ROOM, "--json"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=300)


def start_server(processes: Processes, app: str, env: dict[str, str], log: Path) -> tuple[int, int]:
    port = free_port()
    endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=4096"
    with log.open("wb") as output:
        process = processes.start(
            [sys.executable, "-m", "daphne", "-e", endpoint, "-v", "0", app],
            many_files=True, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )
    if not wait_listening(port, process, timeout=60):
        raise RuntimeError(f"{app} did not start: {tail(log)}")
    return port, process.pid


async def run_clients(
    name: str, port: int, pid: int, sockets: int, seconds: float, rate: float,
    publish, settle: float,
) -> Result:
    import websockets

    result = Result(name, sockets)
    await asyncio.sleep(1.0)
    result.rss_idle = rss_bytes(pid)
    url = f"ws://127.0.0.1:{port}/ws/chat/{ROOM}"
    clients: list = []
    started = time.monotonic()

    async def open_one():
        for _attempt in range(3):
            try:
                return await websockets.connect(
                    url, origin=f"http://127.0.0.1:{port}", open_timeout=30,
                    ping_interval=None, max_queue=None, compression=None,
                )
            except Exception:
                await asyncio.sleep(0.5)
        return None

    for start in range(0, sockets, 100):
        batch = await asyncio.gather(*(open_one() for _ in range(min(100, sockets - start))))
        clients.extend(c for c in batch if c is not None)
    result.connect_seconds = time.monotonic() - started
    result.connected = len(clients)
    await asyncio.sleep(settle)
    result.rss_held = rss_bytes(pid)
    cpu_before = cpu_seconds(pid)
    latencies = result.latencies
    marker = '"ts":'

    async def read(client):
        try:
            async for frame in client:
                at = frame.find(marker)
                if at >= 0:
                    end = frame.find(",", at)
                    latencies.append(time.time() - float(frame[at + len(marker):end]))
        except Exception:
            return

    readers = [asyncio.ensure_future(read(c)) for c in clients]
    interval = 1.0 / rate
    begin = time.monotonic()
    n = 0
    while time.monotonic() - begin < seconds:
        n += 1
        frame = json.dumps({"t": "msg", "ts": time.time(), "id": n, "user": "bench",
                            "role": "viewer", "text": "x" * 60})
        await publish(frame)
        result.sent += 1
        await asyncio.sleep(max(0.0, begin + n * interval - time.monotonic()))
    await asyncio.sleep(3.0)  # the last messages' delivery
    result.seconds = time.monotonic() - begin
    result.cpu = cpu_seconds(pid) - cpu_before
    result.alive_at_end = sum(1 for c in clients if c.state.name == "OPEN")
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return result


def print_result(result: Result) -> None:
    per_socket = (result.rss_held - result.rss_idle) / max(result.connected, 1)
    print(
        f"{result.name:<30} {result.connected:>6}/{result.sockets:<6} {result.alive_at_end:>6}"
        f" {result.delivered * 100:>8.1f}% {result.quantile(0.5) * 1000:>8.1f}"
        f" {result.quantile(0.99) * 1000:>8.1f} {max(result.latencies, default=0) * 1000:>8.0f}"
        f" {per_socket / 1024:>8.1f} {result.rss_held / 2**20:>7.0f}"
        f" {result.cpu / max(result.seconds, 0.001) * 100:>6.0f}%"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench chat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", default="2000",
                        help="comma-separated socket counts, e.g. 500,2000,4000 [2000]")
    parser.add_argument("--seconds", type=float, default=15.0, help="messages for [15] s")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second [10]")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--only", default="golive,channels_redis")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    counts = [int(n) for n in args.sockets.split(",")]
    only = set(args.only.split(","))
    prefix = f"bench-{secrets.token_hex(4)}"
    print(f"chat fan-out, one daphne process, one room, {args.rate:g} messages/s for"
          f" {args.seconds:g} s; Redis {args.redis}")
    print(f"{'setup':<30} {'sockets':>13} {'alive':>6} {'delivered':>9} {'p50 ms':>8}"
          f" {'p99 ms':>8} {'max ms':>8} {'KiB/sock':>8} {'RSS MiB':>7} {'CPU':>7}")
    results = asyncio.run(_run(args, counts, only, prefix))
    for result in results:
        print_result(result)
    return 0


async def _run(args, counts, only, prefix) -> list[Result]:
    import redis.asyncio as aioredis

    results = []
    with tempfile.TemporaryDirectory(prefix="golive-chat-bench-") as tmp, Processes() as procs:
        workdir = Path(tmp)
        env = server_env(workdir, args.redis, prefix)
        prepare(env)
        publisher = aioredis.Redis.from_url(args.redis)
        for sockets in counts:
            if "golive" in only:
                port, pid = start_server(procs, "golive.asgi:application", env,
                                         workdir / f"golive-{sockets}.log")

                async def publish(frame: str) -> None:
                    await publisher.publish(f"{prefix}:chat:{ROOM}", frame)

                results.append(await run_clients(
                    "golive (pub/sub + queues)", port, pid, sockets, args.seconds, args.rate,
                    publish, settle=2.0,
                ))
                procs.close()
            if "channels_redis" in only:
                from channels_redis.core import RedisChannelLayer

                port, pid = start_server(procs, "tests.bench.chat_reference:application", env,
                                         workdir / f"reference-{sockets}.log")
                layer = RedisChannelLayer(hosts=[args.redis])

                async def group_send(frame: str, layer=layer) -> None:
                    await layer.group_send("bench-room", {"type": "chat.message", "text": frame})

                results.append(await run_clients(
                    "channels_redis core groups", port, pid, sockets, args.seconds, args.rate,
                    group_send, settle=2.0,
                ))
                await layer.flush()
                procs.close()
        await publisher.aclose()
    return results
