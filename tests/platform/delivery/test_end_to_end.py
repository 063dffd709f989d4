"""The whole path, as a viewer sees it: ffmpeg → `manage.py up` → LL-HLS → Chromium.

`up` runs on its embedded defaults in a subprocess; every playlist the test sees goes
through the LL-HLS checker, with every URI fetched at the moment the playlist is served.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
import time
from urllib.parse import urljoin

import pytest
import requests

from tests.conftest import free_port
from tests.ingest.clients import ffmpeg_publish
from tests.ingest.hls.checker import check_media_playlist
from tests.platform.golive.test_up import start, stop

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture
def platform_up(tmp_path):
    port = free_port()
    process, banner = start(tmp_path, port)
    yield banner, f"http://127.0.0.1:{port}"
    stop(process)


def wait_for(url: str, timeout: float) -> tuple[float, requests.Response]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        response = requests.get(url, timeout=5)
        if response.status_code == 200:
            return time.monotonic() - started, response
        time.sleep(0.1)
    raise AssertionError(f"{url} not served within {timeout} s")


def test_playlists_appear_within_3_s_and_every_one_obeys_ll_hls(platform_up) -> None:
    banner, base = platform_up
    publisher = ffmpeg_publish(
        f"{banner['rtmp']}/{banner['key']}",
        frames=450,
        realtime=True,
        size="1280x720",
        background=True,
    )
    try:
        # Admission happens at publish; measure from the first media the encoder sends.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if requests.get(f"{base}/api/v1/channels/demo/", timeout=5).json()["is_live"]:
                break
            time.sleep(0.05)
        waited, master = wait_for(f"{base}/live/demo/master.m3u8", 3.0)
        media_url = urljoin(f"{base}/live/demo/master.m3u8", master.text.split()[-1])
        waited_media, response = wait_for(media_url, 3.0 - waited)
        total = waited + waited_media
        print(f"\nmultivariant after {waited:.2f} s, media playlist after {total:.2f} s")

        def fetch(uri: str) -> bool:
            return requests.get(urljoin(media_url, uri), timeout=5).status_code == 200

        previous = check_media_playlist(response.text, fetch=fetch)
        checked = 1
        # Follow the stream with blocking reloads, as hls.js does, for ~8 s.
        until = time.monotonic() + 8
        while time.monotonic() < until:
            last = previous.segments[-1]
            msn, part = (last.msn, len(last.parts)) if last.uri is None else (last.msn + 1, 0)
            asked = time.monotonic()
            response = requests.get(
                media_url, params={"_HLS_msn": msn, "_HLS_part": part}, timeout=10
            )
            assert response.status_code == 200, response.text
            assert time.monotonic() - asked < 3 * 2 + 1
            current = check_media_playlist(response.text, previous=previous, fetch=fetch)
            assert current.last_msn >= msn
            previous, checked = current, checked + 1
        assert checked > 15  # blocking reloads answered part by part, not once a segment
        too_far = requests.get(media_url, params={"_HLS_msn": previous.last_msn + 10}, timeout=5)
        assert too_far.status_code == 400
    finally:
        publisher.kill()
        publisher.communicate()


def test_chromium_plays_the_watch_page_with_low_latency(platform_up) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (./golive test installs it with apt)")
    from playwright.sync_api import sync_playwright

    banner, _base = platform_up
    publisher = ffmpeg_publish(
        f"{banner['rtmp']}/{banner['key']}",
        frames=1500,
        realtime=True,
        size="1280x720",
        background=True,
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
            )
            page = browser.new_page()
            # The page opens before the stream is up, so the offline state must pick it up.
            page.goto(banner["watch"])
            page.wait_for_function(
                "window.golivePlayer && window.golivePlayer.video.currentTime > 0", timeout=30_000
            )
            samples: list[tuple[float, float, float | None]] = []
            started = time.monotonic()
            while time.monotonic() - started < 20:
                current, latency = page.evaluate(
                    "[window.golivePlayer.video.currentTime, window.golivePlayer.latency()]"
                )
                samples.append((time.monotonic(), current, latency))
                time.sleep(0.2)
            badge_visible = page.is_visible("#live-badge")
            qualities = page.eval_on_selector_all("#quality option", "o => o.length")
            page.screenshot(path=str(_artifact("watch-page.png")))
            browser.close()
        assert badge_visible
        assert qualities >= 2  # Auto plus the source rendition
        longest_stall = 0.0
        since = samples[0][0]
        for (_t0, c0, _), (t1, c1, _) in itertools.pairwise(samples):
            if c1 > c0:
                since = t1
            longest_stall = max(longest_stall, t1 - since)
        assert samples[-1][1] - samples[0][1] > 18, "playback did not advance with the clock"
        assert longest_stall <= 1.0, f"playback stalled for {longest_stall:.1f} s"
        latencies = [latency for _, _, latency in samples if latency is not None]
        assert latencies, "no program-date-time on screen"
        median = statistics.median(latencies)
        print(
            f"\ningest-to-screen latency: median {median:.2f} s, "
            f"p95 {statistics.quantiles(latencies, n=20)[-1]:.2f} s over {len(latencies)} samples"
        )
        assert median < 5  # the aim (1.5 s) is the benchmark's to report, not a timed test's
    finally:
        publisher.kill()
        publisher.communicate()


def _artifact(name: str):
    from pathlib import Path

    folder = Path(__file__).resolve().parents[3] / "var" / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
