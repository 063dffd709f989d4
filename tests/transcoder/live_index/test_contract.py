"""One contract, two live indexes: in memory (embedded mode) and Redis (cluster mode).

The Redis runs use the real server at REDIS_URL (default 127.0.0.1:6379) under a key prefix
of their own, deleted afterwards. Where the contract is about other processes (the ingest
writes, origins read) the Redis runs use a second index with its own connections, the
memory runs the same index: one process is all the embedded mode has.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from transcoder.live_index import (
    LiveIndex,
    MemoryLiveIndex,
    OrderError,
    PartRef,
    RenditionWindow,
    SegmentRef,
    StreamEndedError,
    UnknownRenditionError,
)
from transcoder.live_index.redis_index import RedisLiveIndex
from transcoder.renditions import SOURCE, Rendition

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
REQUIRE_SERVICES = os.environ.get("GOLIVE_REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parents[3]
INIT = b"\x00\x00\x00\x18ftypiso6" + b"init" * 8
PDT = 1_763_740_800.0  # 2025-11-21T16:00:00Z


def redis_problem() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as error:
        return f"Redis is not reachable at {REDIS_URL} ({error})"
    return None


class Backend:
    """Opens indexes of one kind inside a test's event loop and cleans up after it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = f"golive:test:{uuid.uuid4().hex[:12]}"
        self.options: dict[str, Any] = {}
        self._opened: list[LiveIndex] = []
        self._memory: MemoryLiveIndex | None = None

    def index(self, **options: Any) -> LiveIndex:
        """The writer's index (``options``: window_seconds, ttl_seconds)."""
        self.options = options
        if self.kind == "memory":
            self._memory = MemoryLiveIndex(**options)
            return self._memory
        return self._track(RedisLiveIndex.from_url(REDIS_URL, prefix=self.prefix, **options))

    def peer(self, track: bool = True) -> LiveIndex:
        """Another process's view of the same store (the same index in memory)."""
        if self._memory is not None:
            return self._memory
        index = RedisLiveIndex.from_url(REDIS_URL, prefix=self.prefix, **self.options)
        return self._track(index) if track else index

    def _track(self, index: LiveIndex) -> LiveIndex:
        self._opened.append(index)
        return index

    def run(self, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async def main() -> None:
            try:
                await scenario()
            finally:
                for index in self._opened:
                    await index.aclose()
                if self._memory is not None:
                    await self._memory.aclose()

        asyncio.run(main())

    def redis_keys(self) -> list[bytes]:
        client = redis.Redis.from_url(REDIS_URL)
        return sorted(client.scan_iter(match=f"{self.prefix}:*", count=1000))

    def clean(self) -> None:
        if self.kind == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(match=f"{self.prefix}:*", count=1000):
                client.delete(key)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis" and (problem := redis_problem()):
        if REQUIRE_SERVICES:
            pytest.fail(f"GOLIVE_REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(f"{problem}: start redis-server or set REDIS_URL")
    chosen = Backend(request.param)
    yield chosen
    chosen.clean()


@pytest.fixture
def redis_backend() -> Any:
    if problem := redis_problem():
        if REQUIRE_SERVICES:
            pytest.fail(f"GOLIVE_REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(f"{problem}: start redis-server or set REDIS_URL")
    chosen = Backend("redis")
    yield chosen
    chosen.clean()


async def publish_segment(
    index: LiveIndex,
    msn: int,
    *,
    parts: int = 4,
    part_duration: float = 0.5,
    stream: str = "s1",
    rendition: str = "source",
    url: str | None = None,
    discontinuity: bool = False,
) -> SegmentRef:
    for number in range(parts):
        await index.add_part(
            stream,
            rendition,
            PartRef(msn, number, part_duration, independent=number == 0),
            f"{stream}/{rendition}/{msn}.{number}".encode(),
            program_date_time=PDT + msn * parts * part_duration if number == 0 else None,
        )
    segment = SegmentRef(
        msn, parts * part_duration, PDT + msn * parts * part_duration, url=url,
        discontinuity=discontinuity,
    )
    await index.complete_segment(stream, rendition, segment)
    return segment


async def writer_and_peer(
    redis_backend: Backend, *, segments: int = 0
) -> tuple[LiveIndex, RedisLiveIndex]:
    """A writer and a reader in another process's place (its own connections), with
    rendition s1/source's init and its first ``segments`` segments published."""
    writer = redis_backend.index()
    reader = redis_backend.peer()
    assert isinstance(reader, RedisLiveIndex)
    await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
    for msn in range(segments):
        await publish_segment(writer, msn)
    return writer, reader


async def window_of(index: LiveIndex, rendition: str = "source") -> RenditionWindow:
    window = await index.snapshot("s1", rendition)
    assert window is not None
    return window


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 2.0) -> None:
    """For what the contract leaves asynchronous across processes (the reader's
    subscription being in place); sleeps between looks, never spins."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def subscribed(reader: LiveIndex, waiters: int = 1) -> None:
    """Lets waiters reach their sleep: Redis readers first confirm a subscription."""
    if isinstance(reader, RedisLiveIndex):
        async def ready() -> bool:
            watches = list(reader._watches.values())
            return bool(watches) and all(
                w.fresh() and sum(map(len, w.waiters.values())) >= waiters for w in watches
            )

        await eventually(ready)
    else:
        await asyncio.sleep(0.01)


# -- waiting -----------------------------------------------------------------------------


def test_a_waiter_wakes_within_milliseconds_of_the_part_being_published(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    latencies: list[float] = []

    async def scenario() -> None:
        writer = backend.index()
        reader = backend.peer()
        await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
        for number in range(40):
            msn, index = divmod(number, 4)

            async def wait(msn: int = msn, index: int = index) -> float:
                assert await reader.wait_for_part("s1", "source", msn, index, 5.0)
                return time.perf_counter()

            waiter = asyncio.create_task(wait())
            await subscribed(reader)
            published_at = time.perf_counter()
            await writer.add_part("s1", "source", PartRef(msn, index, 0.5), b"x" * 1000)
            latencies.append(await waiter - published_at)
            if index == 3:
                await writer.complete_segment("s1", "source", SegmentRef(msn, 2.0, PDT + msn * 2))

    backend.run(scenario)
    latencies.sort()
    with capsys.disabled():
        print(
            f"\n  live index wake latency ({backend.kind}, other connection): "
            f"p50 {statistics.median(latencies) * 1000:.2f} ms, "
            f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.2f} ms, "
            f"max {latencies[-1] * 1000:.2f} ms over {len(latencies)} parts"
        )
    # Generous: this is a sanity bound on a shared machine, not a benchmark.
    assert statistics.median(latencies) < 0.05
    assert latencies[-1] < 0.5


def test_waiting_for_a_part_that_already_exists_returns_at_once(backend: Backend) -> None:
    async def scenario() -> None:
        writer = backend.index()
        await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
        await publish_segment(writer, 0)
        await writer.add_part("s1", "source", PartRef(1, 0, 0.5), b"p")
        reader = backend.peer()
        # The part itself, an earlier one, a complete segment, any part of one.
        for msn, index in [(1, 0), (0, 2), (0, None), (0, 99)]:
            started = time.perf_counter()
            assert await reader.wait_for_part("s1", "source", msn, index, 5.0)
            assert time.perf_counter() - started < 0.5
        # With no time to wait at all, what exists still counts.
        assert await reader.wait_for_part("s1", "source", 1, 0, 0)

    backend.run(scenario)


def test_waiting_for_a_part_that_never_comes_returns_false_after_the_timeout(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        writer = backend.index()
        await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
        await writer.add_part("s1", "source", PartRef(0, 0, 0.5), b"p")
        reader = backend.peer()
        started = time.perf_counter()
        assert not await reader.wait_for_part("s1", "source", 0, 1, 0.2)
        assert 0.19 <= time.perf_counter() - started < 1.5
        assert not await reader.wait_for_part("s1", "source", 0, 1, 0)
        # A rendition that does not exist (yet) is waited for, not refused.
        assert not await reader.wait_for_part("s1", "720p", 0, 0, 0.05)

    backend.run(scenario)


def test_waiting_for_a_whole_segment_ends_when_it_is_complete_not_at_its_parts(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        writer = backend.index()
        reader = backend.peer()
        await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
        waiter = asyncio.create_task(reader.wait_for_part("s1", "source", 0, None, 5.0))
        await subscribed(reader)
        for number in range(4):
            await writer.add_part("s1", "source", PartRef(0, number, 0.5), b"p")
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await writer.complete_segment("s1", "source", SegmentRef(0, 2.0, PDT))
        assert await asyncio.wait_for(waiter, 1.0)

    backend.run(scenario)


def test_two_thousand_waiters_all_wake_from_one_part_and_share_one_snapshot(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    woke: list[float] = []

    async def scenario() -> None:
        writer = backend.index()
        reader = backend.peer()
        await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
        await writer.add_part("s1", "source", PartRef(0, 0, 0.5), b"p0")

        async def viewer(index: int) -> tuple[bool, int | None]:
            ok = await reader.wait_for_part("s1", "source", 0, index, 10.0)
            woke.append(time.perf_counter())
            window = await reader.snapshot("s1", "source")
            return ok, None if window is None else len(window.parts)

        first = [asyncio.create_task(viewer(1)) for _ in range(2000)]
        later = [asyncio.create_task(viewer(2)) for _ in range(10)]
        await subscribed(reader, waiters=2010)
        reads_before = getattr(reader, "snapshot_reads", 0)
        published_at = time.perf_counter()
        await writer.add_part("s1", "source", PartRef(0, 1, 0.5), b"p1")
        results = await asyncio.wait_for(asyncio.gather(*first), 5.0)
        assert results == [(True, 2)] * 2000
        assert not any(task.done() for task in later)  # part 2 is not there yet
        if isinstance(reader, RedisLiveIndex):
            # Every woken viewer asked for the playlist; a handful of reads served them.
            assert reader.snapshot_reads - reads_before <= 3
        with capsys.disabled():
            print(
                f"\n  live index: 2,000 waiters ({backend.kind}) all awake "
                f"{(max(woke) - published_at) * 1000:.1f} ms after the part was published"
            )
        await writer.add_part("s1", "source", PartRef(0, 2, 0.5), b"p2")
        assert await asyncio.wait_for(asyncio.gather(*later), 5.0) == [(True, 3)] * 10

    backend.run(scenario)


def test_a_writer_on_another_thread_wakes_waiters_on_this_loop(backend: Backend) -> None:
    async def scenario() -> None:
        writer = backend.index()
        await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
        waiter = asyncio.create_task(writer.wait_for_part("s1", "source", 0, 0, 5.0))
        await subscribed(writer)
        other = backend.peer(track=False)

        def transcoder_thread() -> None:
            async def publish() -> None:
                try:
                    await other.add_part("s1", "source", PartRef(0, 0, 0.5), b"from a thread")
                finally:
                    if other is not writer:
                        await other.aclose()

            asyncio.run(publish())

        thread = threading.Thread(target=transcoder_thread)
        thread.start()
        assert await asyncio.wait_for(waiter, 2.0)
        thread.join(2.0)
        assert await writer.get_part("s1", "source", 0, 0) == b"from a thread"

    backend.run(scenario)


def test_ending_a_stream_wakes_its_waiters_and_freezes_its_playlists(backend: Backend) -> None:
    async def scenario() -> None:
        writer = backend.index()
        reader = backend.peer()
        for rendition in ("source", "480p"):
            await writer.set_init("s1", rendition, INIT, 0.5, target_duration=2)
            await publish_segment(writer, 0, rendition=rendition)
        waiters = [
            asyncio.create_task(reader.wait_for_part("s1", rendition, 1, 0, 5.0))
            for rendition in ("source", "480p")
        ]
        await subscribed(reader)
        started = time.perf_counter()
        await writer.end("s1")
        assert await asyncio.wait_for(asyncio.gather(*waiters), 1.0) == [True, True]
        assert time.perf_counter() - started < 0.5
        for rendition in ("source", "480p"):
            window = await reader.snapshot("s1", rendition)
            assert window is not None
            assert window.ended
        # A waiter arriving after the end is not kept waiting either.
        assert await reader.wait_for_part("s1", "source", 7, 0, 5.0)
        with pytest.raises(StreamEndedError):
            await writer.add_part("s1", "source", PartRef(1, 0, 0.5), b"late")
        with pytest.raises(StreamEndedError):
            await writer.set_init("s1", "720p", INIT, 0.5, target_duration=2)
        with pytest.raises(StreamEndedError):
            await writer.mark_gap("s1", "source", 1, 2.0, PDT + 2)
        # The durable URL of a segment already listed may still arrive.
        await writer.mark_stored("s1", "source", 0, "https://cdn.example/s1/0.m4s")
        window = await writer.snapshot("s1", "source")
        assert window is not None
        assert window.segments[0].url == "https://cdn.example/s1/0.m4s"
        await writer.end("s1")  # idempotent
        assert (await window_of(writer)).ended

    backend.run(scenario)


def test_removing_a_stream_wakes_its_waiters_with_false_and_forgets_it(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        writer = backend.index()
        reader = backend.peer()
        for stream in ("s1", "s2"):
            await writer.set_init(stream, "source", INIT, 0.5, target_duration=2)
            await publish_segment(writer, 0, stream=stream)
        waiter = asyncio.create_task(reader.wait_for_part("s1", "source", 1, 0, 5.0))
        await subscribed(reader)
        started = time.perf_counter()
        await writer.remove("s1")
        assert await asyncio.wait_for(waiter, 1.0) is False
        assert time.perf_counter() - started < 0.5
        assert await reader.snapshot("s1", "source") is None
        assert await reader.get_part("s1", "source", 0, 0) is None
        assert await reader.get_init("s1", "source") is None
        await writer.remove("s1")  # idempotent
        assert await reader.get_part("s2", "source", 0, 0) == b"s2/source/0.0"
        if backend.kind == "redis":
            assert all(b"{s1}" not in key for key in backend.redis_keys())

    backend.run(scenario)


def test_closing_the_index_releases_its_waiters_with_false(backend: Backend) -> None:
    async def scenario() -> None:
        index = backend.index()
        await index.set_init("s1", "source", INIT, 0.5, target_duration=2)
        waiters = [
            asyncio.create_task(index.wait_for_part("s1", "source", 0, n, 10.0)) for n in range(3)
        ]
        await subscribed(index, waiters=3)
        await index.aclose()
        assert await asyncio.wait_for(asyncio.gather(*waiters), 1.0) == [False] * 3

    backend.run(scenario)


# -- what a playlist is built from -------------------------------------------------------


def test_the_snapshot_lists_complete_segments_in_order_then_the_current_parts(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        index = backend.index()
        assert await index.snapshot("s1", "source") is None
        assert await index.set_init("s1", "source", INIT, 0.5, target_duration=2) == 1
        empty = await index.snapshot("s1", "source")
        assert empty is not None
        assert (empty.segments, empty.parts, empty.next_msn, empty.ended) == ((), (), None, False)
        versions = [empty.version]
        for msn in range(3):
            await publish_segment(index, 10 + msn, url=None if msn == 2 else f"u/{10 + msn}")
            versions.append((await window_of(index)).version)
        await index.add_part("s1", "source", PartRef(13, 0, 0.5, True), b"a",
                             program_date_time=PDT + 99)
        await index.add_part("s1", "source", PartRef(13, 1, 0.4), b"b")
        window = await index.snapshot("s1", "source")
        assert window is not None
        versions.append(window.version)
        assert versions == sorted(set(versions))  # every change moves the version
        assert window.media_sequence == 10
        assert [s.msn for s in window.segments] == [10, 11, 12]
        assert [s.url for s in window.segments] == ["u/10", "u/11", None]
        assert window.segments[1] == SegmentRef(
            11, 2.0, PDT + 22.0,
            parts=(PartRef(11, 0, 0.5, True), PartRef(11, 1, 0.5), PartRef(11, 2, 0.5),
                   PartRef(11, 3, 0.5)),
            url="u/11",
        )
        assert window.parts == (PartRef(13, 0, 0.5, True), PartRef(13, 1, 0.4))
        assert window.next_msn == 13
        assert window.current_program_date_time == PDT + 99
        assert (window.part_target, window.target_duration) == (0.5, 2)
        assert (window.init_version, window.init_url, window.ended) == (1, None, False)
        assert window.last_part == PartRef(13, 1, 0.4)
        assert window.has_part(13, 1)
        assert window.has_part(12, None)
        assert not window.has_part(13, 2)
        assert not window.has_part(13, None)
        # Nothing changed: the same snapshot again.
        assert await index.snapshot("s1", "source") == window

    backend.run(scenario)


def test_a_segment_gets_its_durable_url_once_stored(backend: Backend) -> None:
    async def scenario() -> None:
        index = backend.index()
        await index.set_init("s1", "source", INIT, 0.5, target_duration=2)
        segment = await publish_segment(index, 0)
        before = await index.snapshot("s1", "source")
        assert before is not None
        assert before.segments[0].url is None
        await index.mark_stored("s1", "source", 0, "https://cdn.example/s1/0.m4s")
        after = await index.snapshot("s1", "source")
        assert after is not None
        assert after.version > before.version
        assert after.segments[0].url == "https://cdn.example/s1/0.m4s"
        assert after.segments[0].parts == before.segments[0].parts
        # Completing it again is idempotent, and may bring the URL instead.
        await index.complete_segment(
            "s1", "source", SegmentRef(0, segment.duration, segment.program_date_time,
                                       url="https://cdn.example/s1/0b.m4s"))
        again = await index.snapshot("s1", "source")
        assert again is not None
        assert again.segments[0].url == "https://cdn.example/s1/0b.m4s"
        await index.mark_stored("s1", "source", 0, "https://cdn.example/s1/0b.m4s")
        assert (await window_of(index)).version == again.version
        with pytest.raises(OrderError):
            await index.mark_stored("s1", "source", 1, "https://cdn.example/s1/1.m4s")

    backend.run(scenario)


def test_a_gap_completes_the_segment_without_its_parts_and_releases_waiters(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        writer = backend.index()
        reader = backend.peer()
        await writer.set_init("s1", "720p", INIT, 0.5, target_duration=2)
        await publish_segment(writer, 0, rendition="720p")
        await writer.add_part("s1", "720p", PartRef(1, 0, 0.5), b"half a gop")
        waiter = asyncio.create_task(reader.wait_for_part("s1", "720p", 1, 3, 5.0))
        await subscribed(reader)
        await writer.mark_gap("s1", "720p", 1, 2.0, PDT + 2, discontinuity=True)
        assert await asyncio.wait_for(waiter, 1.0)
        window = await reader.snapshot("s1", "720p")
        assert window is not None
        assert window.segments[-1] == SegmentRef(1, 2.0, PDT + 2, gap=True, discontinuity=True)
        assert window.parts == ()
        assert window.next_msn == 2
        assert await reader.get_part("s1", "720p", 1, 0) is None
        assert await reader.get_segment("s1", "720p", 1) is None
        await writer.mark_stored("s1", "720p", 1, "https://cdn.example/never")  # ignored
        await writer.mark_gap("s1", "720p", 1, 2.0, PDT + 2)  # idempotent
        window = await reader.snapshot("s1", "720p")
        assert window is not None
        assert window.segments[-1].url is None
        await publish_segment(writer, 2, rendition="720p")

    backend.run(scenario)


def test_writes_out_of_order_are_refused_and_repeats_are_ignored(backend: Backend) -> None:
    async def scenario() -> None:
        index = backend.index()
        with pytest.raises(UnknownRenditionError):
            await index.add_part("s1", "source", PartRef(0, 0, 0.5), b"p")
        with pytest.raises(ValueError, match="stream name"):
            await index.set_init("no spaces", "source", INIT, 0.5, target_duration=2)
        with pytest.raises(ValueError, match="rendition name"):
            await index.snapshot("s1", "{tag}")
        await index.set_init("s1", "source", INIT, 0.5, target_duration=2)
        with pytest.raises(OrderError):
            await index.add_part("s1", "source", PartRef(4, 1, 0.5), b"p")  # not index 0
        # A rendition's first part may have any msn.
        await index.add_part("s1", "source", PartRef(4, 0, 0.5), b"p")
        version = (await window_of(index)).version
        await index.add_part("s1", "source", PartRef(4, 0, 0.5), b"retried")
        assert (await window_of(index)).version == version
        assert await index.get_part("s1", "source", 4, 0) == b"p"
        with pytest.raises(OrderError):
            await index.add_part("s1", "source", PartRef(4, 2, 0.5), b"p")  # skips index 1
        with pytest.raises(OrderError):
            await index.add_part("s1", "source", PartRef(5, 0, 0.5), b"p")  # 4 not complete
        with pytest.raises(OrderError):
            await index.complete_segment("s1", "source", SegmentRef(5, 2.0, PDT))
        with pytest.raises(OrderError):
            await index.complete_segment(
                "s1", "source", SegmentRef(4, 1.0, PDT, parts=(PartRef(4, 0, 0.5),) * 2))
        await index.complete_segment("s1", "source", SegmentRef(4, 0.5, PDT))
        with pytest.raises(OrderError):
            await index.mark_gap("s1", "source", 6, 2.0, PDT)  # 5 must be dealt with first
        with pytest.raises(ValueError, match="duration"):
            await index.complete_segment("s1", "source", SegmentRef(5, 0.0, PDT))
        window = await index.snapshot("s1", "source")
        assert window is not None
        assert [s.msn for s in window.segments] == [4]
        assert window.next_msn == 5

    backend.run(scenario)


def test_parts_segments_and_init_are_fetchable_while_in_the_window(backend: Backend) -> None:
    async def scenario() -> None:
        writer = backend.index()
        await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
        await publish_segment(writer, 0)
        await writer.add_part("s1", "source", PartRef(1, 0, 0.5), b"\x00" * 200_000)
        reader = backend.peer()
        assert await reader.get_part("s1", "source", 0, 2) == b"s1/source/0.2"
        assert await reader.get_part("s1", "source", 1, 0) == b"\x00" * 200_000
        assert await reader.get_part("s1", "source", 1, 1) is None
        assert await reader.get_segment("s1", "source", 0) == b"".join(
            f"s1/source/0.{n}".encode() for n in range(4))
        assert await reader.get_segment("s1", "source", 1) is None  # not complete
        assert await reader.get_init("s1", "source") == INIT
        # Same bytes: same version (idempotent); the URL may come with it.
        assert await writer.set_init("s1", "source", INIT, 0.5, target_duration=2,
                                     url="https://cdn.example/init-1.mp4") == 1
        window = await reader.snapshot("s1", "source")
        assert window is not None
        assert (window.init_version, window.init_url) == (1, "https://cdn.example/init-1.mp4")
        # New bytes (the encoder changed resolution): a new version, the old one kept.
        assert await writer.set_init("s1", "source", b"new init", 0.5, target_duration=2) == 2
        assert await reader.get_init("s1", "source") == b"new init"
        assert await reader.get_init("s1", "source", 2) == b"new init"
        assert await reader.get_init("s1", "source", 1) == INIT
        window = await reader.snapshot("s1", "source")
        assert window is not None
        assert (window.init_version, window.init_url) == (2, None)
        assert await writer.set_init("s1", "source", b"third", 0.5, target_duration=2) == 3
        assert await reader.get_init("s1", "source", 1) is None

    backend.run(scenario)


# -- staying bounded ---------------------------------------------------------------------


def test_trimming_keeps_a_stream_of_ten_thousand_parts_in_a_bounded_window(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        index = backend.index(window_seconds=30.0, ttl_seconds=60.0)
        await index.set_init("s1", "source", INIT, 0.5, target_duration=2)
        # Parts of 0.5 s, segments of 2 s, every 100th a discontinuity: 10,000 parts in
        # memory; 2,000 through Redis (about 0.5 ms a write here) keep the suite fast.
        segments = 2500 if backend.kind == "memory" else 500
        for msn in range(segments):
            await publish_segment(index, msn, url=f"u/{msn}", discontinuity=msn % 100 == 50)
        await index.add_part("s1", "source", PartRef(segments, 0, 0.5), b"current")
        window = await index.snapshot("s1", "source")
        assert window is not None
        first = segments - 15
        assert [s.msn for s in window.segments] == list(range(first, segments))
        assert sum(s.duration for s in window.segments) <= 30.0
        assert window.media_sequence == first
        # The discontinuities at msn 50, 150, … that were trimmed off the front.
        assert window.discontinuity_sequence == segments // 100
        assert await index.get_part("s1", "source", first - 1, 3) is None
        assert await index.get_segment("s1", "source", first - 1) is None
        assert await index.get_part("s1", "source", first, 0) == f"s1/source/{first}.0".encode()
        if isinstance(index, MemoryLiveIndex):
            state = index._streams["s1"].renditions["source"]
            assert (len(state.segments), len(state.data), len(state.parts)) == (15, 61, 1)
        else:
            client = redis.Redis.from_url(REDIS_URL)
            keys = backend.redis_keys()
            assert [k.rsplit(b":", 1)[-1] for k in keys] == [
                b"data", b"meta", b"parts", b"segs", b"stream"]
            data_key = next(k for k in keys if k.endswith(b":data"))
            assert client.hlen(data_key) == 15 * 4 + 1 + 1  # parts, current part, init
            for key in keys:
                assert 0 < client.pttl(key) <= 60_000

    backend.run(scenario)


def test_a_stream_nobody_writes_to_any_more_expires(backend: Backend) -> None:
    async def scenario() -> None:
        index = backend.index(ttl_seconds=0.3)
        await index.set_init("s1", "source", INIT, 0.5, target_duration=2)
        await publish_segment(index, 0)
        await index.end("s1")
        await asyncio.sleep(0.45)
        assert await backend.peer().snapshot("s1", "source") is None
        assert await index.get_part("s1", "source", 0, 0) is None
        if backend.kind == "redis":
            assert backend.redis_keys() == []

    backend.run(scenario)


# -- renditions ---------------------------------------------------------------------------

SOURCE_DESCRIPTION = Rendition(SOURCE, 3_200_000, "avc1.64001f,mp4a.40.2", 1280, 720, 30.0)
RUNG = Rendition("480p30", 1_400_000, "avc1.4d401e,mp4a.40.2", 852, 480, 30.0)


def test_every_reader_lists_the_renditions_described_beside_their_init(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        writer = backend.index()
        reader = backend.peer()
        assert await reader.renditions("s1") == ()
        for description in (SOURCE_DESCRIPTION, RUNG):
            with pytest.raises(UnknownRenditionError):
                await writer.describe("s1", description)  # no init segment yet
            await writer.set_init("s1", description.name, INIT, 0.5, target_duration=2)
        assert await reader.renditions("s1") == ()  # nothing said about them yet
        await writer.describe("s1", SOURCE_DESCRIPTION)
        await writer.describe("s1", RUNG)
        assert await reader.renditions("s1") == (RUNG, SOURCE_DESCRIPTION)  # by name
        measured = SOURCE_DESCRIPTION.with_bandwidth(4_100_000, 3_000_000)
        await writer.describe("s1", measured)
        await writer.describe("s1", measured)  # idempotent
        assert await reader.renditions("s1") == (RUNG, measured)
        assert await reader.renditions("s2") == ()
        await writer.end("s1")
        assert await reader.renditions("s1") == (RUNG, measured)  # ended playlists are served
        with pytest.raises(StreamEndedError):
            await writer.describe("s1", RUNG)
        await writer.remove("s1")
        assert await reader.renditions("s1") == ()

    backend.run(scenario)


def test_a_rendition_nobody_writes_to_any_more_takes_its_description_with_it(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        index = backend.index(ttl_seconds=0.4)
        for description in (SOURCE_DESCRIPTION, RUNG):
            await index.set_init("s1", description.name, INIT, 0.5, target_duration=2)
            await index.describe("s1", description)
        for _ in range(3):  # the source keeps going, the rung's transcoder died
            await asyncio.sleep(0.2)
            await index.set_init("s1", SOURCE, INIT, 0.5, target_duration=2)
        assert await backend.peer().renditions("s1") == (SOURCE_DESCRIPTION,)

    backend.run(scenario)


def test_a_description_round_trips_as_text_and_bad_ones_are_refused() -> None:
    assert Rendition.from_text(RUNG.to_text()) == RUNG
    audio_only = Rendition("audio", 96_000, "mp4a.40.2")
    assert Rendition.from_text(audio_only.to_text()) == audio_only
    for bad in ("", "[]", '{"name": "x"}', "{" * 2000):
        with pytest.raises(ValueError, match="rendition description"):
            Rendition.from_text(bad)
    with pytest.raises(ValueError, match="bandwidth 0 must be > 0"):
        Rendition("x", 0, "avc1.64001f")
    with pytest.raises(ValueError, match="bad CODECS"):
        Rendition("x", 1, 'avc1",evil')
    with pytest.raises(ValueError, match="width and height go together"):
        Rendition("x", 1, "avc1.64001f", width=640)


# -- Redis across connections and processes ----------------------------------------------


def test_a_reader_in_another_process_sees_what_the_writer_published(
    redis_backend: Backend,
) -> None:
    reader_program = textwrap.dedent(f"""
        import asyncio, json, sys, time
        from transcoder.live_index.redis_index import RedisLiveIndex

        async def main():
            index = RedisLiveIndex.from_url({REDIS_URL!r}, prefix={redis_backend.prefix!r})
            print("ready", flush=True)
            ok = await index.wait_for_part("s1", "source", 0, 1, 10.0)
            window = await index.snapshot("s1", "source")
            part = await index.get_part("s1", "source", 0, 1)
            await index.aclose()
            print(json.dumps({{"ok": ok, "parts": len(window.parts), "part": part.decode()}}))

        asyncio.run(main())
    """)

    async def scenario() -> None:
        writer = redis_backend.index()
        await writer.set_init("s1", "source", INIT, 0.5, target_duration=2)
        reader = await asyncio.create_subprocess_exec(
            sys.executable, "-c", reader_program, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert reader.stdout is not None
        assert await asyncio.wait_for(reader.stdout.readline(), 10.0) == b"ready\n"
        # No handshake beyond "ready": a part published while the reader is still
        # subscribing must be found by its re-check after the subscription is confirmed.
        await writer.add_part("s1", "source", PartRef(0, 0, 0.5), b"first")
        await writer.add_part("s1", "source", PartRef(0, 1, 0.5), b"second")
        out, err = await asyncio.wait_for(reader.communicate(), 15.0)
        assert reader.returncode == 0, err.decode()
        assert json.loads(out) == {"ok": True, "parts": 2, "part": "second"}

    redis_backend.run(scenario)


def test_a_waiter_survives_the_loss_of_the_subscriber_connection(
    redis_backend: Backend,
) -> None:
    async def scenario() -> None:
        writer, reader = await writer_and_peer(redis_backend)
        waiter = asyncio.create_task(reader.wait_for_part("s1", "source", 0, 0, 10.0))
        await subscribed(reader)
        assert reader._pubsub is not None
        assert reader._pubsub.connection is not None
        await reader._pubsub.connection.disconnect()
        # Published while the reader is reconnecting: its event is lost, the re-check is not.
        await writer.add_part("s1", "source", PartRef(0, 0, 0.5), b"p")
        assert await asyncio.wait_for(waiter, 5.0)
        # And the new subscription delivers events again.
        waiter = asyncio.create_task(reader.wait_for_part("s1", "source", 0, 1, 10.0))
        await subscribed(reader)
        await writer.add_part("s1", "source", PartRef(0, 1, 0.5), b"p")
        assert await asyncio.wait_for(waiter, 1.0)

    redis_backend.run(scenario)


def test_an_origin_process_keeps_one_subscriber_connection_for_all_its_waiters(
    redis_backend: Backend,
) -> None:
    async def scenario() -> None:
        writer = redis_backend.index()
        name = f"origin-{uuid.uuid4().hex[:8]}"
        reader = RedisLiveIndex(
            redis.asyncio.Redis.from_url(REDIS_URL, client_name=name),
            prefix=redis_backend.prefix, owns_client=True,
        )
        redis_backend._track(reader)
        for rendition in ("source", "720p", "480p"):
            await writer.set_init("s1", rendition, INIT, 0.5, target_duration=2)
        waiters = [
            asyncio.create_task(reader.wait_for_part("s1", rendition, 0, 0, 10.0))
            for rendition in ("source", "720p", "480p")
            for _ in range(300)
        ]
        await subscribed(reader, waiters=300)
        client = redis.Redis.from_url(REDIS_URL)
        channels = client.pubsub_channels(f"{redis_backend.prefix}:*")
        assert len(channels) == 4  # three renditions and the process's control channel
        subscribers = [c for c in client.client_list(_type="pubsub") if c["name"] == name]
        assert [int(c["sub"]) for c in subscribers] == [4]
        # 900 waiters: the subscriber plus the few pooled connections the renditions'
        # (shared) reads needed at the same moment; nothing per waiter.
        assert len([c for c in client.client_list() if c["name"] == name]) <= 1 + 3 * 2
        for rendition in ("source", "720p", "480p"):
            await writer.add_part("s1", rendition, PartRef(0, 0, 0.5), b"p")
        assert all(await asyncio.wait_for(asyncio.gather(*waiters), 5.0))

    redis_backend.run(scenario)


def test_a_wait_that_starts_as_a_shared_read_lands_does_not_freeze_the_event_loop(
    redis_backend: Backend,
) -> None:
    """The origin's order of events at a stream's start: a viewer's snapshot read is in
    flight, it completes, and before its done callback has run (next loop turn) another
    viewer's request snapshots and waits. Reusing the finished read without yielding must
    not become a loop that never yields (it froze the whole origin until the deadline)."""

    async def scenario() -> None:
        writer, reader = await writer_and_peer(redis_backend, segments=1)
        # Read before the subscription is confirmed: nothing learned, so not fresh.
        assert await reader.snapshot("s1", "source") is not None
        watch = next(iter(reader._watches.values()))
        await asyncio.wait_for(watch.confirmed.wait(), 5.0)
        assert not watch.fresh()

        release = asyncio.Event()
        read_window = reader._read_window

        async def held_read(stream: str, rendition: str) -> RenditionWindow | None:
            window = await read_window(stream, rendition)
            await release.wait()  # then it finishes in the very next step of its task
            return window

        reader._read_window = held_read  # type: ignore[method-assign]
        first = asyncio.create_task(reader.snapshot("s1", "source"))
        await asyncio.sleep(0.1)  # its read has been made and is held
        results: list[bool] = []

        async def late_viewer() -> None:
            # Scheduled behind the read's completion, ahead of its done callback.
            await reader.snapshot("s1", "source")
            results.append(await reader.wait_for_part("s1", "source", 1, 0, timeout=1.0))

        read_done = asyncio.Event()
        assert watch.flight is not None
        watch.flight.task.add_done_callback(lambda _task: read_done.set())
        started = time.monotonic()
        release.set()  # the read's last step is scheduled ...
        viewer = asyncio.create_task(late_viewer())  # ... and this viewer's first, after it
        await read_done.wait()
        await first
        # The read's own callbacks ran at once: nothing held the loop until a deadline.
        assert time.monotonic() - started < 0.5, "the event loop stood still"
        reader._read_window = read_window  # type: ignore[method-assign]
        await writer.add_part("s1", "source", PartRef(1, 0, 0.5), b"p")
        await asyncio.wait_for(viewer, 2.0)
        assert results == [True]

    redis_backend.run(scenario)


def test_a_part_read_after_its_wait_is_never_answered_by_a_read_begun_before_it_existed(
    redis_backend: Backend,
) -> None:
    """The origin's order for a preload hint: read the part (not there yet), wait for it,
    read it again. Reads of one part are shared (one HGET for a crowd), and under load a
    read begun before the part was written can still be in flight when the wait ends: the
    second read must not take its None (the origin answered 404, an edge kept that 404
    for a moment, and 1,275 requests of 1,000 viewers failed in CI)."""

    async def scenario() -> None:
        writer, reader = await writer_and_peer(redis_backend, segments=1)
        assert await reader.snapshot("s1", "source") is not None  # the origin's watch
        assert await reader.wait_for_part("s1", "source", 0, 3, timeout=2.0)

        release = asyncio.Event()
        hget = reader._client.hget

        async def held_hget(key: Any, field: Any) -> Any:
            value = await hget(key, field)  # type: ignore[misc]
            await release.wait()  # answered before the write, returned after the wait
            return value

        reader._client.hget = held_hget  # type: ignore[method-assign,assignment]
        early = asyncio.create_task(reader.get_part("s1", "source", 1, 0))
        await asyncio.sleep(0.1)  # its HGET has been answered: no such part yet
        await writer.add_part("s1", "source", PartRef(1, 0, 0.5), b"p")
        assert await reader.wait_for_part("s1", "source", 1, 0, timeout=2.0)
        reader._client.hget = hget  # type: ignore[method-assign]
        again = asyncio.create_task(reader.get_part("s1", "source", 1, 0))
        await asyncio.sleep(0.1)
        release.set()
        assert await early is None  # begun before the write: no part, rightly
        assert await asyncio.wait_for(again, 2.0) == b"p"

    redis_backend.run(scenario)


def test_a_crowd_asking_for_one_part_at_once_costs_one_read(redis_backend: Backend) -> None:
    async def scenario() -> None:
        _writer, reader = await writer_and_peer(redis_backend, segments=1)
        assert await reader.wait_for_part("s1", "source", 0, 3, timeout=2.0)
        reads = 0
        hget = reader._client.hget

        async def counted_hget(key: Any, field: Any) -> Any:
            nonlocal reads
            reads += 1
            return await hget(key, field)  # type: ignore[misc]

        reader._client.hget = counted_hget  # type: ignore[method-assign,assignment]
        crowd = [reader.get_part("s1", "source", 0, 3) for _ in range(500)]
        assert set(await asyncio.gather(*crowd)) == {b"s1/source/0.3"}
        assert reads == 1

    redis_backend.run(scenario)
