"""A second LL-HLS player on the same stream: Shaka Player (npm, its HLS build) in its
low-latency mode, in Debian's Chromium, against `manage.py up` and a live ffmpeg publish.

hls.js is the player the watch page ships; Shaka reads playlists differently (it follows
EXT-X-PART and the preload hint itself, and is stricter about part alignment), so it is
the check that our playlists are right and not merely right for hls.js. It must play
without a gap: the video clock advances with the wall clock, no stall over a second,
no Shaka error.

The viewer arrives once the window holds three whole segments. Loaded at the very start
of a broadcast (a window of parts and at most one whole segment), Shaka 5.2.12 fails
before fetching any media with `TypeError: Cannot read properties of undefined (reading
'match')` in `shaka.util.URL.getScheme`, called from `HlsParser.getInfoFromSegment_`: to
probe the stream's type it takes the window's middle segment reference and requests its
URI, which a segment still made of parts does not have. The playlist is valid there
(hls-parser strict, m3u8 and hls.js all take it); the fault is Shaka's."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish
from tests.platform.delivery.browser import ARTIFACTS, CHROMIUM_FLAGS, Playback
from tests.support.processes import free_port, start, stop
from tests.support.services import REQUIRE_SERVICES

# The publish may first encode its clip (about 30 s, once).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[3]
SHAKA = ROOT / "node_modules" / "shaka-player" / "dist" / "shaka-player.hls.js"
# The page and the player are answered by the browser itself (a route) under the origin's
# own address, so the player loads the stream same-origin, as the watch page does.
PAGE_PATH = "/__shaka__/"

PAGE = """<!doctype html>
<html><body>
<video id="video" muted autoplay playsinline style="width:640px"></video>
<script src="shaka.js"></script>
<script>
  window.shakaErrors = [];
  window.shakaRecovered = [];
  window.shakaBuffering = 0;
  async function start(url) {
    shaka.polyfill.installAll();
    const video = document.getElementById("video");
    const player = new shaka.Player();
    await player.attach(video);
    player.configure({ streaming: { lowLatencyMode: true } });
    // Critical errors stop playback; recoverable ones (severity 1) are retried by Shaka,
    // such as the 404 of a preload hint whose part never came (a segment ended first).
    player.addEventListener("error", (event) => (
      event.detail.severity === 2 ? window.shakaErrors : window.shakaRecovered
    ).push(`${event.detail.code} ${event.detail.message || ""}`));
    player.addEventListener("buffering", (event) => {
      if (event.buffering) window.shakaBuffering += 1;
    });
    window.shakaPlayer = player;
    await player.load(url);
    await video.play();
  }
</script>
</body></html>
"""


def needs_browser() -> None:
    missing = []
    if shutil.which("chromium") is None:
        missing.append("chromium (apt-get install chromium)")
    if not SHAKA.is_file():
        missing.append("shaka-player (./golive test runs npm ci)")
    if missing:
        if REQUIRE_SERVICES:
            pytest.fail(f"missing {', '.join(missing)}")
        pytest.skip(f"missing {', '.join(missing)}")


def play_with_shaka(master_url: str, seconds: float) -> tuple[Playback, int, str]:
    from playwright.sync_api import Route, sync_playwright

    def serve(route: Route) -> None:
        if route.request.url.endswith("/shaka.js"):
            route.fulfill(body=SHAKA.read_bytes(), content_type="text/javascript")
        else:
            route.fulfill(body=PAGE, content_type="text/html")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        origin = master_url.split("/live/")[0]
        page.route(f"{origin}{PAGE_PATH}**", serve)
        page.goto(f"{origin}{PAGE_PATH}index.html")
        page.evaluate(
            "(url) => start(url).catch((e) => window.shakaErrors.push(`${e} ${e && e.stack}`))",
            master_url,
        )
        page.wait_for_function(
            "document.getElementById('video').currentTime > 0 || window.shakaErrors.length",
            timeout=30_000,
        )
        samples: list[tuple[float, float, float | None]] = []
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            current, latency = page.evaluate(
                "[document.getElementById('video').currentTime,"
                " window.shakaPlayer ? window.shakaPlayer.getStats().liveLatency : null]"
            )
            samples.append((time.monotonic(), current, latency))
            time.sleep(0.2)
        errors.extend(page.evaluate("window.shakaErrors"))
        buffering = page.evaluate("window.shakaBuffering")
        recovered = page.evaluate("window.shakaRecovered")
        print(f"\nShaka recovered from {len(recovered)} error(s): {sorted(set(recovered))}")
        low_latency = page.evaluate(
            "String(window.shakaPlayer.getConfiguration().streaming.lowLatencyMode)"
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "shaka.png"))
        browser.close()
    return Playback(samples, True, 0, errors), buffering, low_latency


def test_shaka_player_in_low_latency_mode_plays_without_a_gap(tmp_path) -> None:
    needs_browser()
    port = free_port()
    process, banner = start(tmp_path, port)
    publisher = ffmpeg_publish(
        f"{banner['rtmp']}/{banner['key']}", frames=1200, realtime=True, prerecorded=True,
        size="1280x720", background=True,
    )
    try:
        master = f"http://127.0.0.1:{port}/live/demo/master.m3u8"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listing = requests.get(master, timeout=5)
            if listing.status_code != 200:
                time.sleep(0.2)
                continue
            media = urljoin(master, listing.text.split()[-1])
            response = requests.get(media, timeout=5)
            if response.status_code == 200 and response.text.count("#EXTINF") >= 3:
                break
            time.sleep(0.2)
        playback, buffering, low_latency = play_with_shaka(master, seconds=20)
    finally:
        publisher.kill()
        publisher.communicate()
        stop(process)
    print(f"\nShaka: advanced {playback.advanced:.1f} s in 20 s, longest stall "
          f"{playback.longest_stall:.2f} s, buffering events {buffering}, live latency "
          f"{playback.latency_summary() if playback.latencies else 'unknown'}")
    assert playback.errors == []
    assert low_latency == "true"
    assert playback.advanced > 18, "playback did not advance with the clock"
    assert playback.longest_stall <= 1.0, f"Shaka stalled for {playback.longest_stall:.1f} s"
