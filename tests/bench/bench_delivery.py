"""What a viewer waits for, and what blocking playlist requests cost the origin.

    python -m tests.bench delivery [--only latency,wake,hold] [--seconds 30]
        [--wake-clients 1,100,1000] [--wake-rounds 5] [--hold 5000] [--redis URL]

latency: `manage.py up` on its embedded defaults in a temporary directory; ffmpeg publishes
    the pre-encoded 720p30 sample of the ingest benchmark in real time (`-re -stream_loop
    -1 -c copy`: no encoder competing for the two cores); Chromium (Debian's, through the
    watch helper of the end-to-end tests) plays the watch page. Latency is now minus the
    program-date-time of the frame on screen (`hls.playingDate`), i.e. ingest to screen,
    sampled every 0.2 s after a warm-up. Reference: the issue's aim, median ≤ 1.5 s.
wake: one origin process as the cluster runs it (`daphne golive.asgi:application` with
    REDIS_URL, the Redis live index); this process publishes a stream into Redis through
    the live index's own API (`set_init`, `add_part`, `complete_segment`: what
    DeliveryOutput calls), K keep-alive clients ask for the next part
    (`_HLS_msn`/`_HLS_part`), and once the origin is idle (every request parked) the part
    is published. Wake = from just before `add_part` to the last byte of each answer.
    Reference, same clients, same round: the same request for a part that already exists
    (no blocking), from the request's write to its last byte.
hold: a fresh origin process; N clients each hold a blocking request for the next part
    (one re-issued if it is answered early). Reported: origin RSS (VmRSS of the process
    and its children) idle and holding N, per request, threads and sockets, then every
    request's answer once the part is published. Reference: the idle RSS.

The Redis arrangement because the memory index lives inside the `manage.py up` process:
only the publishing process can write to it, and a benchmark process publishing into
Redis needs no hook in the server. The embedded wake path is the same minus the pub/sub hop.

It prints numbers and asserts nothing about them: the machine and whatever else runs on it
decide timings. Every process it starts and its temporary directory are removed at the end,
on Ctrl-C and on SIGTERM; the Redis keys of its streams are removed too (or expire with the
live index's TTL, 2 minutes, if it is killed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ingest.runner import run
from tests.bench.clients import KeepAliveClient, Response, close_all, connect, connect_one
from tests.bench.processes import (
    Processes,
    cpu_seconds,
    free_port,
    open_sockets,
    raise_open_files_limit,
    rss_bytes,
    runnable_threads,
    sigterm_interrupts,
    tail,
    thread_count,
    wait_listening,
)
from tests.bench.sample import QUIET, Sample, encode_sample
from transcoder.live_index import LiveIndex, PartRef, SegmentRef
from transcoder.live_index.redis_index import RedisLiveIndex

ROOT = Path(__file__).resolve().parents[2]
MEASUREMENTS = ("glass", "latency", "wake", "hold")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"

AIM_LATENCY = 1.5  # s, median ingest to screen in Chromium
AIM_GLASS = 1.0  # s, median glass to glass (stamp before the encoder to display)
AIM_GLASS_P95 = 1.3
# The part settings glass compares by default: the old ones, then the shipped defaults.
GLASS_SETTINGS = "0.334/3,default,0.2/5"  # the old, the shipped (source-only), with a ladder
AIM_WAKE = 0.050  # s, a blocked playlist request answered after its part arrives
AIM_HOLD = 5000  # blocked requests in one origin process ...
AIM_HOLD_BYTES = 1 << 30  # ... within 1 GiB
# Playback that does not advance for this long counts as a stall (samples are 0.2 s apart).
STALL_SECONDS = 0.5

# The stream the bench publishes, shaped like the packager's output for the sample: as
# delivery.live names and sizes it (PART_TARGET, SOURCE, stream_name, the "golive" prefix).
PART_TARGET = 0.334
PARTS_PER_SEGMENT = 6  # 2 s keyframe interval
PART_BYTES = 125_000  # ~3 Mb/s
WINDOW_SEGMENTS = 15  # the live index keeps 30 s of segments
RENDITION = "source"
INDEX_PREFIX = "golive"
# The blocking limit is 3 target durations; 10 s (a 10 s keyframe interval, the longest
# the packager cuts) gives 30 s, so clients still connecting on a busy 2-core machine never
# see their first requests time out. Rendering does not depend on it.
TARGET_DURATION = 10

T = TypeVar("T")


# -- results ----------------------------------------------------------------------------


@dataclass
class Latency:
    samples: list[float]  # s, after the warm-up
    stalls: int
    longest_stall: float
    advanced: float  # s of media played during the window
    window: float  # s of wall clock
    errors: list[str]


@dataclass
class Glass:
    part_target: float
    hold_back_parts: float
    samples: list[float]  # s, glass to glass, one per frame presented after the warm-up
    unread: int  # frames whose stamp did not check
    stalls: int
    longest_stall: float
    frames_sent: int
    late_frames: int
    errors: list[str]
    player_latency: list[float] = field(default_factory=list)  # hls.js's own estimate, s
    page_latency: list[float] = field(default_factory=list)  # ingest to screen (PDT), s
    player_target: list[float] = field(default_factory=list)  # hls.js's target latency, s


@dataclass
class Wake:
    clients: int
    wake: list[float] = field(default_factory=list)  # s, publish to last byte
    reference: list[float] = field(default_factory=list)  # s, request to last byte
    publish: list[float] = field(default_factory=list)  # s, one add_part call
    problems: list[str] = field(default_factory=list)


@dataclass
class Hold:
    asked: int
    held: int = 0  # in flight at the least moment of the steady state
    reissued: int = 0
    sockets: int = 0  # the origin's, at steady state
    threads_idle: int = 0
    threads_holding: int = 0
    rss_idle: int = 0
    rss_holding: int = 0
    rss_after: int = 0
    answered: int = 0  # 200 naming the published part
    wake: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def per_request(self) -> float:
        return (self.rss_holding - self.rss_idle) / self.held if self.held else 0.0


# -- the origin process -----------------------------------------------------------------


@dataclass
class Origin:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid


def origin_env(workdir: Path, redis_url: str) -> dict[str, str]:
    """A cluster origin's configuration: the Redis live index, DEBUG off, nothing else."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOLIVE_", "S3_", "DATABASE_", "CELERY_", "REDIS_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        DJANGO_SETTINGS_MODULE="golive.settings",
        REDIS_URL=redis_url,
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(32),
        GOLIVE_DATA_DIR=str(workdir / "var"),
        MEDIA_ROOT=str(workdir / "media"),
        LOG_LEVEL="WARNING",
    )
    return env


