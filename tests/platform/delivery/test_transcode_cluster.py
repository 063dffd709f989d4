"""Cluster mode, acceptance 3 of the transcoding issue: a broadcast's ladder made by
Celery workers (`celery -A golive worker -Q transcode`, two of them, one session each)
from the source's parts in the Redis live index, and the worker running the session
killed with SIGKILL mid-broadcast.

Expected: each rung loses at most the segment it was in (listed EXT-X-GAP), the rungs
are back within the lease's TTL + 2 s on the other worker, the source never misses a
part, and a player pinned to a rung keeps playing. The kill lands mid-segment (the rung
has two or three parts of it out), so the player has played the start of the segment
that becomes a gap: the watch page jumps the hole that leaves in its buffer.

The stack: a throwaway PostgreSQL database, Redis (GOLIVE_TEST_REDIS, under a key prefix
of this run, the broker's queues included), `manage.py ingest`, one origin, two transcode
workers, a worker for beat's tasks and beat itself, ffmpeg publishing a 480p30 test
pattern in real time (so the default ladder gives two rungs, 360p30 and 160p30: what two
cores can carry beside everything else), and Chromium with hls.js on the watch page.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.bench.processes import signal_group
from tests.bench.sample import QUIET
from tests.deploy.stack import REDIS, ROOT, Stack, empty_stack
from tests.deploy.test_edge import needs_stack
from tests.platform.delivery.browser import CHROMIUM_FLAGS
from transcoder.lease import token_pid
from transcoder.live_index import RenditionWindow
from transcoder.live_index.redis_index import RedisLiveIndex, lease_key
from transcoder.renditions import SOURCE

pytestmark = [pytest.mark.slow, pytest.mark.services]

LEASE_TTL = 3.0
RUNGS = ("360p30", "160p30")


def sample_480p(path: Path, seconds: int = 12) -> Path:
    """854x480 at 30 fps, a key frame every 2 s (B-frames, as OBS sends), AAC."""
    command = [shutil.which("ffmpeg") or "ffmpeg", *QUIET, "-y"]
    command += ["-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30"]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-b:v", "900k"]
    command += ["-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "2"]
    command += ["-c:a", "aac", "-b:a", "64k", "-f", "flv", str(path)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return path


def start_celery(stack: Stack, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = stack.workdir / f"{name}.log"
    with log.open("ab") as output:
        return stack.processes.start(
            [sys.executable, "-m", "celery", "-A", "golive", *args],
            cwd=ROOT, env=stack.env, stdout=output, stderr=subprocess.STDOUT,
        )


class Observer:
    """Notes when each part of each rendition first appears in the live index (its own
    thread, event loop and Redis connections: a viewer's view, through pub/sub)."""

    def __init__(self, prefix: str, stream: str, renditions: tuple[str, ...]) -> None:
        self.prefix, self.stream, self.renditions = prefix, stream, renditions
        self.seen: dict[str, dict[tuple[int, int], float]] = {r: {} for r in renditions}
        self.gaps: dict[str, set[int]] = {r: set() for r in renditions}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        index = RedisLiveIndex.from_url(REDIS, prefix=self.prefix)
        try:
            await asyncio.gather(*(self._follow(index, r) for r in self.renditions))
        finally:
            await index.aclose()

    async def _follow(self, index: RedisLiveIndex, rendition: str) -> None:
        seen = self.seen[rendition]
        while not self._stop.is_set():
            window = await index.snapshot(self.stream, rendition)
            if window is None:
                await asyncio.sleep(0.05)
                continue
            now = time.monotonic()
            for segment in window.segments:
                if segment.gap:
                    self.gaps[rendition].add(segment.msn)
                for part in segment.parts:
                    seen.setdefault((part.msn, part.index), now)
            for part in window.parts:
                seen.setdefault((part.msn, part.index), now)
            # The next part of the segment being built.
            await index.wait_for_part(self.stream, rendition, window.next_msn or 0,
                                      len(window.parts), 0.5)

    def head(self, rendition: str) -> tuple[int, int]:
        return max(self.seen[rendition], default=(-1, -1))

    def after(self, rendition: str, moment: float) -> list[float]:
        return sorted(t for t in self.seen[rendition].values() if t > moment)


def test_a_killed_transcode_worker_costs_each_rung_one_segment_at_most(tmp_path: Path) -> None:
    needs_stack()
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (./golive test installs it with apt)")
    from playwright.sync_api import sync_playwright

    prefix = f"golive:t{uuid.uuid4().hex[:10]}"
    with empty_stack(tmp_path) as stack:
        stack.env.update(GOLIVE_REDIS_PREFIX=prefix, GOLIVE_TRANSCODE_LEASE_TTL=str(LEASE_TTL),
                         GOLIVE_RECONNECT_GRACE="0")
        stack.create_channel("kill9")
        stack.start_ingest()
        origin = stack.start_origin()
        workers = [
            start_celery(stack, f"transcode{n}", "worker", "-Q", "transcode",
                         "--concurrency", "1", "-n", f"transcode{n}@%h", "--loglevel", "INFO")
            for n in (1, 2)
        ]
        start_celery(stack, "tasks", "worker", "-Q", "celery", "--concurrency", "1",
                     "-n", "tasks@%h", "--loglevel", "INFO")
        start_celery(stack, "beat", "beat", "--loglevel", "INFO",
                     "-s", str(tmp_path / "celerybeat-schedule"), "--pidfile=")
        publisher = publish(stack, sample_480p(tmp_path / "sample.flv"))
        base = f"http://127.0.0.1:{origin}"
        stack.wait_live(base, timeout=60)
        master = _get(stack.master(base))
        session = re.search(r"^(\d+)/source/index\.m3u8$", master, re.M)
        assert session is not None, master
        stream = f"s{session.group(1)}"
        observer = Observer(prefix, stream, (SOURCE, *RUNGS))
        try:
            deadline = time.monotonic() + 60
            while not all(observer.seen[r] for r in RUNGS):
                assert time.monotonic() < deadline, (
                    f"the rungs never appeared: {_logs(stack)}")
                time.sleep(0.2)

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                     args=CHROMIUM_FLAGS)
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"{base}/c/{stack.channel}")
                page.wait_for_function("window.golivePlayer && window.golivePlayer.hls && "
                                       "window.golivePlayer.hls.levels.length === 3",
                                       timeout=30_000)
                # A viewer on the 360p30 rung, pinned there (no ABR switch to the source).
                page.evaluate("""() => {
                    const hls = window.golivePlayer.hls;
                    hls.currentLevel = hls.levels.findIndex(l => l.height === 360);
                    window.hlsErrors = [];
                    hls.on("hlsError", (_e, d) => window.hlsErrors.push(
                        [performance.now(), d.details, d.fatal, d.frag ? d.frag.sn : null]));
                }""")
                page.wait_for_function("window.golivePlayer.video.currentTime > 0",
                                       timeout=30_000)
                samples: list[tuple[float, float, int | None]] = []
                ranges: list[list[list[float]]] = []
                killed_at = holder = None
                started = time.monotonic()
                while time.monotonic() - started < 30:
                    current, height, buffered = page.evaluate("""() => {
                        const hls = window.golivePlayer.hls;
                        const level = hls.levels[hls.currentLevel];
                        const b = window.golivePlayer.video.buffered;
                        const ranges = [];
                        for (let i = 0; i < b.length; i++) ranges.push([b.start(i), b.end(i)]);
                        return [window.golivePlayer.video.currentTime,
                                level ? level.height : null, ranges];
                    }""")
                    samples.append((time.monotonic(), current, height))
                    ranges.append(buffered)
                    if (killed_at is None and time.monotonic() - started > 8
                            and observer.head(RUNGS[0])[1] in (2, 3)):
                        # Mid-segment: the rungs have a part or more of it out.
                        cut_short = observer.head(RUNGS[0])[0]
                        holder, killed_at = _kill_the_holder(prefix, stream, workers)
                    time.sleep(0.2)
                hls_errors = page.evaluate("window.hlsErrors")
                skipped = page.evaluate("window.golivePlayer.holesSkipped || 0")
                browser.close()
        finally:
            observer.stop()

        assert killed_at is not None
        assert holder is not None
        logs = _logs(stack)
        # The other worker took the session over.
        successor = _lease_holder(prefix, stream)
        assert successor is not None, logs
        assert successor != holder
        survivor = next(w for w in workers if w.poll() is None)
        pid = token_pid(successor)
        assert pid is not None
        assert os.getpgid(pid) == survivor.pid, (successor, logs)

        # The rungs are back within the lease's TTL + 2 s; the source never stopped.
        back = {r: observer.after(r, killed_at)[0] - killed_at for r in RUNGS}
        source_times = observer.after(SOURCE, killed_at - 5)
        longest_source_wait = max(b - a for a, b in itertools.pairwise(source_times))
        print(f"\nrungs back after the kill: {back}; the source's longest wait between "
              f"parts meanwhile {longest_source_wait:.2f} s")
        for rung, seconds in back.items():
            assert seconds <= LEASE_TTL + 2, (rung, back, logs)
        assert longest_source_wait < 1.0
        assert not observer.gaps[SOURCE]
        # At most one segment per rung listed as a gap: the one the kill cut short.
        for rung in RUNGS:
            assert observer.gaps[rung] <= {cut_short}, (rung, observer.gaps, cut_short)
        # The rungs carry on: parts keep coming after the restart, as many as the source's.
        for rung in RUNGS:
            new = [k for k, t in observer.seen[rung].items() if t > killed_at + LEASE_TTL + 2]
            assert len(new) >= 20, (rung, len(new))

        # The viewer kept playing the rung: advancing over the last 10 s, still at 360p.
        assert not errors, errors
        assert not [e for e in hls_errors if e[2]], hls_errors  # nothing fatal
        last = [s for s in samples if s[0] > samples[-1][0] - 10]
        assert last[-1][1] - last[0][1] > 8, (samples[-60:], ranges[-60:], hls_errors)
        # Still the rung, unless hls.js met the gap segment itself: it then fails over to
        # a rendition without a gap there (the 480p source; its error controller does so
        # on fragGap, pinned or not), which keeps the picture going too.
        heights = {height for _, _, height in last}
        failed_over = any(e[1] == "fragGap" for e in hls_errors)
        assert heights == {360} or (failed_over and heights <= {360, 480}), (
            heights, hls_errors)
        print(f"the player's longest stall: {_longest_stall(samples):.2f} s, holes skipped "
              f"{skipped}")

        # The publish ends: the source's end waits for the session to finish its rungs,
        # which end with the source's last segment; each rung's VOD lists every segment
        # its two sessions stored.
        publisher.terminate()
        publisher.wait(10)
        ended = asyncio.run(_ended_windows(prefix, stream, (SOURCE, *RUNGS)))
        source_last = ended[SOURCE].segments[-1].msn
        for rung in RUNGS:
            assert ended[rung].segments[-1].msn == source_last, (rung, logs)
            vod = tmp_path / "media" / "hls" / "live" / session.group(1) / rung / "vod.m3u8"
            listed = re.findall(r"seg-(\d+)\.m4s", vod.read_text())
            assert [int(n) for n in listed] == [
                n for n in range(int(listed[0]), source_last + 1) if n != cut_short], listed


