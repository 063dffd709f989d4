"""Renditions as data in one process (the embedded mode's memory index): each rendition's
`DeliveryOutput` describes it in the live index with the bit rate it measured, and the
origin renders the multivariant playlist and rendition reports from that alone."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage

from ingest.gatekeeper import Grant
from tests.support.origin import Exchange
from tests.transcoder.cmaf.media import Collector, demux_flv, encode_flv_cli, feed
from transcoder.cmaf import InitInfo, Packager, PackagerSettings, PartInfo, SegmentInfo
from transcoder.live_index import MemoryLiveIndex, PartRef
from transcoder.renditions import SOURCE, Rendition, from_init

SESSION = 987_002
STREAM = f"s{SESSION}"


class Tee:
    """Hands the packager's output to a delivery output and keeps a copy to check it by."""

    def __init__(self, *outputs: Any) -> None:
        self.outputs = outputs

    def init(self, info: InitInfo, data: bytes) -> None:
        for output in self.outputs:
            output.init(info, data)

    def part(self, info: PartInfo, data: bytes) -> None:
        for output in self.outputs:
            output.part(info, data)

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        for output in self.outputs:
            output.segment(info, data)

    def end(self) -> None:
        pass


def test_each_renditions_delivery_describes_it_with_the_bit_rate_it_measured(
    tmp_path: Path,
) -> None:
    from delivery.pipeline import DeliveryOutput
    from delivery.segment_store import SegmentStore

    clip = demux_flv(encode_flv_cli(5, width=320, height=180, rate=30))
    store = SegmentStore(FileSystemStorage(tmp_path, base_url="/media/"))

    async def scenario() -> tuple[tuple[Rendition, ...], list[Collector]]:
        index = MemoryLiveIndex()
        grant = Grant(SESSION, "demo")
        outputs = [DeliveryOutput(grant, index, store), DeliveryOutput(grant, index, store,
                                                                       rendition="copy")]
        collected = [Collector(), Collector()]
        for output, copy in zip(outputs, collected, strict=True):
            feed(Packager(Tee(output, copy), PackagerSettings(part_target=0.334)), clip)
            last = copy.segments[-1][0].msn
            assert await index.wait_for_part(STREAM, output.rendition, last, None, 10.0)
            # Segments reach the store through the upload lane, off the live path.
            await asyncio.wait_for(output.lane.drain(), 10.0)
            output.worker.cancel()
        return await index.renditions(STREAM), collected

    described, collected = asyncio.run(scenario())
    source, copy = collected
    peak = max(int(len(data) * 8 / info.duration) for info, data in source.segments)
    bits = sum(len(data) * 8 for _, data in source.segments)
    seconds = sum(info.duration for info, _ in source.segments)
    info = source.inits[0][0]
    expected = Rendition(SOURCE, peak, info.codecs, 320, 180, 30.0, True, int(bits / seconds))
    assert described == (Rendition("copy", *[getattr(expected, f) for f in (
        "bandwidth", "codecs", "width", "height", "frame_rate", "audio",
        "average_bandwidth")]), expected)
    assert info.codecs.endswith(",mp4a.40.2")
    assert (tmp_path / f"live/{SESSION}/copy/seg-0.m4s").read_bytes() == copy.segments[0][1]
    assert (tmp_path / f"live/{SESSION}/source/seg-0.m4s").exists()


def test_before_any_segment_bandwidth_is_the_publishers_figure_or_the_first_parts() -> None:
    info = InitInfo(0, "avc1.64001f,mp4a.40.2", 1280, 720, 30.0, None)
    assert from_init(info) is None  # nothing measured, nothing told: not advertised
    assert from_init(info, first_part_bps=4_000_000) == Rendition(
        SOURCE, 4_000_000, "avc1.64001f,mp4a.40.2", 1280, 720, 30.0, True)
    told = InitInfo(0, "avc1.64001f", 1280, 720, 30.0, 2_500_000)
    described = from_init(told, name="720p30", first_part_bps=4_000_000)
    assert described == Rendition("720p30", 2_500_000, "avc1.64001f", 1280, 720, 30.0, False)
    measured = from_init(told, peak_bps=3_100_000, average_bps=2_400_000)
    assert measured is not None
    assert (measured.bandwidth, measured.average_bandwidth) == (3_100_000, 2_400_000)


def hold_back(playlist: str) -> float:
    found = re.search(r"PART-HOLD-BACK=([0-9.]+)", playlist)
    assert found, playlist
    return float(found.group(1))