def start_origin(processes: Processes, workdir: Path, redis_url: str) -> Origin:
    """`daphne golive.asgi:application`, as a cluster runs it, on a free port. The listen
    backlog is raised from Twisted's 50 so thousands of connections can queue; -v 0 leaves
    out the access log."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "origin.log"
    endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=4096"
    command = [sys.executable, "-m", "daphne", "-e", endpoint, "-v", "0"]
    with log.open("wb") as output:
        process = processes.start(
            [*command, "golive.asgi:application"],
            many_files=True,
            cwd=ROOT,
            env=origin_env(workdir, redis_url),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    if not wait_listening(port, process, timeout=60):
        raise RuntimeError(f"the origin did not start: {tail(log)}")
    return Origin(process, port)


async def settle(pid: int, quiet: float = 0.3, patience: float = 60.0) -> bool:
    """Waits until `pid` has been idle for ``quiet`` seconds: at most one clock tick of CPU
    and no thread runnable at any look (a process starved by other work uses no CPU either),
    so every request it was sent has been read and parked. False if it stays busy past
    ``patience`` seconds."""
    tick = 1 / os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + patience
    since, used = time.monotonic(), cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now, busy = time.monotonic(), runnable_threads(pid) > 0
        cpu = cpu_seconds(pid)  # one walk of /proc per look
        if busy or cpu - used > tick * 1.5:
            since, used = now, cpu
        elif now - since >= quiet:
            return True
    return False


# -- the stream the bench publishes -----------------------------------------------------


class BenchStream:
    """A live stream published through the live index's API, part by part, as the
    packager's DeliveryOutput would: 2 s segments of six 0.334 s parts of ~125 kB."""

    def __init__(self, index: LiveIndex, session_id: int) -> None:
        self.index = index
        self.session_id = session_id
        self.name = f"s{session_id}"  # delivery.live.stream_name
        self.msn = 0
        self.parts = 0  # of segment msn published so far
        self._data = random.randbytes(PART_BYTES)
        self._started = time.time() - WINDOW_SEGMENTS * PARTS_PER_SEGMENT * PART_TARGET

    async def start(self) -> None:
        """The init segment and a full window of segments, so playlists are as long as a
        real stream's, then the first part of the next segment."""
        await self.index.remove(self.name)
        await self.index.set_init(
            self.name, RENDITION, b"init", PART_TARGET, target_duration=TARGET_DURATION
        )
        for _ in range(WINDOW_SEGMENTS * PARTS_PER_SEGMENT + 1):
            await self.publish()

    @property
    def head(self) -> tuple[int, int]:
        """The newest part (exists)."""
        if self.parts:
            return self.msn, self.parts - 1
        return self.msn - 1, PARTS_PER_SEGMENT - 1

    @property
    def upcoming(self) -> tuple[int, int]:
        """The next part to be published."""
        return self.msn, self.parts

    def playlist(self, part: tuple[int, int]) -> str:
        msn, index = part
        return (
            f"/live/bench/{self.session_id}/{RENDITION}/index.m3u8?_HLS_msn={msn}&_HLS_part={index}"
        )

    async def publish(self) -> tuple[float, float]:
        """Publishes the next part; returns time.monotonic() just before and just after
        `add_part`. A segment's last part is followed by its completion, outside the two
        stamps (in a real stream the segment's upload separates it from the next part)."""
        msn, index = self.msn, self.parts
        date = self._started + (msn * PARTS_PER_SEGMENT + index) * PART_TARGET
        part = PartRef(msn, index, PART_TARGET, independent=index == 0)
        before = time.monotonic()
        await self.index.add_part(self.name, RENDITION, part, self._data, program_date_time=date)
        after = time.monotonic()
        self.parts += 1
        if self.parts == PARTS_PER_SEGMENT:
            start = self._started + msn * PARTS_PER_SEGMENT * PART_TARGET
            duration = PARTS_PER_SEGMENT * PART_TARGET
            url = f"/media/hls/live/{self.session_id}/{RENDITION}/seg-{msn}.m4s"
            segment = SegmentRef(msn, duration, start, url=url)
            await self.index.complete_segment(self.name, RENDITION, segment)
            self.msn, self.parts = msn + 1, 0
        return before, after

    async def remove(self) -> None:
        await self.index.remove(self.name)


