"""How far each rung's parts come after the source's: part N of a rung in the live index,
timed from part N of the source in the index (the issue's aim: p95 <= one part target +
300 ms). Part of `python -m tests.bench transcode` (``--lag``).

The source clip is pushed at its own pace into the source's `Packager`, whose parts go
into a live index; a `TranscodeSession` makes the ladder, whose parts go into the same
index, each write timed when it completes. Two ways, as golive runs them:

- embedded (`manage.py up`): the session is handed the publish's packets and the source
  packager's cuts as they happen (`delivery.transcoding`);
- cluster (a transcode worker): the session reads the source's parts back from the live
  index (`transcoder.follower.SourceFollower`). With ``redis_url`` the index is Redis
  (writer and follower on separate connections, the follower's wakes through pub/sub),
  else the memory index.

A rung's part N closes when the rung's first frame of part N + 1 is encoded; the source's
B-frames hold a frame back in the decoder until later packets arrive; and in a cluster
the session sees part N + 1's packets only once that whole part is published, which is
one part target after part N at best.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tests.scheduling import drop_realtime
from tests.transcoder.cmaf.media import Clip
from transcoder.cmaf.packager import (
    PART_TARGET,
    InitInfo,
    Packager,
    PackagerSettings,
    PartInfo,
    SegmentInfo,
)
from transcoder.follower import SourceFollower
from transcoder.ladder import Rung
from transcoder.live_index import LiveIndex, MemoryLiveIndex, PartRef, SegmentRef
from transcoder.renditions import SOURCE
from transcoder.session import TranscodeSession

STREAM = f"bench-{uuid.uuid4().hex[:8]}"
SETTINGS = PackagerSettings(part_target=PART_TARGET, max_segment_duration=2)


class _IndexOutput:
    """A rendition's `PackagerOutput` writing into the index in order, on the loop (from
    any thread), noting when each part's write completed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, index: LiveIndex, rendition: str,
                 published: dict[tuple[int, int], float]) -> None:
        self.loop, self.index, self.rendition, self.published = loop, index, rendition, published
        self.queue: asyncio.Queue[tuple[str, Any, bytes]] = asyncio.Queue()
        self.task = loop.create_task(self._run())

    def init(self, info: InitInfo, data: bytes) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("init", info, data))

    def part(self, info: PartInfo, data: bytes) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("part", info, data))

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("segment", info, b""))

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("end", None, b""))

    async def _run(self) -> None:
        while True:
            kind, info, data = await self.queue.get()
            if kind == "init":
                await self.index.set_init(STREAM, self.rendition, data, PART_TARGET,
                                          target_duration=2)
            elif kind == "part":
                await self.index.add_part(
                    STREAM, self.rendition,
                    PartRef(info.msn, info.index, info.duration, info.independent), data,
                    program_date_time=info.program_date_time if info.index == 0 else None,
                )
                self.published[(info.msn, info.index)] = time.monotonic()
            elif kind == "segment":
                await self.index.complete_segment(STREAM, self.rendition, SegmentRef(
                    info.msn, info.duration, info.program_date_time))
            else:
                return


class _Leader(_IndexOutput):
    """The source's output; embedded, it hands each part's cut to the session."""

    session: TranscodeSession | None = None

    def part(self, info: PartInfo, data: bytes) -> None:
        super().part(info, data)
        if self.session is not None and info.cut is not None:
            self.session.cut(info.cut)


async def _measure(
    clip: Clip, ladder: Sequence[Rung], preset: str, seconds: float, cluster: bool,
    redis_url: str | None,
) -> dict[str, list[float]]:
    from transcoder.live_index.redis_index import RedisLiveIndex

    loop = asyncio.get_running_loop()
    prefix = f"golive-bench-{uuid.uuid4().hex[:8]}"
    writer: LiveIndex
    reader: LiveIndex
    if redis_url:
        writer = RedisLiveIndex.from_url(redis_url, prefix=prefix)
        reader = RedisLiveIndex.from_url(redis_url, prefix=prefix)
    else:
        writer = reader = MemoryLiveIndex()
    published: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    outputs: list[_IndexOutput] = []

    def make_output(name: str) -> _IndexOutput:
        # Called from the session's feeder thread: the output is made on the loop.
        made = asyncio.run_coroutine_threadsafe(_made(name), loop)
        return made.result(10)

    async def _made(name: str) -> _IndexOutput:
        output = _IndexOutput(loop, writer, name, published[name])
        outputs.append(output)
        return output

    leader = _Leader(loop, writer, SOURCE, published[SOURCE])
    packager = Packager(leader, SETTINGS)
    session = TranscodeSession(ladder, make_output, SETTINGS, name="bench", preset=preset,
                               shed=not cluster)
    if not cluster:
        leader.session = session
    drop_realtime()
    finished = asyncio.Event()
    last: list[tuple[int, int]] = []

    async def source_end() -> tuple[int, int] | None:
        return last[0] if finished.is_set() and last else None

    async def follow() -> str:
        # As a worker does (plan_start): once the source has a part to start from.
        while not await reader.wait_for_part(STREAM, SOURCE, 0, 0, 1.0):
            pass
        return await SourceFollower(reader, STREAM, session, start_msn=0,
                                    source_end=source_end).run(asyncio.Event())

    follower = asyncio.ensure_future(follow()) if cluster else None
    try:
        headers = clip.headers(clip.frames[0].timestamp)
        for header in headers:
            packager.push(header)
            if not cluster:
                session.media(header)
        first = clip.frames[0].timestamp
        started = loop.time()
        for frame in clip.frames:
            due = started + (frame.timestamp - first) / 1000
            if due - started > seconds:
                break
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            packet = frame.packet(received_at=time.time())
            packager.push(packet)
            if not cluster:
                session.media(packet)
        packager.end()
        await leader.task
        if published[SOURCE]:
            last.append(max(published[SOURCE]))
        finished.set()
        if follower is not None:
            await follower
        session.end()
        await asyncio.to_thread(session.join, 60)
        for output in outputs:
            await output.task
    finally:
        await writer.aclose()
        if reader is not writer:
            await reader.aclose()
    source = published[SOURCE]
    return {
        name: [when - source[key] for key, when in parts.items() if key in source]
        for name, parts in published.items()
        if name != SOURCE
    }


def measure_lag(
    clip: Clip, ladder: Sequence[Rung], preset: str, seconds: float, *, cluster: bool,
    redis_url: str | None = None,
) -> dict[str, list[float]]:
    """Per rung, seconds from the source's part N in the index to the rung's part N."""
    return asyncio.run(_measure(clip, ladder, preset, seconds, cluster, redis_url))
