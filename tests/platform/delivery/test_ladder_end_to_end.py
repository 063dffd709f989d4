"""A 1080p30 publish to `manage.py up` with a transcode slot (the default quota has four):
the broadcast goes out as the source and the default ladder, each rung cut as the source
was. Viewers see five renditions in the multivariant playlist, every rung's playlists
pass the checker, every rung's part N has the source's msn and part index and lasts as
long within a frame, and every rung segment (the whole VOD of each) starts with an IDR
and decodes at the rung's size."""

from __future__ import annotations

import re
import time
from urllib.parse import urljoin

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish
from tests.support.playlists import renditions
from tests.support.processes import free_port, start, stop
from tests.transcoder.cmaf.media import decode
from tests.transcoder.hls.checker import ParsedPlaylist, check_media_playlist

pytestmark = pytest.mark.slow

RUNGS = {"720p30": (1280, 720), "480p30": (852, 480), "360p30": (640, 360),
         "160p30": (284, 160)}
FRAME = 1 / 30
SECONDS = 16


class Viewer:
    """Reloads one rendition's media playlist, checking each against the one before."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.playlist: ParsedPlaylist | None = None
        self.text = ""

    def load(self, *, fetch: bool = False) -> ParsedPlaylist:
        response = requests.get(self.url, timeout=10)
        assert response.status_code == 200, (self.url, response.text)
        try:
            self.playlist = check_media_playlist(
                response.text, previous=self.playlist, fetch=self.fetch if fetch else None
            )
        except AssertionError as error:
            raise AssertionError(
                f"{self.url}: {error}\n--- before:\n{self.text}\n--- now:\n{response.text}"
            ) from None
        self.text = response.text
        return self.playlist

    def fetch(self, uri: str) -> bool:
        return requests.get(urljoin(self.url, uri), timeout=10).status_code == 200

    def get(self, uri: str) -> bytes:
        response = requests.get(urljoin(self.url, uri), timeout=10)
        assert response.status_code == 200, uri
        return response.content


def parts(playlist: ParsedPlaylist) -> dict[tuple[int, int], float]:
    return {(segment.msn, index): part.duration for segment in playlist.segments
            for index, part in enumerate(segment.parts)}


def compare_parts(source: ParsedPlaylist, rung: ParsedPlaylist, name: str) -> int:
    """Every part both playlists list has the same duration within a frame, and each
    segment both list complete has the same parts. Returns how many parts were compared."""
    theirs, mine = parts(source), parts(rung)
    common = theirs.keys() & mine.keys()
    for key in common:
        assert abs(theirs[key] - mine[key]) <= FRAME + 0.002, (
            f"{name} part {key} lasts {mine[key]} s, the source's {theirs[key]} s")
    # Segments both list complete with their parts (a playlist lists the parts of its
    # last few segments only, and a rung's playlist may be a part or two behind).
    with_parts = {s.msn for s in source.complete if s.parts} & {
        s.msn for s in rung.complete if s.parts}
    for msn in with_parts:
        assert sorted(k for k in mine if k[0] == msn) == sorted(k for k in theirs if k[0] == msn), (
            f"{name} segment {msn} has other parts than the source's")
    return len(common)


def test_a_1080p30_publish_gets_the_default_ladder_cut_like_the_source(tmp_path) -> None:
    port = free_port()
    process, banner = start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    master_url = f"{base}/live/demo/master.m3u8"
    try:
        publisher = ffmpeg_publish(
            f"{banner['rtmp']}/{banner['key']}", frames=SECONDS * 30, size="1920x1080",
            rate=30, realtime=True, gop=60, background=True,
        )
        deadline = time.monotonic() + 30
        while True:
            response = requests.get(master_url, timeout=5)
            if response.status_code == 200 and len(renditions(response.text)) == 5:
                break
            assert publisher.poll() is None, publisher.communicate()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"never five renditions: {response.text}"
            time.sleep(0.3)
        listed = renditions(response.text)
        assert set(listed) == {"source", *RUNGS}
        assert listed["source"][0]["RESOLUTION"] == "1920x1080"
        for name, (width, height) in RUNGS.items():
            values, _ = listed[name]
            assert values["RESOLUTION"] == f"{width}x{height}", values
            assert values["FRAME-RATE"] == "30.000", values
            assert re.fullmatch(r"avc1\.4d[0-9a-f]{4},mp4a\.40\.2", values["CODECS"]), values
            assert int(values["BANDWIDTH"]) > 0
        viewers = {name: Viewer(urljoin(master_url, uri)) for name, (_, uri) in listed.items()}
        session = re.search(r"/live/demo/(\d+)/", viewers["source"].url)
        assert session is not None

        # Live: every playlist checked at each reload, the rungs' parts against the source's.
        compared = 0
        while publisher.poll() is None:  # type: ignore[union-attr]
            source = viewers["source"].load()
            for name in RUNGS:
                compared += compare_parts(source, viewers[name].load(), name)
            time.sleep(0.5)
        assert publisher.returncode == 0, publisher.communicate()  # type: ignore[union-attr]
        assert compared > 100

        # The end: every rendition's playlist ends; every URI it lists can be fetched.
        deadline = time.monotonic() + 30
        while not all(v.load().ended for v in viewers.values()):
            assert time.monotonic() < deadline, "a rendition never ended"
            time.sleep(0.5)
        final = {name: viewer.load(fetch=True) for name, viewer in viewers.items()}
        for name in RUNGS:
            compare_parts(final["source"], final[name], name)
            # The rung reaches the source's last part: nothing of the end was lost.
            assert final[name].last_msn == final["source"].last_msn, name

        # Every segment of every rung (its VOD) starts with an IDR and decodes alone.
        vods = {}
        for name in ["source", *RUNGS]:
            vod = Viewer(f"{base}/media/hls/live/{session.group(1)}/{name}/vod.m3u8")
            vods[name] = (vod, vod.load())
            assert vods[name][1].ended
        source_msns = [s.msn for s in vods["source"][1].segments]
        assert len(source_msns) >= SECONDS // 2 - 1
        for name, (width, height) in RUNGS.items():
            vod, playlist = vods[name]
            assert [s.msn for s in playlist.segments] == source_msns, name
            init = vod.get(playlist.map_uri or "")
            for segment, theirs in zip(playlist.segments, vods["source"][1].segments,
                                       strict=True):
                assert abs((segment.duration or 0) - (theirs.duration or 0)) <= FRAME + 0.002
                video, audio = decode(init + vod.get(segment.uri or ""))
                assert video, f"{name} segment {segment.msn} holds no video"
                assert video[0].key_frame, f"{name} segment {segment.msn} starts without an IDR"
                assert (video[0].width, video[0].height) == (width, height)
                assert audio, f"{name} segment {segment.msn} holds no audio"
    finally:
        stop(process)