def names_part(response: Response, part: tuple[int, int]) -> bool:
    return response.status == 200 and f"part-{part[0]}.{part[1]}.m4s".encode() in response.body


def new_session_id() -> int:
    # Far above any real session id, and new each run: runs sharing a Redis never meet.
    return 10**12 + random.randrange(10**12)


# -- wake -------------------------------------------------------------------------------


async def measure_wake(
    origin: Origin, index: LiveIndex, counts: Sequence[int], rounds: int
) -> list[Wake]:
    stream = BenchStream(index, new_session_id())
    await stream.start()
    results = []
    try:
        for count in counts:
            clients = await connect("127.0.0.1", origin.port, count)
            try:
                # A round first, not counted: connections, the origin's subscription to the
                # stream and its first snapshot are set up once, not per part.
                await _wake_round(origin, stream, clients, Wake(count))
                result = Wake(count)
                for _ in range(rounds):
                    await _wake_round(origin, stream, clients, result)
                results.append(result)
            finally:
                close_all(clients)
    finally:
        await stream.remove()
    return results


async def _wake_round(
    origin: Origin, stream: BenchStream, clients: list[KeepAliveClient], result: Wake
) -> None:
    head = stream.head
    answers = await asyncio.gather(*(c.get(stream.playlist(head)) for c in clients))
    result.reference += [a.done_at - a.sent_at for a in answers if names_part(a, head)]
    if wrong := sum(not names_part(a, head) for a in answers):
        result.problems.append(f"{wrong} reference answers were not 200 with part {head}")

    upcoming = stream.upcoming
    waiting = [c.get(stream.playlist(upcoming)) for c in clients]
    if not await settle(origin.pid):
        result.problems.append("the origin did not go idle before the publish")
    early = sum(w.done() for w in waiting)
    if early:
        result.problems.append(f"{early} blocked requests answered before the publish")
    before, after = await stream.publish()
    result.publish.append(after - before)
    answers = await asyncio.gather(*waiting)
    result.wake += [a.done_at - before for a in answers if names_part(a, upcoming)]
    if wrong := sum(not names_part(a, upcoming) for a in answers):
        statuses = sorted({a.status for a in answers})
        result.problems.append(f"{wrong} woken answers lacked part {upcoming} ({statuses})")


# -- hold -------------------------------------------------------------------------------


async def measure_hold(
    origin: Origin, index: LiveIndex, count: int, seconds: float, on_progress: Callable[[str], None]
) -> Hold:
    result = Hold(count)
    stream = BenchStream(index, new_session_id())
    await stream.start()
    try:
        await _hold(origin, stream, count, seconds, result, on_progress)
    finally:
        await stream.remove()
    return result


