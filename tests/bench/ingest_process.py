"""golive's ingest as a process of its own, for the benchmark to measure: every key is
admitted (the key is the channel), media goes to counting sinks.

    python -m tests.bench.ingest_process [--host H] [--port P] [--profile PATH]
                                         [--read-batch-seconds S]

Prints `{"port": N}` on one line once listening. At SIGTERM or SIGINT it stops the
server (every publish still running is released) and prints one line
`{"streams": {channel: {...}}}` with each publish's counts, end reason and worst lag.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import signal
import sys
from dataclasses import replace

from ingest.connection import ConnectionLimits
from ingest.gatekeeper import EndReason, Grant, PublishRequest, StreamDescription
from ingest.health import StreamHealth
from ingest.runner import run
from ingest.server import IngestConfig, IngestServer
from ingest.sink import RecordingSink


class AdmitEveryKey:
    """A gatekeeper with no platform behind it; also the sink factory, to keep the counts."""

    def __init__(self) -> None:
        self._next_id = 1
        self.sinks: dict[str, RecordingSink] = {}
        self.reasons: dict[str, str] = {}
        self.max_lag_ms: dict[str, int] = {}

    async def admit(self, request: PublishRequest) -> Grant:
        grant = Grant(self._next_id, request.key)
        self._next_id += 1
        return grant

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool:
        channel = grant.channel
        self.max_lag_ms[channel] = max(self.max_lag_ms.get(channel, 0), health.lag_ms)
        return True

    async def release(
        self,
        grant: Grant,
        reason: EndReason,
        description: StreamDescription,
        health: StreamHealth,
    ) -> None:
        self.reasons[grant.channel] = reason.value

    def open_sink(self, grant: Grant) -> RecordingSink:
        sink = RecordingSink(grant)
        self.sinks[grant.channel] = sink
        return sink

    def report(self) -> dict[str, object]:
        return {
            "streams": {
                channel: {
                    "video_frames": sink.video_frames,
                    "audio_frames": sink.audio_frames,
                    "keyframes": sink.keyframes,
                    "ended": sink.ended.value if sink.ended else None,
                    "released": self.reasons.get(channel),
                    "max_lag_ms": self.max_lag_ms.get(channel),
                }
                for channel, sink in self.sinks.items()
            }
        }


async def serve(
    host: str, port: int, heartbeat_interval: float, read_batch_seconds: float | None = None
) -> dict[str, object]:
    gatekeeper = AdmitEveryKey()
    limits = ConnectionLimits()
    if read_batch_seconds is not None:
        limits = replace(limits, read_batch_seconds=read_batch_seconds)
    config = IngestConfig(
        node="bench",
        max_connections_per_ip=10_000,  # every publisher comes from 127.0.0.1
        heartbeat_interval=heartbeat_interval,
        limits=limits,
    )
    server = IngestServer(gatekeeper, gatekeeper.open_sink, config)
    await server.start(host, port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    print(json.dumps({"port": server.address[1]}), flush=True)
    await stopping.wait()
    await server.stop(grace=5)
    return gatekeeper.report()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.ingest_process")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--heartbeat-interval", type=float, default=2.0)
    parser.add_argument("--plain-asyncio", action="store_true", help="not uvloop")
    parser.add_argument(
        "--read-batch-seconds", type=float, help="ConnectionLimits.read_batch_seconds"
    )
    parser.add_argument("--profile", metavar="PATH", help="write cProfile stats of the run here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    report = (asyncio.run if args.plain_asyncio else run)(
        serve(args.host, args.port, args.heartbeat_interval, args.read_batch_seconds)
    )
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