@pytest.mark.django_db(transaction=True)
def test_the_origin_lists_what_the_index_describes_and_reports_the_other_renditions(
    alice: Any, settings: Any
) -> None:
    from delivery import origin
    from delivery.live import live_index
    from streams.models import LiveSession

    settings.REDIS_URL = ""
    settings.GOLIVE_HLS_PART_HOLD_BACK = 2.5
    settings.GOLIVE_HLS_LADDER_PART_HOLD_BACK = 5.0
    session = LiveSession.objects.create(channel=alice.channel)
    stream = f"s{session.pk}"
    base = f"/live/{alice.channel.slug}"
    rung = Rendition("360p30", 630_000, "avc1.4d401e,mp4a.40.2", 640, 360, 30.0)
    source = Rendition(SOURCE, 3_000_001, "avc1.64001f,mp4a.40.2", 1280, 720, 30.0)

    async def get(path: str) -> Exchange:
        exchange = Exchange(path)
        await exchange.run()
        return exchange

    async def scenario() -> None:
        index = live_index()
        await index.remove(stream)
        origin._masters.clear()
        origin._renditions.clear()
        await index.set_init(stream, SOURCE, b"init", 0.334, target_duration=2)
        await index.add_part(stream, SOURCE, PartRef(3, 0, 0.334, True), b"p0")
        assert (await get(f"{base}/master.m3u8")).status == 404  # not described yet
        await index.describe(stream, source)
        origin._renditions.clear()
        master = await get(f"{base}/master.m3u8")
        assert master.status == 200
        assert master.body.decode().splitlines()[3:] == [
            '#EXT-X-STREAM-INF:BANDWIDTH=3000001,CODECS="avc1.64001f,mp4a.40.2",'
            'RESOLUTION=1280x720,FRAME-RATE=30.000,NAME="source"',
            f"{session.pk}/source/index.m3u8",
        ]
        playlist = f"{base}/{session.pk}/source/index.m3u8"
        alone = (await get(playlist)).body.decode()
        assert "RENDITION-REPORT" not in alone
        assert hold_back(alone) == pytest.approx(2.5 * 0.334, abs=0.001)  # source-only

        await index.set_init(stream, rung.name, b"init", 0.334, target_duration=2)
        await index.describe(stream, rung)
        await index.add_part(stream, rung.name, PartRef(3, 0, 0.334, True), b"r0")
        origin._renditions.clear()
        master = await get(f"{base}/master.m3u8")
        assert master.body.decode().splitlines()[5:] == [
            '#EXT-X-STREAM-INF:BANDWIDTH=630000,CODECS="avc1.4d401e,mp4a.40.2",'
            'RESOLUTION=640x360,FRAME-RATE=30.000,NAME="360p30"',
            f"{session.pk}/360p30/index.m3u8",
        ]
        text = (await get(playlist)).body.decode()
        assert text.endswith(
            '#EXT-X-RENDITION-REPORT:URI="../360p30/index.m3u8",LAST-MSN=3,LAST-PART=0\n')
        # With a ladder every playlist of the broadcast holds back further.
        assert hold_back(text) == pytest.approx(5 * 0.334, abs=0.001)
        text = (await get(f"{base}/{session.pk}/360p30/index.m3u8")).body.decode()
        assert text.endswith(
            '#EXT-X-RENDITION-REPORT:URI="../source/index.m3u8",LAST-MSN=3,LAST-PART=0\n')
        assert hold_back(text) == pytest.approx(5 * 0.334, abs=0.001)
        await index.remove(stream)

    asyncio.run(scenario())


def test_a_rendition_is_listed_only_from_its_first_part(tmp_path: Path) -> None:
    """A rung starting mid-broadcast is described (and so listed in the multivariant
    playlist) once its first part is in the index, not at its init: a player switching to
    it finds something to play."""
    from delivery.pipeline import DeliveryOutput
    from delivery.segment_store import SegmentStore

    store = SegmentStore(FileSystemStorage(tmp_path, base_url="/media/"))
    # The publisher's own bit rate: describable from the init alone.
    info = InitInfo(0, "avc1.4d401e,mp4a.40.2", 640, 360, 30.0, 630_000)

    async def scenario() -> None:
        index = MemoryLiveIndex()
        output = DeliveryOutput(Grant(SESSION, "demo"), index, store, rendition="360p30")
        output.init(info, b"init")
        for _ in range(100):
            if await index.get_init(STREAM, "360p30") is not None:
                break
            await asyncio.sleep(0.01)
        assert await index.get_init(STREAM, "360p30") == b"init"
        await asyncio.sleep(0.05)
        assert await index.renditions(STREAM) == ()
        output.part(PartInfo(4, 0, 0.2, True, 1_700_000_000.0), b"p0")
        assert await index.wait_for_part(STREAM, "360p30", 4, 0, 5.0)
        for _ in range(100):
            if await index.renditions(STREAM):
                break
            await asyncio.sleep(0.01)
        assert [r.name for r in await index.renditions(STREAM)] == ["360p30"]
        output.worker.cancel()

    asyncio.run(scenario())