async def _hold(
    origin: Origin,
    stream: BenchStream,
    count: int,
    seconds: float,
    result: Hold,
    on_progress: Callable[[str], None],
) -> None:
    # Idle: after a few plain requests, so what every request needs (URL resolvers, the
    # Redis subscription, the snapshot cache) is already in memory.
    warm = await connect("127.0.0.1", origin.port, 10)
    await asyncio.gather(*(c.get(stream.playlist(stream.head)) for c in warm))
    close_all(warm)
    await settle(origin.pid)
    result.rss_idle = rss_bytes(origin.pid)
    result.threads_idle = thread_count(origin.pid)

    upcoming = stream.upcoming
    target = stream.playlist(upcoming)
    published, all_sent = asyncio.Event(), asyncio.Event()
    in_flight = started = 0
    answers: list[Response] = []

    def one_started() -> None:
        nonlocal started
        started += 1
        if started == count:
            all_sent.set()

    async def hold_one(client: KeepAliveClient) -> None:
        nonlocal in_flight
        first = True
        while True:
            in_flight += 1
            try:
                asked = client.get(target)
                if first:
                    one_started()
                    first = False
                answer = await asked
            finally:
                in_flight -= 1
            if answer.status == 503 and not published.is_set():
                result.reissued += 1  # the blocking limit passed: ask again, as hls.js does
                continue
            answers.append(answer)
            return

    gate = asyncio.Semaphore(200)

    async def connect_and_hold() -> None:
        try:
            client = await connect_one("127.0.0.1", origin.port, gate)
        except OSError:
            one_started()  # counted as sent, reported as failed
            raise
        try:
            await hold_one(client)
        finally:
            client.close()

    holders = [asyncio.ensure_future(connect_and_hold()) for _ in range(count)]
    try:
        began = time.monotonic()
        await all_sent.wait()
        on_progress(f"{count} sent in {time.monotonic() - began:.1f} s")
        if not await settle(origin.pid):
            result.problems.append("the origin did not go idle while holding")
        on_progress(f"parked after {time.monotonic() - began:.1f} s")
        held, rss, sockets, threads = [], [], [], []
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            held.append(in_flight)
            rss.append(rss_bytes(origin.pid))
            sockets.append(open_sockets(origin.pid))
            threads.append(thread_count(origin.pid))
            await asyncio.sleep(0.5)
        result.held = min(held)
        result.rss_holding = max(rss)
        result.sockets = min(sockets)
        result.threads_holding = max(threads)

        published.set()
        before, _after = await stream.publish()
        done, pending = await asyncio.wait(holders, timeout=120)
        if pending:
            result.problems.append(f"{len(pending)} held requests never answered")
        failed = [h.exception() for h in done if h.exception() is not None]
        if failed:
            result.problems.append(f"{len(failed)} connections failed, first: {failed[0]}")
        good = [a for a in answers if names_part(a, upcoming)]
        result.answered = len(good)
        result.wake = [a.done_at - before for a in good]
        if len(good) < len(answers):
            statuses = sorted({a.status for a in answers})
            result.problems.append(f"{len(answers) - len(good)} answers wrong ({statuses})")
        await settle(origin.pid)
        result.rss_after = rss_bytes(origin.pid)
    finally:
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)


# -- glass to glass ---------------------------------------------------------------------


def _glass_settings(text: str) -> list[tuple[float, float] | None]:
    """``0.334/3,0.2/2.5,default``: part target s / PART-HOLD-BACK in parts; ``default``
    is what the platform ships with (its settings, read by the server)."""
    settings: list[tuple[float, float] | None] = []
    for item in text.split(","):
        item = item.strip()
        if item == "default":
            settings.append(None)
            continue
        target, _, parts = item.partition("/")
        settings.append((float(target), float(parts or 3)))
    return settings


