"""The delivery pipeline under faults, in one process: a segment store that is down, a
live index that forgets everything, an ingest that died before writing its VOD. The
cluster versions, with real processes, Redis and S3, are in test_faults.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage

from delivery.pipeline import DeliveryOutput
from delivery.segment_store import SegmentStore
from delivery.uploads import UploadDropped, UploadLane
from delivery.vod import rebuild_vod
from ingest.gatekeeper import Grant
from transcoder.live_index import MemoryLiveIndex, RenditionWindow


class FlakyStorage(FileSystemStorage):
    """A local store that fails every write while ``down``, and notes what it stored."""

    def __init__(self, location: Path) -> None:
        super().__init__(location=location, base_url="/media/", allow_overwrite=True)
        self.down = False
        self.saved: list[str] = []

    def _save(self, name: str, content: Any) -> str:
        if self.down:
            raise ConnectionError("the store is away")
        self.saved.append(name)
        return str(super()._save(name, content))


def lane_on(storage: FlakyStorage, tmp_path: Path, **caps: int) -> UploadLane:
    return UploadLane(
        SegmentStore(storage), spool_dir=tmp_path / "spool",
        memory_bytes=caps.get("memory_bytes", 1 << 20),
        spool_bytes=caps.get("spool_bytes", 1 << 20),
        retry_delays=(0.01,),
    )


def test_uploads_wait_out_an_outage_and_are_stored_in_order(tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path / "store")

    async def run() -> list[str]:
        storage.down = True
        lane = lane_on(storage, tmp_path)
        futures = [lane.submit(f"live/1/source/seg-{n}.m4s", b"x" * 10) for n in range(3)]
        await asyncio.sleep(0.2)
        assert not any(f.done() for f in futures)
        assert not lane.idle
        storage.down = False
        urls = await asyncio.gather(*futures)
        assert lane.idle
        assert lane.backlog == 0
        await lane.aclose()
        return urls

    urls = asyncio.run(run())
    assert urls == [f"/media/live/1/source/seg-{n}.m4s" for n in range(3)]
    assert storage.saved == [f"live/1/source/seg-{n}.m4s" for n in range(3)]


def test_a_lane_spools_to_disk_past_its_memory_and_drops_past_its_spool(tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path / "store")

    async def run() -> None:
        storage.down = True
        lane = lane_on(storage, tmp_path, memory_bytes=10, spool_bytes=20)
        futures = [lane.submit(f"live/1/source/seg-{n}.m4s", bytes([n]) * 10) for n in range(4)]
        # One in memory, two on disk, the fourth has no room.
        assert len(list((tmp_path / "spool").iterdir())) == 2
        with pytest.raises(UploadDropped):
            await futures[3]
        assert lane.dropped == 1
        storage.down = False
        await lane.drain()
        assert [f.result() for f in futures[:3]] == [
            f"/media/live/1/source/seg-{n}.m4s" for n in range(3)
        ]
        assert list((tmp_path / "spool").iterdir()) == []  # spooled files go once stored
        await lane.aclose()

    asyncio.run(run())
    for n in range(3):
        assert (tmp_path / "store" / f"live/1/source/seg-{n}.m4s").read_bytes() == bytes([n]) * 10


def replay(output: Any, packaged: Any, calls: slice = slice(None)) -> None:
    """Calls ``output`` as the packager called the collector (a slice of those calls)."""
    inits, parts, segments = iter(packaged.inits), iter(packaged.parts), iter(packaged.segments)
    positions: list[tuple[str, tuple[Any, bytes] | None]] = []
    for call in packaged.calls:
        source = {"init": inits, "part": parts, "segment": segments}.get(call)
        positions.append((call, None if source is None else next(source)))
    for call, arguments in positions[calls]:
        if arguments is None:
            output.end()
        else:
            getattr(output, call)(*arguments)


async def settled(
    index: MemoryLiveIndex, stream: str, done: Callable[[RenditionWindow], bool]
) -> RenditionWindow:
    """The window once ``done`` holds for it (the delivery works through its queue)."""
    for _ in range(100):
        window = await index.snapshot(stream, "source")
        if window is not None and window.segments and done(window):
            return window
        await asyncio.sleep(0.05)
    raise AssertionError(f"the index never got there: {window}")


def delivery(storage: FlakyStorage, index: MemoryLiveIndex, session_id: int) -> DeliveryOutput:
    return DeliveryOutput(Grant(session_id, "alice"), index, SegmentStore(storage))


@pytest.mark.django_db(transaction=True)
def test_parts_reach_the_index_while_the_store_is_down_and_the_vod_gets_every_segment(
    alice: Any, packaged: Any, tmp_path: Path
) -> None:
    from streams.models import LiveSession

    session = LiveSession.objects.create(channel=alice.channel)
    storage = FlakyStorage(tmp_path / "store")
    storage.down = True
    index = MemoryLiveIndex()

    async def run() -> None:
        output = delivery(storage, index, session.pk)
        replay(output, packaged)
        window = await settled(index, f"s{session.pk}", lambda w: w.ended)
        # Every segment listed (under its origin URI: not stored yet), the stream ended.
        assert [s.msn for s in window.segments] == [i.msn for i, _ in packaged.segments]
        assert all(s.url is None and not s.gap for s in window.segments)
        assert window.ended
        storage.down = False
        await asyncio.wait_for(output.worker, 10)

    asyncio.run(run())
    session.refresh_from_db()
    assert session.vod_path == f"live/{session.pk}/source/vod.m3u8"
    vod = (tmp_path / "store" / session.vod_path).read_text()
    assert re.findall(r"seg-\d+\.m4s", vod) == [f"seg-{i.msn}.m4s" for i, _ in packaged.segments]


@pytest.mark.django_db(transaction=True)
def test_an_index_that_forgot_the_stream_is_rebuilt_and_the_publish_goes_on(
    alice: Any, packaged: Any, tmp_path: Path
) -> None:
    from streams.models import LiveSession

    session = LiveSession.objects.create(channel=alice.channel)
    storage = FlakyStorage(tmp_path / "store")
    index = MemoryLiveIndex()
    stream = f"s{session.pk}"
    # Forget everything halfway through the second segment (as a Redis restarted empty).
    calls = len(packaged.calls)
    cut = packaged.calls.index("segment") + 4

    async def run() -> None:
        output = delivery(storage, index, session.pk)
        replay(output, packaged, slice(0, cut))
        await settled(index, stream, lambda w: w.segments != ())
        await index.remove(stream)
        assert await index.snapshot(stream, "source") is None
        replay(output, packaged, slice(cut, calls - 1))  # all but the end
        last = packaged.segments[-1][0].msn
        window = await settled(index, stream, lambda w: w.segments[-1].msn == last)
        assert output.rebuilds == 1
        # The stored first segment is listed again, under its durable URL; the rest as cut.
        first = packaged.segments[0][0].msn
        assert window.segments[0].msn == first
        assert window.segments[0].url == f"/media/live/{session.pk}/source/seg-{first}.m4s"
        assert [s.msn for s in window.segments] == [i.msn for i, _ in packaged.segments]
        assert not any(s.gap for s in window.segments)
        replay(output, packaged, slice(calls - 1, calls))
        await asyncio.wait_for(output.worker, 10)

    asyncio.run(run())
    session.refresh_from_db()
    vod = (tmp_path / "store" / session.vod_path).read_text()
    assert len(re.findall(r"seg-\d+\.m4s", vod)) == len(packaged.segments)


def test_a_vod_is_rebuilt_from_the_stored_segments_with_their_durations(
    packaged: Any, tmp_path: Path
) -> None:
    storage = FlakyStorage(tmp_path / "store")
    store = SegmentStore(storage)
    (info, init), *_ = packaged.inits
    store.save(f"live/9/source/init-{info.generation}.mp4", init)
    for segment, data in packaged.segments:
        store.save(f"live/9/source/seg-{segment.msn}.m4s", data)

    path = rebuild_vod(store, 9, started_at=1_700_000_000.0)

    assert path == "live/9/source/vod.m3u8"
    text = store.read(path).decode()
    assert "#EXT-X-ENDLIST" in text
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", text)]
    expected = [segment.duration for segment, _ in packaged.segments]
    assert len(durations) == len(expected)
    for got, want in zip(durations, expected, strict=True):
        assert abs(got - want) <= 1 / 30 + 0.001  # within a frame
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20" in text


@pytest.mark.django_db
def test_reaping_a_dead_nodes_lease_gives_its_broadcast_a_vod_and_marks_its_figures(
    alice: Any, packaged: Any, tmp_path: Path, settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from quotas.models import SlotLease
    from streams.broadcasts import reap_expired_leases
    from streams.models import LiveSession

    settings.STORAGES = {**settings.STORAGES, "segments": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": tmp_path, "base_url": "/media/hls/", "allow_overwrite": True},
    }}
    session = LiveSession.objects.create(channel=alice.channel, ingest_node="node-b",
                                         video_frames=123)
    SlotLease.objects.create(session=session, node="node-b",
                             expires_at=timezone.now() - timedelta(seconds=1))
    store = SegmentStore()
    (info, init), *_ = packaged.inits
    store.save(f"live/{session.pk}/source/init-{info.generation}.mp4", init)
    for segment, data in packaged.segments:
        store.save(f"live/{session.pk}/source/seg-{segment.msn}.m4s", data)

    assert reap_expired_leases() == 1

    session.refresh_from_db()
    assert session.end_reason == "ingest_lost"
    assert session.figures_last_known
    assert session.video_frames == 123  # the last heartbeat's, kept
    assert session.vod_path == f"live/{session.pk}/source/vod.m3u8"
    vod = (tmp_path / session.vod_path).read_text()
    assert re.findall(r"seg-\d+\.m4s", vod) == [f"seg-{i.msn}.m4s" for i, _ in packaged.segments]
