"""Mutation fuzzing of the live server, seeded from a real ffmpeg session.

10,000 mutated or truncated sessions hit the server while a real ffmpeg stream runs
beside them. The server must stay up, the real stream must lose no frame, memory must
stay bounded, and no connection may end in anything but an orderly close (an unexpected
exception is logged at ERROR by the server and fails the test).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from ingest.connection import ConnectionLimits
from ingest.server import IngestConfig
from ingest.throttle import ThrottlePolicy
from tests.ingest.clients import ffmpeg_publish
from tests.ingest.harness import EVENT_LOOPS, FakeGatekeeper
from tests.support.session_fuzz import (
    CONCURRENCY,
    HANDSHAKE,
    fuzz,
    record_session,
    resident_megabytes,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("loop_thread", list(EVENT_LOOPS), indirect=True),
]

SESSIONS = 10_000


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
