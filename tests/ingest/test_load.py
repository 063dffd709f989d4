"""Fifty encoders on one ingest process: every publish is admitted, stays healthy, ends clean.

Each publisher is the ffmpeg CLI replaying a pre-encoded 720p30 ~3 Mb/s file in real time
(`-re -stream_loop -1 -c copy`), so the load is the ingest's, not x264's.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingest.gatekeeper import EndReason, Grant, StreamDescription
from ingest.health import StreamHealth
from ingest.server import IngestConfig
from tests.bench.sample import QUIET, Sample, encode_sample
from tests.bench.sample import SECONDS as SAMPLE_SECONDS
from tests.ingest.clients import require
from tests.ingest.harness import EVENT_LOOPS, FakeGatekeeper

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("loop_thread", list(EVENT_LOOPS), indirect=True),
]

PUBLISHERS = 50
PUBLISH_SECONDS = 15
FRAME_TOLERANCE = 0.03
# Fifty ffmpeg processes starting together take the two cores for a few seconds, and an
# encoder that fell behind then catches up in a burst; the 5 s frame-rate window has to
# be clear of that burst before the rate means anything.
WARM_UP_AFTER_LAST_ADMISSION = 7.0
HEALTHY_FRAME_RATE = (27.0, 33.0)  # the median of a stream's windows after warm-up
MAX_LAG_MS = 1000
# Any one window: a stream that keeps within MAX_LAG_MS of the wall clock may have lost
# or caught up that much media inside the 5 s window (CI saw the whole machine stall for
# ~0.5 s: 26.3 fps in one window, 34 in the next, every count and lag right).
WINDOW_SECONDS = 5.0
WINDOW_FRAME_RATE = (30 * (1 - MAX_LAG_MS / 1000 / WINDOW_SECONDS),
                     30 * (1 + MAX_LAG_MS / 1000 / WINDOW_SECONDS))
# Two of these tests side by side (100 encoders starting on two cores) stalled the first
# publishers by up to 1.3 s before they caught up; a stuck ingest would go far past this.
MAX_START_UP_LAG_MS = 3000


@dataclass
class ClockedGatekeeper(FakeGatekeeper):
    """The fake gatekeeper, with the monotonic time of each admission, heartbeat and release."""

    admitted_at: dict[str, float] = field(default_factory=dict)
    released_at: dict[str, float] = field(default_factory=dict)
    beats: list[tuple[float, str, StreamHealth]] = field(default_factory=list)

    async def admit(self, request):  # type: ignore[no-untyped-def]
        outcome = await super().admit(request)
        if isinstance(outcome, Grant):
            self.admitted_at[outcome.channel] = time.monotonic()
        return outcome

    async def heartbeat(
        self, grant: Grant, description: StreamDescription, health: StreamHealth
    ) -> bool:
        self.beats.append((time.monotonic(), grant.channel, health))
        return await super().heartbeat(grant, description, health)

    async def release(self, grant, reason, description, health):  # type: ignore[no-untyped-def]
        self.released_at[grant.channel] = time.monotonic()
        await super().release(grant, reason, description, health)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    require("ffmpeg")
    require("ffprobe")
    return encode_sample(tmp_path_factory.mktemp("load") / "720p30-3mbps.flv")


def publish(ffmpeg: str, sample: Path, url: str) -> subprocess.Popen[bytes]:
    command = [ffmpeg, *QUIET, "-re", "-stream_loop", "-1", "-i", str(sample)]
    command += ["-c", "copy", "-t", str(PUBLISH_SECONDS), "-f", "flv", url]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_fifty_publishers_on_one_ingest_all_stay_healthy(start_ingest, sample: Sample) -> None:
    assert sample.frame_rate == 30
    assert sample.duration == SAMPLE_SECONDS
    ffmpeg = require("ffmpeg")
    keys = {f"load-key-{i:02}": f"load{i:02}" for i in range(PUBLISHERS)}
    gatekeeper = ClockedGatekeeper(keys=keys)
    ingest = start_ingest(
        gatekeeper,
        IngestConfig(node="load", max_connections_per_ip=100, heartbeat_interval=1.0),
    )

    publishers = [publish(ffmpeg, sample.path, ingest.url(key)) for key in keys]
    try:
        deadline = time.monotonic() + PUBLISH_SECONDS + 30
        failed = []
        for key, process in zip(keys, publishers, strict=True):
            _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if process.returncode != 0:
                failed.append((key, process.returncode, stderr.decode()[-300:]))
    finally:
        for process in publishers:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert not failed, failed

    deadline = time.monotonic() + 10
    while len(gatekeeper.released) < PUBLISHERS and time.monotonic() < deadline:
        time.sleep(0.05)

    channels = set(keys.values())
    assert {grant.channel for grant in gatekeeper.admitted} == channels
    assert len(gatekeeper.admitted) == PUBLISHERS
    reasons = {grant.channel: reason for grant, reason, _, _ in gatekeeper.released}
    assert len(gatekeeper.released) == PUBLISHERS, sorted(channels - set(reasons))
    assert set(reasons.values()) == {EndReason.PUBLISHER_STOPPED}, reasons

    expected = PUBLISH_SECONDS * sample.frame_rate
    frames = {channel: ingest.sink_for(channel).video_frames for channel in sorted(channels)}
    off = {
        channel: count
        for channel, count in frames.items()
        if abs(count - expected) > expected * FRAME_TOLERANCE
    }
    assert not off, f"expected {expected:.0f} ± 3 % video frames, got {off}"
    ended = {channel: ingest.sink_for(channel).ended for channel in channels}
    assert set(ended.values()) == {EndReason.PUBLISHER_STOPPED}, ended
    # -re paces from the first packet, so a publish lasts its -t in wall time too.
    lasted = {c: gatekeeper.released_at[c] - gatekeeper.admitted_at[c] for c in channels}
    short = {c: round(s, 2) for c, s in lasted.items() if s < PUBLISH_SECONDS * 0.97}
    assert not short, f"publishes released before {PUBLISH_SECONDS} s: {short}"

    # Once the start-up storm is out of the 5 s window, every stream runs at its frame rate
    # and on time; during the storm a publisher may stall for a moment, never for long.
    warm = max(gatekeeper.admitted_at.values()) + WARM_UP_AFTER_LAST_ADMISSION
    low, high = HEALTHY_FRAME_RATE
    warm_beats: dict[str, list[float]] = {channel: [] for channel in channels}
    lagging = []
    for at, channel, health in gatekeeper.beats:
        if at >= warm:
            warm_beats[channel].append(health.frame_rate)
        if health.lag_ms >= (MAX_LAG_MS if at >= warm else MAX_START_UP_LAG_MS):
            lagging.append((channel, round(at - warm, 1), health.lag_ms))
    assert not lagging, f"(channel, s after warm-up, lag_ms) over the limit: {lagging}"
    too_few = {channel: len(rates) for channel, rates in warm_beats.items() if len(rates) < 3}
    assert not too_few, f"fewer than 3 heartbeats after warm-up: {too_few}"
    unsteady = {
        channel: rates
        for channel, rates in warm_beats.items()
        if not low <= statistics.median(rates) <= high
    }
    assert not unsteady, f"median frame_rate outside {low} to {high} after warm-up: {unsteady}"
    lowest, highest = WINDOW_FRAME_RATE
    jumpy = {
        channel: rates
        for channel, rates in warm_beats.items()
        if not all(lowest <= rate <= highest for rate in rates)
    }
    assert not jumpy, f"a frame_rate outside {lowest} to {highest} after warm-up: {jumpy}"
