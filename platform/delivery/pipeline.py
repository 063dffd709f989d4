"""From the packager to viewers: parts into the live index, segments into the segment
store, and at the end a VOD playlist. One `DeliveryOutput` per rendition of a publish (the
source's, and each transcoded rung's): it also keeps the rendition's description
(`transcoder.renditions.Rendition`, bandwidth measured) in the live index, where every
origin reads the multivariant playlist from.

The packager calls the output synchronously from the ingest's event loop. Segments go at
once to the rendition's upload lane (`delivery.uploads`), which stores them in order,
retrying until the store takes them; every other call is queued, and one task per output
carries the queue out in order, so the index sees parts in order and nothing blocks the
loop. Parts never wait for an upload, except that a segment is listed under its durable
URL when its upload finishes within LISTING_WAIT while the store keeps up.

The output keeps what it needs to rebuild the index: the init segment, the current
segment's parts and every segment's timing. When the index loses its state (Redis
restarted empty or from an old append-only file, or unreachable for a while) the next
write notices and the output puts its state back (`_rebuild`), so viewers resume within
about a second of Redis answering, with no restart of the publish. The recording does not
depend on the index at all: the VOD lists every segment stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from redis.exceptions import RedisError

from ingest.gatekeeper import Grant
from transcoder.cmaf.packager import InitInfo, PackagerOutput, PartInfo, SegmentInfo
from transcoder.live_index import (
    DEFAULT_WINDOW_SECONDS,
    LiveIndex,
    LiveIndexError,
    PartRef,
    SegmentRef,
)
from transcoder.renditions import SOURCE, Rendition, from_init

from .live import (
    live_index,
    part_target,
    segment_store,
    store_path,
    stream_name,
    target_duration,
)
from .segment_store import SegmentStore
from .uploads import UploadDropped, UploadLane
from .vod import StoredSegment, save_vod

log = logging.getLogger(__name__)

# How long the parts after a segment may wait for its upload, when the store keeps up, so
# that the segment is listed under its durable URL. A segment's URI must not change once
# listed (hls.js drops a playlist whose segment URIs changed: "media sequence mismatch"),
# so one stored later stays listed under its origin URI, served from the index.
LISTING_WAIT = 0.3
# The init segment may wait longer: nobody watches before it exists, and the first upload
# of a process builds its S3 client.
INIT_LISTING_WAIT = 2.0
# What a lost or reset live index raises: a connection error, or a write the index
# refuses because it no longer holds what came before (UnknownRenditionError, OrderError).
INDEX_FAILURES: tuple[type[BaseException], ...] = (
    LiveIndexError, RedisError, OSError, TimeoutError
)
# Between attempts at rebuilding the index: at once (it answered, but lost our state),
# then at most a second apart, so viewers resume within about a second of Redis.
REBUILD_DELAYS = (0.0, 0.1, 0.25, 0.5, 1.0)
# A stale index (an old append-only file) further behind than this is cleared and
# rebuilt from the window rather than caught up segment by segment.
CATCH_UP_LIMIT = 50


@dataclass(slots=True, eq=False)
class _Pending:
    """An object handed to the upload lane: ``stored`` becomes its durable URL."""

    stored: asyncio.Future[str]
    # The lane had nothing waiting: the object is stored now, worth waiting a moment for.
    prompt: bool

    def url(self) -> str | None:
        """The durable URL if the object is stored by now, else None."""
        if self.stored.done() and not self.stored.cancelled() and not self.stored.exception():
            return self.stored.result()
        return None


@dataclass(slots=True, eq=False)
class _Recorded:
    """A segment of the recording: what the VOD and an index rebuild need, no media."""

    msn: int
    duration: float
    program_date_time: float
    discontinuity: bool
    upload: _Pending
    # The URL the live index lists it under (None: its origin URI).
    listed_url: str | None


@dataclass(slots=True, eq=False)
class _Part:
    ref: PartRef
    data: bytes
    program_date_time: float


class DeliveryOutput:
    """The `PackagerOutput` of one rendition of one broadcast (``rendition`` names it; a
    second rendition is a second instance)."""

    def __init__(
        self,
        grant: Grant,
        index: LiveIndex,
        store: SegmentStore,
        *,
        rendition: str = SOURCE,
        lane: UploadLane | None = None,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        self.grant = grant
        self.index = index
        self.store = store
        self.rendition = rendition
        self.stream = stream_name(grant.session_id)
        self.window_seconds = window_seconds
        self.lane = lane or UploadLane(
            store,
            spool_dir=settings.DATA_DIR / "spool" / f"{self.stream}-{rendition}-{uuid.uuid4().hex}",
            memory_bytes=settings.GOLIVE_UPLOAD_MEMORY_MB << 20,
            spool_bytes=settings.GOLIVE_UPLOAD_SPOOL_MB << 20,
        )
        self.queue: asyncio.Queue[tuple[str, object, bytes, _Pending | None]] = asyncio.Queue()
        self.init_info: InitInfo | None = None
        self.peak_bps = 0
        # Bits and seconds of the complete segments, for AVERAGE-BANDWIDTH.
        self.bits = 0
        self.seconds = 0.0
        self.first_part_bps: int | None = None
        self.described: Rendition | None = None
        self._listed = False  # described in the index: from the first part on
        self._inits = 0  # init segments written
        self.recording: list[_Recorded] = []
        # What the index needs again after losing it.
        self._init: tuple[bytes, _Pending, str | None] | None = None
        self._current: list[_Part] = []
        self._ended = False
        self.index_ok = True
        self._failures = 0
        self._retry_at = 0.0
        self.rebuilds = 0
        self.worker = asyncio.get_running_loop().create_task(self._run())

    # PackagerOutput: called synchronously by the packager.
    def init(self, info: InitInfo, data: bytes) -> None:
        # Numbered here, not by the packager's generation: a rung carried on after a
        # reconnect is a new packager (generation 0 again) writing the same rendition.
        upload = self._upload(f"init-{self._inits}.mp4", data)
        self._inits += 1
        self.queue.put_nowait(("init", info, data, upload))

    def part(self, info: PartInfo, data: bytes) -> None:
        self.queue.put_nowait(("part", info, data, None))

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self.peak_bps = max(self.peak_bps, int(len(data) * 8 / max(info.duration, 0.1)))
        self.bits += len(data) * 8
        self.seconds += info.duration
        upload = self._upload(f"seg-{info.msn}.m4s", data)
        self.queue.put_nowait(("segment", info, b"", upload))

    def end(self) -> None:
        self.queue.put_nowait(("end", None, b"", None))

    def _upload(self, name: str, data: bytes) -> _Pending:
        prompt = self.lane.idle
        stored = self.lane.submit(store_path(self.grant.session_id, self.rendition, name), data)
        return _Pending(stored, prompt)

    # The worker: one task, the queue in order.
    async def _run(self) -> None:
        if self.rendition == SOURCE:  # the stream is the source's: rungs join it
            with contextlib.suppress(*INDEX_FAILURES):
                await self.index.remove(self.stream)  # a leftover of a crashed run, if any
        while True:
            kind, info, data, upload = await self.queue.get()
            try:
                if kind == "init":
                    await self._on_init(info, data, upload)  # type: ignore[arg-type]
                elif kind == "part":
                    await self._on_part(info, data)  # type: ignore[arg-type]
                elif kind == "segment":
                    await self._on_segment(info, upload)  # type: ignore[arg-type]
                else:
                    await self._end()
                    return
            except Exception:
                log.exception("delivery of %s/%s failed at %s", self.stream, self.rendition, kind)

    async def _on_init(self, info: InitInfo, data: bytes, upload: _Pending) -> None:
        url = await _listing_url(upload, INIT_LISTING_WAIT)
        self._init = (data, upload, url)
        self.init_info = info  # what the parts queued from now on are described by
        self.described = None  # said again with every init
        await self._sync(lambda: self._set_init(data, url))
        if self._listed:
            await self._describe()  # a new init mid-broadcast (a discontinuity)

    async def _set_init(self, data: bytes, url: str | None) -> None:
        await self.index.set_init(
            self.stream, self.rendition, data, part_target(), target_duration=target_duration(),
            url=url,
        )

    async def _on_part(self, info: PartInfo, data: bytes) -> None:
        part = _Part(
            PartRef(info.msn, info.index, info.duration, info.independent), data,
            info.program_date_time,
        )
        if info.index == 0:
            self._current = []
        self._current.append(part)
        if self.first_part_bps is None and info.duration > 0:
            # Before the first segment (and without the publisher's own figure) the
            # first part's rate stands for BANDWIDTH: it holds the key frame, so it errs high.
            self.first_part_bps = int(len(data) * 8 / max(info.duration, 0.1))
        await self._sync(lambda: self._add_part(part))
        if not self._listed:
            # Listed in the multivariant playlist only from its first part: a player that
            # switches to a rendition listed earlier finds a playlist with nothing to play.
            self._listed = True
            await self._describe()

    async def _add_part(self, part: _Part) -> None:
        await self.index.add_part(
            self.stream, self.rendition, part.ref, part.data,
            program_date_time=part.program_date_time if part.ref.index == 0 else None,
        )

    async def _on_segment(self, info: SegmentInfo, upload: _Pending) -> None:
        url = await _listing_url(upload)
        record = _Recorded(
            info.msn, info.duration, info.program_date_time, info.discontinuity, upload, url
        )
        self.recording.append(record)
        self._current = []
        await self._sync(lambda: self._complete(record, url))
        await self._describe()

    def _description(self) -> Rendition | None:
        if self.init_info is None:
            return None
        average = int(self.bits / self.seconds) if self.seconds > 0 else None
        return from_init(
            self.init_info, name=self.rendition, peak_bps=self.peak_bps or None,
            average_bps=average, first_part_bps=self.first_part_bps,
        )

    async def _describe(self) -> None:
        """Keeps the rendition's description in the index current: after the init, at the
        first part, and whenever a segment changes its measured bit rate. A lost index
        gets it again when it is rebuilt."""
        description = self._description()
        if description is None or description == self.described or not self.index_ok:
            return
        try:
            await self.index.describe(self.stream, description)
        except Exception:
            # A viewer's quality menu may be stale for a segment; the media must go on.
            log.exception("the description of %s/%s could not be kept", self.stream,
                          self.rendition)
            return
        self.described = description

    async def _complete(self, record: _Recorded, url: str | None) -> None:
        await self.index.complete_segment(
            self.stream, self.rendition,
            SegmentRef(
                record.msn, record.duration, record.program_date_time, url=url,
                discontinuity=record.discontinuity,
            ),
        )

    # Keeping the index in step, and rebuilding it when it lost what we wrote.
    async def _sync(self, write: Callable[[], Awaitable[None]]) -> None:
        """Carries out one write, which our state already holds; if the index has lost
        that state (or this write fails), rebuilds it instead, now or at the next write
        after a short delay. Never raises an index failure."""
        if self.index_ok:
            try:
                await write()
                return
            except INDEX_FAILURES as error:
                self._lost(error)
        if time.monotonic() < self._retry_at:
            return  # this write is in our state: the rebuild will carry it
        try:
            await self._rebuild()
        except INDEX_FAILURES as error:
            self._lost(error)
            return
        self.index_ok = True
        self._failures = 0
        self.rebuilds += 1
        log.warning("live index of %s/%s rebuilt at segment %s",
                    self.stream, self.rendition, self._current_msn())

    def _lost(self, error: BaseException) -> None:
        if self.index_ok:
            log.warning("live index lost %s/%s (%s: %s): rebuilding it when it answers",
                        self.stream, self.rendition, type(error).__name__, error)
        self.index_ok = False
        self._retry_at = time.monotonic() + REBUILD_DELAYS[
            min(self._failures, len(REBUILD_DELAYS) - 1)
        ]
        self._failures += 1

    async def _rebuild(self) -> None:
        """Puts our state back into the index: the init segment, the recent segments it
        does not list (under their durable URL when stored, else as gaps: their parts are
        gone) and the parts so far of the current segment. Idempotent: whatever the index
        still holds is kept (an old append-only file's state is caught up)."""
        if self._init is None:
            return
        window = await self.index.snapshot(self.stream, self.rendition)
        listed_next = window.next_msn if window is not None else None
        behind = [r for r in self.recording if listed_next is not None and r.msn >= listed_next]
        if self.rendition == SOURCE and listed_next is not None and (  # the source's stream
            len(behind) > CATCH_UP_LIMIT or listed_next > self._current_msn()
        ):
            await self.index.remove(self.stream)
            listed_next = None
        data, _upload, url = self._init
        await self._set_init(data, url)
        # The multivariant playlist is read from the index: describe the rendition again.
        self.described = None
        description = self._description()
        if description is not None and self._listed:
            await self.index.describe(self.stream, description)
            self.described = description
        for record in behind if listed_next is not None else self._recent():
            stored_url = record.listed_url or record.upload.url()
            if stored_url is None:
                await self.index.mark_gap(
                    self.stream, self.rendition, record.msn, record.duration,
                    record.program_date_time, discontinuity=record.discontinuity,
                )
            else:
                await self._complete(record, stored_url)
        for part in self._current:
            await self._add_part(part)
        if self._ended and self.rendition == SOURCE:
            await self.index.end(self.stream)

    def _recent(self) -> list[_Recorded]:
        """The newest segments of the recording that fit in the index's window."""
        span = 0.0
        start = len(self.recording)
        while start > 0 and span + self.recording[start - 1].duration <= self.window_seconds:
            start -= 1
            span += self.recording[start].duration
        return self.recording[start:]

    def _current_msn(self) -> int:
        if self._current:
            return self._current[0].ref.msn
        return self.recording[-1].msn + 1 if self.recording else 0

    # The end: the index says so, the lane drains, the VOD is written.
    async def _end(self) -> None:
        self._ended = True
        # The stream's end is the source's (it ends every rendition; the rungs end first).
        if self.rendition == SOURCE:
            # A few tries over a few seconds: an index that stays away expires by itself.
            for _attempt in range(len(REBUILD_DELAYS) + 3):
                await self._sync(lambda: self.index.end(self.stream))
                if self.index_ok:
                    break
                await asyncio.sleep(max(self._retry_at - time.monotonic(), 0.05))
        await self.lane.drain()
        try:
            await self._write_vod()
        finally:
            await self.lane.aclose()

    async def _write_vod(self) -> None:
        if self._init is None:
            return
        init_url = self._init[1].url()
        segments = [
            StoredSegment(r.msn, r.duration, r.program_date_time, url, r.discontinuity)
            for r in self.recording
            if (url := r.upload.url()) is not None
        ]
        missing = len(self.recording) - len(segments)
        if missing:
            log.error("%s/%s: %d segment(s) could not be stored and are not in the VOD",
                      self.stream, self.rendition, missing)
        if not segments or init_url is None:
            return
        path = await asyncio.to_thread(
            save_vod, self.store, self.grant.session_id, self.rendition, init_url, segments
        )
        if self.rendition == SOURCE:  # the session names the source's; rungs sit beside it
            await sync_to_async(_record_vod)(self.grant.session_id, path)


def _record_vod(session_id: int, path: str) -> None:
    from streams.recordings import record_vod

    close_old_connections()  # on a long-lived worker thread of the ingest
    record_vod(session_id, path)


async def _listing_url(upload: _Pending, wait: float = LISTING_WAIT) -> str | None:
    """The object's durable URL if it is stored within ``wait`` seconds (only waited for
    when the lane was keeping up), else None."""
    if not upload.prompt:
        return upload.url()
    try:
        return await asyncio.wait_for(asyncio.shield(upload.stored), wait)
    except (TimeoutError, UploadDropped):
        return None


def make_delivery_output(grant: Grant) -> PackagerOutput:
    return DeliveryOutput(grant, live_index(), segment_store())
