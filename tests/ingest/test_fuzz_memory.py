"""Memory under fuzzing: three rounds of malformed sessions, and the server's resident
memory after the third is where it was after the first.

The first round grows the heap to its working size (buffers, the allocator's arenas, the
event loop's structures); a leak would keep it growing round after round. Everything the
test itself keeps is constant: the gatekeeper and the sinks record nothing per session.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import tracemalloc

import pytest

from ingest.connection import ConnectionLimits
from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth
from ingest.server import IngestConfig
from ingest.sink import NullSink
from ingest.throttle import ThrottlePolicy
from tests.ingest.harness import FakeGatekeeper
from tests.ingest.test_fuzz import CONCURRENCY, HANDSHAKE, fuzz, record_session, resident_megabytes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),  # 9,000 sessions; several times longer under tracemalloc
    pytest.mark.parametrize("loop_thread", ["uvloop"], indirect=True),
]

ROUNDS = 3
SESSIONS_PER_ROUND = 3_000
ALLOWED_GROWTH_MB = 5.0


class CountingGatekeeper:
    """Admits one key, keeps counts only (FakeGatekeeper keeps every call)."""

    def __init__(self) -> None:
        self.admitted = self.released = 0

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        if request.key != "fuzz":
            return await FakeGatekeeper().admit(request)
        self.admitted += 1
        return Grant(self.admitted, "fuzzed")

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool:
        return True

    async def release(
        self, grant: Grant, reason: EndReason, description: StreamDescription, health: StreamHealth
    ) -> None:
        self.released += 1


def test_memory_stops_growing_over_three_fuzz_rounds(start_ingest, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="ingest")
    gatekeeper = CountingGatekeeper()
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
        sink_factory=lambda grant: NullSink(),
    )
    target = (ingest.host, ingest.port)
    seed = asyncio.run(record_session(target, frames=60))
    assert len(seed) > HANDSHAKE + 10_000

    # GOLIVE_FUZZ_TRACEMALLOC=1 prints where Python's heap grew from round 1 to round 3
    # (slows the rounds down; RSS then includes tracemalloc's own bookkeeping).
    tracing = bool(os.environ.get("GOLIVE_FUZZ_TRACEMALLOC"))
    if tracing:
        tracemalloc.start(8)
    snapshots: list[tracemalloc.Snapshot] = []
    rss: list[float] = []
    for round_number in range(ROUNDS):
        outcomes = asyncio.run(
            fuzz(target, seed, SESSIONS_PER_ROUND, first=round_number * SESSIONS_PER_ROUND)
        )
        assert outcomes["sent"] + outcomes["reset"] == SESSIONS_PER_ROUND
        deadline = time.monotonic() + 10
        while ingest.server.connections and time.monotonic() < deadline:
            time.sleep(0.1)
        gc.collect()
        rss.append(resident_megabytes())
        if tracing:
            snapshots.append(tracemalloc.take_snapshot())
    if tracing:
        for stat in snapshots[-1].compare_to(snapshots[0], "traceback")[:12]:
            print(stat, *stat.traceback.format()[-4:], sep="\n  ")
    print(f"\nfuzz rounds of {SESSIONS_PER_ROUND}: RSS " + ", ".join(f"{r:.1f}" for r in rss)
          + f" MB; {gatekeeper.admitted} admitted, {gatekeeper.released} released")
    assert gatekeeper.admitted > 0, "no mutated session got as far as a publish"
    assert gatekeeper.released == gatekeeper.admitted
    assert ingest.server.connections == []
    assert rss[-1] - rss[0] <= ALLOWED_GROWTH_MB, f"RSS by round: {rss}"
    unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unexpected, unexpected[0].getMessage()
