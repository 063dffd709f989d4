"""A streamer's connection dies mid-segment and the encoder reconnects within the grace:
viewers keep one playlist (no broken part listed at any point, the media sequence
carrying on), the broadcast ends once the grace is over, and its VOD holds every frame
the ingest received from both connections."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish, played_video_frames
from tests.support.processes import free_port, start, stop
from tests.transcoder.cmaf.media import decode
from tests.transcoder.hls.checker import ParsedPlaylist, check_media_playlist

pytestmark = pytest.mark.slow

GRACE = 4.0


def session_row(data_dir: Path) -> tuple[int, str, str | None, int, int, str]:
    with sqlite3.connect(data_dir / "golive.sqlite3") as db:
        return db.execute(
            "select id, end_reason, ended_at, video_frames, reconnects, vod_path"
            " from streams_livesession"
        ).fetchone()


class Viewer:
    """Reads the media playlist as a player would, checking each one it gets."""

    def __init__(self, media_url: str) -> None:
        self.url = media_url
        self.previous: ParsedPlaylist | None = None

    def fetch(self, uri: str) -> bool:
        return requests.get(urljoin(self.url, uri), timeout=5).status_code == 200

    def load(self) -> ParsedPlaylist:
        response = requests.get(self.url, timeout=10)
        assert response.status_code == 200, response.text
        self.previous = check_media_playlist(
            response.text, previous=self.previous, fetch=self.fetch
        )
        return self.previous

    def content(self, uri: str) -> bytes:
        return requests.get(urljoin(self.url, uri), timeout=5).content


def test_a_publisher_dropping_mid_segment_reconnects_into_the_same_broadcast(tmp_path) -> None:
    port = free_port()
    process, banner = start(tmp_path, port, reconnect_grace=GRACE)
    base = f"http://127.0.0.1:{port}"
    url = f"{banner['rtmp']}/{banner['key']}"
    try:
        first = ffmpeg_publish(url, frames=3000, realtime=True, background=True)
        deadline = time.monotonic() + 20
        while requests.get(f"{base}/live/demo/master.m3u8", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the stream never went live"
            time.sleep(0.2)
        master = requests.get(f"{base}/live/demo/master.m3u8", timeout=5).text
        viewer = Viewer(urljoin(f"{base}/live/demo/master.m3u8", master.split()[-1]))
        # Wait for two complete segments and the third under way, then pull the plug.
        while True:
            playlist = viewer.load()
            building = playlist.segments[-1]
            if len(playlist.complete) >= 2 and building.uri is None and building.parts:
                break
            assert time.monotonic() < deadline, "no segment under way"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.communicate()
        time.sleep(1.0)  # the ingest notices the closed socket
        dropped = viewer.load()
        assert not dropped.ended, "the broadcast waits for its streamer"
        init = viewer.content(dropped.map_uri or "")
        for segment in dropped.segments:  # every listed part is whole
            if segment.parts and segment.parts[0].independent:
                data = b"".join(viewer.content(part.uri) for part in segment.parts)
                video, _audio = decode(init + data)
                listed = sum(part.duration for part in segment.parts)
                assert abs(len(video) - listed * 30) <= 1.5, (
                    f"segment {segment.msn}: parts list {listed:.3f} s,"
                    f" {len(video)} frames decode"
                )
        session_id, reason, ended_at, _frames, _, _ = session_row(tmp_path / "var")
        # A bare TCP close is how encoders unpublish too: the ingest cannot tell them apart.
        assert (reason, ended_at) == ("publisher_stopped", None)

        second = ffmpeg_publish(url, frames=120, realtime=True)
        assert second.returncode == 0, second.stderr
        resumed = viewer.load()
        assert resumed.last_msn > dropped.last_msn, "the same playlist carried on"
        assert session_row(tmp_path / "var")[0] == session_id

        deadline = time.monotonic() + GRACE + 10
        while not (ended := viewer.load()).ended:
            assert time.monotonic() < deadline, "no EXT-X-ENDLIST after the grace"
            time.sleep(0.5)
        assert ended.last_msn >= resumed.last_msn
        _, reason, ended_at, frames, reconnects, vod_path = session_row(tmp_path / "var")
        assert (reason, reconnects) == ("publisher_stopped", 1)
        assert ended_at is not None
        assert vod_path
        played = played_video_frames(f"{base}/media/hls/{vod_path}")
        assert played == frames, f"the VOD plays {played} frames, the ingest received {frames}"
        assert frames > 120 + 60
    finally:
        stop(process)