def measure_glass(
    processes: Processes,
    workdir: Path,
    setting: tuple[float, float] | None,
    seconds: float,
    warmup: float,
) -> Glass:
    from playwright.sync_api import sync_playwright

    from tests.bench.glass import READER_JS, StampedPublisher, geometry
    from tests.platform.delivery.browser import CHROMIUM_FLAGS
    from tests.support.processes import embedded_env

    extra = {"GOLIVE_TRANSCODE_SESSIONS": "0"}  # the source alone: what is measured
    if setting is not None:
        extra["GOLIVE_HLS_PART_TARGET"] = f"{setting[0]:g}"
        extra["GOLIVE_HLS_PART_HOLD_BACK"] = f"{setting[1]:g}"
    http_port, rtmp_port = free_port(), free_port()
    command = [sys.executable, "manage.py", "up", "--http", f"127.0.0.1:{http_port}"]
    command += ["--rtmp", f"127.0.0.1:{rtmp_port}"]
    up = processes.start(
        command,
        cwd=ROOT,
        env=embedded_env(workdir, extra=extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    banner = _read_banner(up)
    base = f"http://127.0.0.1:{http_port}"
    _wait_serving(f"{base}/healthz")
    publisher = StampedPublisher(
        workdir / "publisher", f"rtmp://127.0.0.1:{rtmp_port}/live/{banner['key']}"
    )
    publisher.start()
    errors: list[str] = []
    positions: list[tuple[float, float]] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
            )
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/c/{banner['channel']}")
            page.wait_for_function(
                "window.golivePlayer && window.golivePlayer.video.currentTime > 0",
                timeout=30_000,
            )
            started = time.monotonic()
            while time.monotonic() - started < warmup:
                time.sleep(0.2)
            page.evaluate(READER_JS, geometry())
            started = time.monotonic()
            player_latency, page_latency, player_target = [], [], []
            while time.monotonic() - started < seconds:
                current, hls_latency, pdt_latency, target = page.evaluate(
                    "[window.golivePlayer.video.currentTime, window.golivePlayer.hls.latency,"
                    " window.golivePlayer.latency(), window.golivePlayer.hls.targetLatency]"
                )
                player_target.append(target)
                positions.append((time.monotonic(), current))
                player_latency.append(hls_latency)
                if pdt_latency is not None:
                    page_latency.append(pdt_latency)
                time.sleep(0.2)
            glass = page.evaluate("window.goliveGlass")
            served = page.evaluate(
                "[window.golivePlayer.hls.latestLevelDetails.partTarget,"
                " window.golivePlayer.hls.latestLevelDetails.partHoldBack]"
            )
            browser.close()
    finally:
        publisher.stop()
    if not publisher.frames:
        errors.append(
            f"the publisher sent nothing: {tail(workdir / 'publisher' / 'publisher.log', 300)}"
        )
    stalls, longest = _stalls(positions)
    part_target, hold_back = served[0], served[1] / served[0]  # as the playlists said
    return Glass(
        part_target=part_target,
        hold_back_parts=hold_back,
        samples=[(shown - stamp) / 1000 for shown, stamp in glass["samples"]],
        unread=int(glass["unread"]),
        stalls=stalls,
        longest_stall=longest,
        frames_sent=publisher.frames,
        late_frames=publisher.late_frames,
        errors=errors,
        player_latency=player_latency,
        page_latency=page_latency,
        player_target=player_target,
    )


def print_glass(results: list[Glass], seconds: float, warmup: float) -> None:
    print()
    print(
        "glass: a wall-clock stamp drawn into each 720p30 frame before libx264 (veryfast, "
        "zerolatency, 2 s GOP, 3 Mb/s), read back from each frame Chromium presents "
        f"(watch page, hls.js); embedded `manage.py up`, source only; {seconds:g} s after "
        f"{warmup:g} s warm-up"
    )
    rows = []
    first = statistics.median(results[0].samples) if results and results[0].samples else None
    for result in results:
        values = result.samples
        if not values:
            rows.append(
                [
                    f"{result.part_target:g}",
                    f"{result.hold_back_parts:g}",
                    "0",
                    "-",
                    "-",
                    "-",
                    "-",
                    str(result.stalls),
                    "-",
                    "no frame read",
                ]
            )
            continue
        median, p95 = statistics.median(values), _p95(values)
        aim = median <= AIM_GLASS and p95 <= AIM_GLASS_P95
        rows.append([
            f"{result.part_target:g}", f"{result.hold_back_parts:g}",
            f"{result.part_target * result.hold_back_parts:.3f}", str(len(values)),
            f"{median:.3f}", f"{p95:.3f}", f"{min(values):.3f}", str(result.stalls),
            f"{result.longest_stall:.1f}",
            f"{median / first:.2f}x" if first else "-",
            f"{'met' if aim else 'missed'}",
        ])  # fmt: skip
    _table(
        ["part s", "hold-back parts", "hold-back s", "frames", "p50 s", "p95 s", "min s",
         "stalls", "longest stall s", "p50 vs first", "aim p50 ≤ 1.0, p95 ≤ 1.3"],
        rows,
    )  # fmt: skip
    for result in results:
        if result.player_latency and result.page_latency:
            print(
                f"  part {result.part_target:g} s, hold-back {result.hold_back_parts:g}: "
                f"hls.js's own latency p50 {statistics.median(result.player_latency):.3f} s "
                f"(its target {statistics.median(result.player_target):.3f} s); "
                f"ingest to screen (program-date-time) p50 "
                f"{statistics.median(result.page_latency):.3f} s"
            )
        if result.unread or result.late_frames:
            print(
                f"  part {result.part_target:g} s: {result.unread} frames presented without a "
                f"readable stamp, {result.late_frames} of {result.frames_sent} frames written "
                "late by the publisher (this machine was busy)"
            )
        for error in result.errors:
            print(f"  part {result.part_target:g} s: page error: {error}")


# -- latency ----------------------------------------------------------------------------


def measure_latency(
    processes: Processes, workdir: Path, sample: Sample, seconds: float, warmup: float
) -> Latency:
    from tests.platform.delivery.browser import watch
    from tests.support.processes import embedded_env

    http_port, rtmp_port = free_port(), free_port()
    command = [sys.executable, "manage.py", "up", "--http", f"127.0.0.1:{http_port}"]
    command += ["--rtmp", f"127.0.0.1:{rtmp_port}"]
    up = processes.start(
        command,
        cwd=ROOT,
        env=embedded_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    banner = _read_banner(up)
    base = f"http://127.0.0.1:{http_port}"
    _wait_serving(f"{base}/healthz")
    publish_seconds = warmup + seconds + 90  # outlives the browser's start-up and window
    command = [shutil.which("ffmpeg") or "ffmpeg", *QUIET, "-re", "-stream_loop", "-1"]
    command += ["-i", str(sample.path), "-c", "copy", "-t", f"{publish_seconds:g}"]
    command += ["-f", "flv", f"rtmp://127.0.0.1:{rtmp_port}/live/{banner['key']}"]
    with (workdir / "publisher.log").open("wb") as log:
        publisher = processes.start(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
        )
    playback = watch(f"{base}/c/{banner['channel']}", seconds=warmup + seconds)
    if publisher.poll() is not None:
        playback.errors.append(f"the publisher exited: {tail(workdir / 'publisher.log', 300)}")
    start = playback.samples[0][0] + warmup
    window = [s for s in playback.samples if s[0] >= start]
    stalls, longest = _stalls([(moment, current) for moment, current, _ in window])
    return Latency(
        samples=[latency for _, _, latency in window if latency is not None],
        stalls=stalls,
        longest_stall=longest,
        advanced=window[-1][1] - window[0][1] if window else 0.0,
        window=window[-1][0] - window[0][0] if window else 0.0,
        errors=playback.errors,
    )


def _read_banner(up: subprocess.Popen[bytes]) -> dict[str, str]:
    assert up.stdout is not None
    banner: dict[str, str] = {}
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline and "api" not in banner:
        line = up.stdout.readline().decode(errors="replace")
        if not line:
            break
        lines.append(line)
        if match := re.search(r"Watch:\s+\S+/c/(\S+)", line):
            banner["channel"] = match.group(1)
        if match := re.search(r"Stream key:\s+(\S+)", line):
            banner["key"] = match.group(1)
        if "API docs:" in line:
            banner["api"] = line
    if "key" not in banner or "channel" not in banner:
        raise RuntimeError("manage.py up printed no banner: " + "".join(lines)[-1500:])
    # Keep reading its output, or a full pipe would stall the server.
    threading.Thread(target=up.stdout.read, daemon=True).start()
    return banner


def _wait_serving(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # S310: the URL is the server this benchmark started.
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


def _stalls(samples: list[tuple[float, float]]) -> tuple[int, float]:
    """How many times playback stood still for at least STALL_SECONDS, and the longest."""
    count, longest = 0, 0.0
    if not samples:
        return count, longest
    since, stalled = samples[0][0], False
    for (_, before), (moment, after) in itertools.pairwise(samples):
        if after > before:
            since, stalled = moment, False
            continue
        still = moment - since
        longest = max(longest, still)
        if still >= STALL_SECONDS and not stalled:
            count, stalled = count + 1, True
    return count, longest


# -- report -----------------------------------------------------------------------------


def _table(columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _p95(values: Sequence[float]) -> float:
    # Inclusive: never beyond the largest value measured, however few there are.
    return (
        statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]
    )


def _mib(size: float) -> str:
    return f"{size / (1 << 20):.1f}"


def print_latency(result: Latency, seconds: float, warmup: float) -> None:
    print()
    print(
        "latency: ingest to screen in Chromium (hls.js low-latency, watch page), embedded "
        f"`manage.py up`, ffmpeg -re -c copy 720p30; {seconds:g} s after {warmup:g} s warm-up"
    )
    values = result.samples
    if not values:
        print("  no latency on screen (no program-date-time): " + "; ".join(result.errors))
        return
    median = statistics.median(values)
    _table(
        ["samples", "median s", "p95 s", "min s", "max s", "stalls", "longest stall s",
         "played s/wall s", "aim: median ≤ 1.5 s"],
        [[
            str(len(values)), f"{median:.2f}", f"{_p95(values):.2f}", f"{min(values):.2f}",
            f"{max(values):.2f}", str(result.stalls), f"{result.longest_stall:.1f}",
            f"{result.advanced:.1f}/{result.window:.1f}",
            f"{'met' if median <= AIM_LATENCY else 'missed'} ({median / AIM_LATENCY:.2f}x)",
        ]],
    )  # fmt: skip
    print(f"  (a stall: playback standing still ≥ {STALL_SECONDS} s; sampled every 0.2 s)")
    for error in result.errors:
        print(f"  page error: {error}")


def print_wake(results: list[Wake], rounds: int) -> None:
    print()
    print(
        "wake: blocked playlist request → its answer's last byte, from just before the part's "
        f"add_part; one daphne origin, Redis live index; {rounds} round(s) per K"
    )
    print("  reference: the same clients asking for a part that exists (request → last byte)")
    rows = []
    for r in results:
        if not r.wake or not r.reference:
            rows.append([str(r.clients), f"{len(r.wake)}/{r.clients * rounds}"] + ["-"] * 8)
            continue
        wake, reference = statistics.median(r.wake), statistics.median(r.reference)
        rows.append([
            str(r.clients), f"{len(r.wake)}/{r.clients * rounds}",
            _ms(wake), _ms(_p95(r.wake)), _ms(max(r.wake)),
            _ms(reference), _ms(_p95(r.reference)), _ms(max(r.reference)),
            f"{wake / reference:.2f}x" if reference else "n/a",
            f"{'met' if _p95(r.wake) <= AIM_WAKE else 'missed'}",
        ])  # fmt: skip
    _table(
        ["K", "answered", "wake med ms", "p95", "max", "ref med ms", "p95", "max",
         "wake/ref", "aim p95 < 50 ms"],
        rows,
    )  # fmt: skip
    publish = [p for r in results for p in r.publish]
    if publish:
        print(
            f"  one add_part call (Redis round trip, in the wake figures): median "
            f"{_ms(statistics.median(publish))} ms"
        )
    for r in results:
        for problem in r.problems:
            print(f"  unhealthy at K={r.clients}: {problem}")


def print_hold(result: Hold) -> None:
    print()
    print(
        "hold: blocked playlist requests held by one daphne origin (Redis live index); "
        "reference: the same process idle"
    )
    r = result
    wake = (
        f"{_ms(statistics.median(r.wake))}/{_ms(_p95(r.wake))}/{_ms(max(r.wake))}"
        if r.wake
        else "-"
    )
    if r.asked >= AIM_HOLD:
        fits = r.held >= AIM_HOLD and r.rss_holding <= AIM_HOLD_BYTES
        aim = f"{'met' if fits else 'missed'} ({r.rss_holding / AIM_HOLD_BYTES:.2f} GiB)"
    else:  # fewer asked: what 5,000 would take at the same cost per request
        projected = r.rss_idle + r.per_request * AIM_HOLD
        aim = f"5,000 → {projected / AIM_HOLD_BYTES:.2f} GiB"
    _table(
        ["asked", "held", "re-asked", "sockets", "threads idle/holding", "RSS idle MiB",
         "RSS holding MiB", "KiB/request", "answered 200", "wake med/p95/max ms",
         "RSS after MiB", "aim 5,000 ≤ 1 GiB"],
        [[
            str(r.asked), str(r.held), str(r.reissued), str(r.sockets),
            f"{r.threads_idle}/{r.threads_holding}", _mib(r.rss_idle), _mib(r.rss_holding),
            f"{r.per_request / 1024:.1f}", f"{r.answered}/{r.asked}", wake, _mib(r.rss_after),
            aim,
        ]],
    )  # fmt: skip
    print(
        "  (held: requests in flight at the least moment of the steady state; RSS: VmRSS of "
        "the origin and its children, the most seen while holding)"
    )
    for problem in r.problems:
        print(f"  unhealthy: {problem}")


# -- command line -----------------------------------------------------------------------


def _counts(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        return []
    return counts if counts and min(counts) >= 1 else []


def _redis_reachable(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as error:
        return str(error)
    return None


def run_with_index(redis_url: str, work: Callable[[LiveIndex], Awaitable[T]]) -> T:
    """Runs ``work`` on uvloop with a Redis live index of its own, closed afterwards.

    SIGTERM and SIGINT cancel it, so its clean-up runs (a KeyboardInterrupt raised by a
    signal handler inside the loop may land in a protocol callback, which swallows it),
    and then raise KeyboardInterrupt here."""

    async def main() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, task.cancel)
        index = RedisLiveIndex.from_url(redis_url, prefix=INDEX_PREFIX)
        try:
            return await work(index)
        finally:
            await index.aclose()
            for signum, handler in previous.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, handler)

    try:
        return run(main())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench delivery",
        description="Ingest-to-screen latency, blocked playlist wake-up, blocked requests held.",
    )
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="latency,wake,hold")
    parser.add_argument("--seconds", type=float, default=30, help="latency: playback window")
    parser.add_argument("--warmup", type=float, default=5, help="latency: playback before it")
    parser.add_argument(
        "--glass-settings",
        default=GLASS_SETTINGS,
        help="glass: part target s / PART-HOLD-BACK parts, comma-separated; 'default' = shipped",
    )
    parser.add_argument("--wake-clients", default="1,100,1000", help="wake: client counts K")
    parser.add_argument("--wake-rounds", type=int, default=5, help="wake: parts per K")
    parser.add_argument("--hold", type=int, default=AIM_HOLD, help="hold: blocked requests")
    parser.add_argument("--hold-seconds", type=float, default=5, help="hold: steady state")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis for wake and hold")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if not only or set(only) - set(MEASUREMENTS):
        parser.error(f"--only takes some of {','.join(MEASUREMENTS)}")
    wake_counts = _counts(args.wake_clients)
    if not wake_counts:
        parser.error("--wake-clients takes positive counts, e.g. 1,100,1000")
    if args.wake_rounds < 1 or args.hold < 1:
        parser.error("--wake-rounds and --hold must be at least 1")
    try:
        glass_settings = _glass_settings(args.glass_settings)
    except ValueError:
        parser.error("--glass-settings takes e.g. 0.334/3,0.2/3,default")
    if {"glass", "latency"} & set(only) and (
        shutil.which("chromium") is None or shutil.which("ffmpeg") is None
    ):
        print("latency needs chromium and ffmpeg: apt-get install chromium ffmpeg")
        return 2
    if {"wake", "hold"} & set(only) and (error := _redis_reachable(args.redis)):
        print(f"wake and hold need Redis at {args.redis} (--redis URL): {error}")
        return 2
    files = raise_open_files_limit()
    if "hold" in only and files < args.hold + 1000:
        print(f"only {files} open files allowed: raise the hard limit (ulimit -Hn) for --hold")
        return 2

    load_at_start = os.getloadavg()[0]
    print(f"golive delivery benchmark: {os.cpu_count()} cores, load average {load_at_start:.2f}")
    try:
        with (
            sigterm_interrupts(),
            tempfile.TemporaryDirectory(prefix="golive-bench-") as tmp,
            Processes() as processes,
        ):
            if "glass" in only:
                results = []
                for number, setting in enumerate(glass_settings):
                    label = (
                        "default settings"
                        if setting is None
                        else f"part {setting[0]:g} s, hold-back {setting[1]:g} parts"
                    )
                    print(
                        f"glass: {label}: starting manage.py up and the stamped publisher ...",
                        flush=True,
                    )
                    results.append(
                        measure_glass(
                            processes,
                            Path(tmp) / f"glass-{number}",
                            setting,
                            args.seconds,
                            args.warmup,
                        )
                    )
                    processes.close()
                print_glass(results, args.seconds, args.warmup)
            if "latency" in only:
                print("latency: encoding the sample, starting manage.py up ...", flush=True)
                sample = encode_sample(Path(tmp) / "sample.flv")
                latency = measure_latency(
                    processes, Path(tmp) / "up", sample, args.seconds, args.warmup
                )
                processes.close()
                print_latency(latency, args.seconds, args.warmup)
            if "wake" in only:
                print("\nwake: starting an origin ...", flush=True)
                origin = start_origin(processes, Path(tmp) / "wake", args.redis)
                wakes = run_with_index(
                    args.redis,
                    lambda index: measure_wake(origin, index, wake_counts, args.wake_rounds),
                )
                processes.close()
                print_wake(wakes, args.wake_rounds)
            if "hold" in only:
                print(f"\nhold: starting an origin, {args.hold} requests ...", flush=True)
                origin = start_origin(processes, Path(tmp) / "hold", args.redis)
                hold = run_with_index(
                    args.redis,
                    lambda index: measure_hold(
                        origin, index, args.hold, args.hold_seconds, _progress
                    ),
                )
                processes.close()
                print_hold(hold)
            print(
                f"\nnumbers may be noisy: {os.cpu_count()} cores shared by the origin, the "
                "clients, Redis, the browser and any other work (load average "
                f"{load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at end)"
            )
    except KeyboardInterrupt:
        print("\ninterrupted: every process stopped, temporary files removed")
        return 130
    return 0


def _progress(message: str) -> None:
    print(f"  {message}", flush=True)
