"""From the packager to viewers: parts into the live index, segments into the segment
store (then the index), and at the end a VOD playlist. One `DeliveryOutput` per rendition
of a publish (the source's, and each transcoded rung's): it also keeps the rendition's
description (`transcoder.renditions.Rendition`, bandwidth measured) in the live index,
where every origin reads the multivariant playlist from.

The packager calls the output synchronously from the ingest's event loop; the output
queues each call and one task per publish carries them out in order, so the index sees
parts in order and nothing blocks the loop; uploads run in threads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from ingest.gatekeeper import Grant
from transcoder.cmaf.packager import InitInfo, PackagerOutput, PartInfo, SegmentInfo
from transcoder.hls.playlist import (
    MediaPlaylist,
    Segment,
    render_media_playlist,
    target_duration_for,
)
from transcoder.live_index import LiveIndex, PartRef, SegmentRef
from transcoder.renditions import SOURCE, Rendition, from_init

from .live import (
    PART_TARGET,
    live_index,
    segment_store,
    store_path,
    stream_name,
    target_duration,
)
from .segment_store import SegmentStore

log = logging.getLogger(__name__)

@dataclass
class _Stored:
    msn: int
    duration: float
    program_date_time: float
    url: str
    discontinuity: bool


@dataclass
class DeliveryOutput:
    grant: Grant
    index: LiveIndex
    store: SegmentStore
    rendition: str = SOURCE
    queue: asyncio.Queue[tuple[str, object, bytes]] = field(default_factory=asyncio.Queue)
    stored: list[_Stored] = field(default_factory=list)
    init_url: str = ""
    peak_bps: int = 0
    init_info: InitInfo | None = None
    # Bits and seconds of the complete segments, for AVERAGE-BANDWIDTH.
    bits: int = 0
    seconds: float = 0.0
    first_part_bps: int | None = None
    described: Rendition | None = None

    def __post_init__(self) -> None:
        self.stream = stream_name(self.grant.session_id)
        self.worker = asyncio.get_running_loop().create_task(self._run())

    # PackagerOutput: called synchronously by the packager.
    def init(self, info: InitInfo, data: bytes) -> None:
        self.queue.put_nowait(("init", info, data))

    def part(self, info: PartInfo, data: bytes) -> None:
        self.queue.put_nowait(("part", info, data))

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self.queue.put_nowait(("segment", info, data))

    def end(self) -> None:
        self.queue.put_nowait(("end", None, b""))

    async def _run(self) -> None:
        if self.rendition == SOURCE:  # the stream is the source's: rungs join it
            await self.index.remove(self.stream)  # a leftover of a crashed run, if any
        while True:
            kind, info, data = await self.queue.get()
            try:
                if kind == "init":
                    await self._init(info, data)  # type: ignore[arg-type]
                elif kind == "part":
                    await self._part(info, data)  # type: ignore[arg-type]
                elif kind == "segment":
                    await self._segment(info, data)  # type: ignore[arg-type]
                else:
                    await self._end()
                    return
            except Exception:
                log.exception("delivery of %s failed at %s", self.stream, kind)

    async def _init(self, info: InitInfo, data: bytes) -> None:
        path = store_path(self.grant.session_id, self.rendition, f"init-{info.generation}.mp4")
        self.init_url = await asyncio.to_thread(self.store.save, path, data)
        await self.index.set_init(
            self.stream, self.rendition, data, PART_TARGET, target_duration=target_duration(),
            url=self.init_url,
        )
        self.init_info = info  # what the parts queued from now on are described by
        self.described = None  # said again with every init: the index may have been reset
        await self._describe()

    async def _part(self, info: PartInfo, data: bytes) -> None:
        if self.first_part_bps is None and info.duration > 0:
            # Before the first segment (and without the publisher's own figure) the
            # first part's rate stands for BANDWIDTH: it holds the key frame, so it errs high.
            self.first_part_bps = int(len(data) * 8 / max(info.duration, 0.1))
            await self._describe()
        await self.index.add_part(
            self.stream,
            self.rendition,
            PartRef(info.msn, info.index, info.duration, info.independent),
            data,
            program_date_time=info.program_date_time,
        )

    async def _segment(self, info: SegmentInfo, data: bytes) -> None:
        # Stored first, then listed under its durable URL: a playlist never names what
        # cannot be fetched, and a segment's URI never changes between reloads (hls.js
        # treats a changed URI as a broken playlist). Parts of the next segment wait in
        # the queue meanwhile: one upload's time, every segment.
        path = store_path(self.grant.session_id, self.rendition, f"seg-{info.msn}.m4s")
        url: str | None
        try:
            url = await asyncio.to_thread(self.store.save, path, data)
        except Exception:
            # Listed under its origin URI instead (served from the index while in the
            # window); the VOD goes without it.
            log.exception("segment %s of %s could not be stored", info.msn, self.stream)
            url = None
        await self.index.complete_segment(
            self.stream,
            self.rendition,
            SegmentRef(
                info.msn,
                info.duration,
                info.program_date_time,
                url=url,
                discontinuity=info.discontinuity,
            ),
        )
        if url is not None:
            self.stored.append(
                _Stored(info.msn, info.duration, info.program_date_time, url, info.discontinuity)
            )
        self.peak_bps = max(self.peak_bps, int(len(data) * 8 / max(info.duration, 0.1)))
        self.bits += len(data) * 8
        self.seconds += info.duration
        await self._describe()

    async def _describe(self) -> None:
        """Keeps the rendition's description in the index current: after the init, at the
        first part, and whenever a segment changes its measured bit rate."""
        if self.init_info is None:
            return
        average = int(self.bits / self.seconds) if self.seconds > 0 else None
        description = from_init(
            self.init_info, name=self.rendition, peak_bps=self.peak_bps or None,
            average_bps=average, first_part_bps=self.first_part_bps,
        )
        if description is None or description == self.described:
            return
        try:
            await self.index.describe(self.stream, description)
        except Exception:
            # A viewer's quality menu may be stale for a segment; the media must go on.
            log.exception("the description of %s/%s could not be kept", self.stream,
                          self.rendition)
            return
        self.described = description

    async def _end(self) -> None:
        if self.rendition == SOURCE:  # ends every rendition: the rungs have ended first
            await self.index.end(self.stream)
        if self.stored and self.init_url:
            await self._write_vod()

    async def _write_vod(self) -> None:
        stored = sorted(self.stored, key=lambda s: s.msn)
        segments = tuple(
            Segment(s.msn, s.duration, s.url, s.program_date_time, discontinuity=s.discontinuity)
            for s in stored
        )
        playlist = MediaPlaylist(
            target_duration=target_duration_for([s.duration for s in stored]),
            part_target=PART_TARGET,
            init_uri=self.init_url,
            segments=segments,
            ended=True,
            media_sequence=stored[0].msn,
        )
        text = render_media_playlist(playlist, low_latency=False).encode()
        path = store_path(self.grant.session_id, self.rendition, "vod.m3u8")
        await asyncio.to_thread(self.store.save, path, text)
        if self.rendition == SOURCE:  # a rung's VOD sits beside it, under its name
            await sync_to_async(_record_vod)(self.grant.session_id, path)


def _record_vod(session_id: int, path: str) -> None:
    from streams.models import LiveSession

    close_old_connections()
    LiveSession.objects.filter(pk=session_id).update(vod_path=path)


def make_delivery_output(grant: Grant) -> PackagerOutput:
    return DeliveryOutput(grant, live_index(), segment_store())
