"""Memory under fuzzing: three rounds of malformed sessions, and the server's resident
memory after the third is where it was after the first.

The first round grows the heap to its working size (buffers, the allocator's arenas, the
event loop's structures); a leak would keep it growing round after round. The sessions
are sent by a child process, so this process's memory is the server's; everything the
test keeps is constant (the gatekeeper and the sinks record nothing per session).

RSS is read after each round once glibc has returned its free memory (`malloc_trim`):
plain RSS also holds the allocator's high-water mark, which moves up and down by up to
10 MB from round to round with the sizes of the buffers in flight (glibc raises its mmap
threshold to the largest block freed, so later large buffers come from the heap and stay
there once freed). What is still allocated after a trim is what a leak would grow. Both
figures are printed. Measured over 10 rounds (30,000 sessions): trimmed RSS 110.4, 110.8,
110.9, ... 109.9 MB (flat); plain RSS between 119 and 130 MB, not rising. Python's own
heap (GOLIVE_FUZZ_TRACEMALLOC=1) grew by some 40 KB from round 1 to 3, all of it log
records the test captures.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from ingest.connection import ConnectionLimits
from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth
from ingest.server import IngestConfig
from ingest.sink import NullSink
from ingest.throttle import ThrottlePolicy
from tests.ingest.clients import ROOT
from tests.ingest.harness import FakeGatekeeper
from tests.support.session_fuzz import (
    CONCURRENCY,
    HANDSHAKE,
    fuzz,
    record_session,
    resident_megabytes,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),  # 9,000 sessions; several times longer under tracemalloc
    pytest.mark.parametrize("loop_thread", ["uvloop"], indirect=True),
]

ROUNDS = int(os.environ.get("GOLIVE_FUZZ_ROUNDS", "3"))  # more to see where it levels off
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


def resident_after_trim() -> float:
    """RSS once glibc has handed its free memory back (malloc_trim): what is in use,
    without the allocator's high-water. Plain RSS where the C library is not glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return resident_megabytes()


def fuzz_from_a_child(
    target: tuple[str, int], seed_file: Path, count: int, first: int
) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.ingest.test_fuzz_memory", target[0], str(target[1]),
         str(seed_file), str(count), str(first)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    return outcomes


def test_memory_stops_growing_over_three_fuzz_rounds(start_ingest, caplog, tmp_path) -> None:
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
    seed_file = tmp_path / "session.bin"
    seed_file.write_bytes(seed)
    rss: list[float] = []  # after malloc_trim
    plain: list[float] = []
    for round_number in range(ROUNDS):
        outcomes = fuzz_from_a_child(
            target, seed_file, SESSIONS_PER_ROUND, first=round_number * SESSIONS_PER_ROUND
        )
        assert outcomes["sent"] + outcomes["reset"] == SESSIONS_PER_ROUND
        deadline = time.monotonic() + 10
        while ingest.server.connections and time.monotonic() < deadline:
            time.sleep(0.1)
        gc.collect()
        plain.append(resident_megabytes())
        rss.append(resident_after_trim())
        if tracing:
            snapshots.append(tracemalloc.take_snapshot())
    if tracing:
        for stat in snapshots[-1].compare_to(snapshots[0], "traceback")[:12]:
            print(stat, *stat.traceback.format()[-4:], sep="\n  ")
    print(f"\nfuzz rounds of {SESSIONS_PER_ROUND}: RSS after malloc_trim "
          + ", ".join(f"{r:.1f}" for r in rss) + " MB; plain RSS "
          + ", ".join(f"{r:.1f}" for r in plain)
          + f" MB; {gatekeeper.admitted} admitted, {gatekeeper.released} released")
    assert gatekeeper.admitted > 0, "no mutated session got as far as a publish"
    assert gatekeeper.released == gatekeeper.admitted
    assert ingest.server.connections == []
    assert abs(rss[2] - rss[0]) <= ALLOWED_GROWTH_MB, f"RSS by round: {rss}"
    unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unexpected, unexpected[0].getMessage()


if __name__ == "__main__":
    # The fuzzing client, as a child process: host port seed-file count first.
    _host, _port, _seed, _count, _first = sys.argv[1:]
    _outcomes = asyncio.run(
        fuzz((_host, int(_port)), Path(_seed).read_bytes(), int(_count), int(_first))
    )
    print(json.dumps(_outcomes))
