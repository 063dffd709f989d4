"""Renditions as data, across processes: a `manage.py ingest` publishes into the Redis live
index, two origin processes (daphne, as the cluster runs them) read it. Neither origin
packages anything, so whatever their multivariant playlists and rendition reports say can
only come from the index: the source's description (BANDWIDTH measured by the ingest,
CODECS, RESOLUTION, FRAME-RATE), and a rung that a third party (this test, standing in for
a transcoder) describes beside its own init segment."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.stack import REDIS, Stack, live_stack, needs_stack
from transcoder.live_index import PartRef
from transcoder.live_index.redis_index import RedisLiveIndex
from transcoder.renditions import SOURCE, Rendition

pytestmark = [pytest.mark.slow, pytest.mark.services]

PREFIX = "golive"  # GOLIVE_REDIS_PREFIX's default, as the stack's processes use it
RUNG = Rendition("180p15", 90_000, "avc1.42c00c,mp4a.40.2", 320, 180, 15.0)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 -- our own origin
        return str(answer.read().decode())


def stream_inf(text: str) -> dict[str, dict[str, str]]:
    """The multivariant playlist's variants: attributes by media playlist URI."""
    lines = text.splitlines()
    variants = {}
    for line, uri in itertools.pairwise(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            pairs = re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.split(":", 1)[1])
            variants[uri] = {key: value.strip('"') for key, value in pairs}
    return variants


def expected(rendition: Rendition) -> dict[str, str]:
    attributes = {"BANDWIDTH": str(rendition.bandwidth), "CODECS": rendition.codecs,
                  "NAME": rendition.name}
    if rendition.average_bandwidth:
        attributes["AVERAGE-BANDWIDTH"] = str(rendition.average_bandwidth)
    if rendition.width:
        attributes["RESOLUTION"] = f"{rendition.width}x{rendition.height}"
    if rendition.frame_rate:
        attributes["FRAME-RATE"] = f"{rendition.frame_rate:.3f}"
    return attributes


def agreed(stack: Stack, index: RedisLiveIndex, loop: asyncio.AbstractEventLoop,
           stream: str, within: float = 12.0) -> tuple[str, tuple[Rendition, ...]]:
    """Both origins' multivariant playlists, once they are the same text and say what the
    live index says (the source's bandwidth moves with every segment: look again)."""
    deadline = time.monotonic() + within
    while True:
        texts = [get(stack.master(origin)) for origin in stack.origins]
        described = loop.run_until_complete(index.renditions(stream))
        session = stream.removeprefix("s")
        wanted = {f"{session}/{r.name}/index.m3u8": expected(r) for r in described}
        if texts[0] == texts[1] and stream_inf(texts[0]) == wanted:
            return texts[0], described
        assert time.monotonic() < deadline, (texts, described)
        time.sleep(0.3)


def test_two_origins_serve_the_multivariant_playlist_and_reports_from_the_live_index(
    tmp_path: Path,
) -> None:
    needs_stack()
    loop = asyncio.new_event_loop()
    with live_stack(tmp_path, origins=2, edge=False) as stack:
        index = RedisLiveIndex.from_url(REDIS, prefix=PREFIX)
        try:
            first = get(stack.master(stack.origins[0]))
            session = first.split()[-1].split("/")[0]
            stream = f"s{session}"

            text, described = agreed(stack, index, loop, stream)
            (source,) = described
            assert source.name == SOURCE
            attributes = stream_inf(text)[f"{session}/source/index.m3u8"]
            # The sample: 320x180 H.264 at 30 fps with AAC, ~150 kb/s.
            assert attributes["RESOLUTION"] == "320x180"
            assert attributes["FRAME-RATE"] == "30.000"
            assert re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", attributes["CODECS"])
            assert 50_000 < int(attributes["BANDWIDTH"]) < 2_000_000
            assert "3000000" not in text  # no guess: measured, or nothing

            # A rung appears in the index (a transcoder elsewhere): both origins list it,
            # and the source's playlists report where it is.
            async def publish_rung() -> None:
                await index.set_init(stream, RUNG.name, b"init", 0.334, target_duration=2)
                await index.describe(stream, RUNG)
                await index.add_part(stream, RUNG.name, PartRef(40, 0, 0.334, True), b"p0")
                await index.add_part(stream, RUNG.name, PartRef(40, 1, 0.334), b"p1")

            loop.run_until_complete(publish_rung())
            text, described = agreed(stack, index, loop, stream)
            assert [r.name for r in described] == [RUNG.name, SOURCE]
            lines = text.splitlines()
            assert lines[4] == f"{session}/source/index.m3u8"  # highest bandwidth first
            assert lines[6] == f"{session}/{RUNG.name}/index.m3u8"
            for origin in stack.origins:
                media = get(f"{origin}/live/{stack.channel}/{session}/source/index.m3u8")
                assert (f'#EXT-X-RENDITION-REPORT:URI="../{RUNG.name}/index.m3u8",'
                        "LAST-MSN=40,LAST-PART=1") in media
                rung = get(f"{origin}/live/{stack.channel}/{session}/{RUNG.name}/index.m3u8")
                report = re.search(r'#EXT-X-RENDITION-REPORT:URI="../source/index.m3u8",'
                                   r"LAST-MSN=(\d+),LAST-PART=(\d+)", rung)
                assert report, rung
        finally:
            loop.run_until_complete(index.aclose())
            loop.close()