def publish(stack: Stack, sample: Path) -> subprocess.Popen[bytes]:
    """ffmpeg sending the sample in a loop, in real time (as Stack.publish, ours to stop)."""
    command = [shutil.which("ffmpeg") or "ffmpeg", *QUIET, "-re", "-stream_loop", "-1"]
    command += ["-i", str(sample), "-c", "copy", "-f", "flv"]
    command += [f"rtmp://127.0.0.1:{stack.rtmp_port}/live/{stack.key}"]
    with (stack.workdir / "publisher.log").open("ab") as log:
        return stack.processes.start(command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=log)


async def _ended_windows(
    prefix: str, stream: str, renditions: tuple[str, ...], within: float = 30
) -> dict[str, RenditionWindow]:
    index = RedisLiveIndex.from_url(REDIS, prefix=prefix)
    try:
        async with asyncio.timeout(within):
            while True:
                windows = {r: await index.snapshot(stream, r) for r in renditions}
                if all(w is not None and w.ended for w in windows.values()):
                    return {r: w for r, w in windows.items() if w is not None}
                await index.wait_for_part(stream, SOURCE, 1 << 30, 0, 1.0)
    finally:
        await index.aclose()


def _kill_the_holder(
    prefix: str, stream: str, workers: list[subprocess.Popen[bytes]]
) -> tuple[str, float]:
    """SIGKILLs the whole worker (its main process and its pool) holding the lease."""
    token = _lease_holder(prefix, stream)
    assert token is not None, "nobody holds the session's lease"
    pid = token_pid(token)
    assert pid is not None, token
    group = os.getpgid(pid)
    worker = next(w for w in workers if w.pid == group)
    signal_group(worker, signal.SIGKILL)
    killed_at = time.monotonic()
    worker.wait(10)
    return token, killed_at


def _lease_holder(prefix: str, stream: str) -> str | None:
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        value = client.get(lease_key(prefix, stream, "transcoder"))
    finally:
        client.close()
    return value.decode() if value else None


def _longest_stall(samples: list[tuple[float, float, int | None]]) -> float:
    longest, since = 0.0, samples[0][0]
    for before, after in itertools.pairwise(samples):
        if after[1] > before[1]:
            since = after[0]
        longest = max(longest, after[0] - since)
    return longest


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 -- our own origin
        return str(answer.read().decode())


def _logs(stack: Stack) -> str:
    text = []
    for name in ("transcode1", "transcode2", "tasks", "beat", "ingest-1"):
        path = stack.workdir / f"{name}.log"
        with contextlib.suppress(OSError):
            text.append(f"--- {name}\n" + path.read_text()[-3000:])
    return "\n".join(text)
