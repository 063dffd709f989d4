"""The quality ladder as a viewer meets it, in Chromium (hls.js) against `manage.py up`,
with ffmpeg publishing 720p30 (rungs 480p30, 360p30 and 160p30; a 1080p ladder, two
publishers and Chromium are more than this project's 2-core test machine holds at once):

- over the transcode quota (`quota set --transcodes 1`) the second of two broadcasts goes
  out source-only; when the first ends, the second gains its ladder within 5 s, and its
  watch page, playing all along, offers the new qualities without a break over a second;
- a viewer switching rendition every 4 s for 40 s: no stall over 0.5 s, no media error,
  and the latency readout no more than 0.3 s over the source's (a stall while the source's
  figure is taken raises it; switching may then come out closer to live, never further).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish
from tests.platform.delivery.browser import CHROMIUM_FLAGS
from tests.support.playlists import renditions
from tests.support.processes import ROOT, embedded_env, free_port, start, stop

# The first test to publish may first encode the clip both publish (about 30 s, once).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SIZE = "1280x720"
RUNG_HEIGHTS = [720, 480, 360, 160]  # the source, then the rungs

# The page's playback as a viewer sees it: every frame the video element on screen
# presents (requestVideoFrameCallback; across a swap of elements, the new one's frames
# count from its first), the longest time between two, the gaps over 0.3 s, and which
# heights were on screen. A seek or a reload is no frame: it cannot pass for playback.
WATCH_PLAYBACK = """() => {
  const s = window.__playback = { longest: 0, gaps: [], heights: {}, frames: 0,
    last: performance.now(), element: null };
  function frame(element) {
    return function (now, meta) {
      if (element !== s.element) return; // not on screen any more
      const at = performance.now();
      const gap = at - s.last;
      s.longest = Math.max(s.longest, gap);
      if (gap > 300) s.gaps.push({ at: Date.now(), ms: Math.round(gap) });
      s.last = at;
      s.frames += 1;
      s.heights[meta.height] = (s.heights[meta.height] || 0) + 1;
      element.requestVideoFrameCallback(frame(element));
    };
  }
  s.timer = setInterval(function () {
    const video = window.golivePlayer.video;
    if (video !== s.element) {
      s.element = video;
      video.requestVideoFrameCallback(frame(video));
    }
  }, 20);
}"""

PLAYBACK = """() => {
  const s = window.__playback;
  return { longest_ms: Math.max(s.longest, performance.now() - s.last), gaps: s.gaps,
           heights: s.heights, frames: s.frames };
}"""

RESET_PLAYBACK = """() => {
  const s = window.__playback;
  s.longest = 0; s.gaps = []; s.heights = {}; s.frames = 0; s.last = performance.now();
}"""


def manage(tmp_path: Path, *args: str) -> str:
    """A management command against the `up` started in ``tmp_path`` (its SQLite)."""
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT,
                            env=embedded_env(tmp_path), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def listed(base: str, channel: str) -> dict[str, Any]:
    response = requests.get(f"{base}/live/{channel}/master.m3u8", timeout=5)
    return renditions(response.text) if response.status_code == 200 else {}


def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.1) -> float:
    """Seconds until ``predicate()`` held."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(every)
    return time.monotonic() - started


def has_parts(base: str, channel: str, rendition: str) -> bool:
    found = listed(base, channel).get(rendition)
    if found is None:
        return False
    url = f"{base}/live/{channel}/{found[1]}"
    response = requests.get(url, timeout=5)
    return response.status_code == 200 and "#EXT-X-PART:" in response.text


def metric(base: str, name: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} is not in /metrics"
    return float(match.group(1))


@pytest.fixture
def chromium() -> Iterator[Any]:
    if shutil.which("chromium") is None or shutil.which("ffmpeg") is None:
        pytest.skip("chromium and ffmpeg are needed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


# A viewer some way from the origin: every request's answer starts this much later.
LATENCY_MS = 100


def open_watch_page(chromium: Any, url: str) -> Any:
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    network.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": LATENCY_MS, "downloadThroughput": -1,
        "uploadThroughput": -1,
    })
    page.goto(url)
    page.wait_for_function("window.golivePlayer && window.golivePlayer.video.currentTime > 1",
                           timeout=30_000)
    page.evaluate(WATCH_PLAYBACK)
    return page


def quality_labels(page: Any) -> list[str]:
    return page.eval_on_selector_all("#quality option", "options => options.map(o => o.text)")


def heights(labels: list[str]) -> list[int]:
    return sorted((int(label.split("p")[0]) for label in labels[1:]), reverse=True)


def test_over_the_transcode_quota_a_broadcast_gains_its_ladder_within_5_s_of_a_slot_freeing(
    tmp_path, chromium,
) -> None:
    port = free_port()
    process, banner = start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    publishers: list[subprocess.Popen[str]] = []
    try:
        manage(tmp_path, "quota", "set", "--transcodes", "1", "--reason", "one ladder")
        bob = json.loads(manage(tmp_path, "createstreamer", "bob", "--json"))
        first = ffmpeg_publish(f"{banner['rtmp']}/{banner['key']}", frames=30 * 150, size=SIZE,
                               realtime=True, prerecorded=True, background=True)
        publishers.append(first)  # type: ignore[arg-type]
        wait_for(lambda: len(listed(base, "demo")) == 4, 30, "demo's ladder")
        second = ffmpeg_publish(f"{banner['rtmp']}/{bob['stream_key']}", frames=30 * 150,
                                size=SIZE, realtime=True, prerecorded=True, background=True)
        publishers.append(second)  # type: ignore[arg-type]
        wait_for(lambda: listed(base, "bob"), 30, "bob live")

        page = open_watch_page(chromium, f"{base}/c/bob")
        page.wait_for_timeout(3000)
        # Source-only: one quality, no menu; the first broadcast keeps its ladder.
        assert set(listed(base, "bob")) == {"source"}
        assert page.evaluate("window.golivePlayer.hls.levels.length") == 1
        assert not page.is_visible("#quality-box")
        assert len(listed(base, "demo")) == 4

        first.terminate()  # the first broadcast ends: its transcode slot frees
        ended = time.monotonic()
        ended_in_page = page.evaluate("Date.now()")
        listed_after = wait_for(lambda: len(listed(base, "bob")) == 4, 10, "bob's ladder",
                                every=0.05)
        parts_after = listed_after + wait_for(
            lambda: all(has_parts(base, "bob", name) for name in ("480p30", "360p30", "160p30")),
            10, "bob's rungs' first parts", every=0.05)
        assert set(listed(base, "bob")) == {"source", "480p30", "360p30", "160p30"}

        # The page, playing all along, takes the new renditions in.
        offered = wait_for(lambda: len(quality_labels(page)) == 5, 20, "the quality menu")
        offered_after = time.monotonic() - ended
        page.wait_for_timeout(2000)
        labels = quality_labels(page)
        playback = page.evaluate(PLAYBACK)
        swaps = page.evaluate("window.golivePlayer.swaps")
        errors = page.evaluate("window.golivePlayer.errors")
        assert page.is_visible("#quality-box")
        assert labels[0] == "Auto"
        assert heights(labels) == RUNG_HEIGHTS
        upgrades = metric(base, "golive_transcode_upgrades_total")
        sessions = metric(base, "golive_transcode_sessions")
        print(f"\nbob's ladder listed {listed_after:.2f} s after the first broadcast ended, "
              f"its rungs' first parts at {parts_after:.2f} s; the quality menu offered it at "
              f"{offered_after:.2f} s (found {offered:.1f} s into the wait); swaps {swaps}; "
              f"longest break on screen {playback['longest_ms']:.0f} ms "
              f"({playback['frames']} frames, heights {playback['heights']}), gaps "
              f"{playback['gaps']}; hls.js errors {errors}")
        assert listed_after < 5, "the ladder came too late"
        assert parts_after < 5, "the rungs' parts came too late"
        assert len(swaps) == 1
        assert playback["longest_ms"] < 1000, playback
        # hls.js may nudge over a hole when it starts (bufferSeekOverHole: the source's
        # B-frames present its first picture a frame or two after the segment starts);
        # from the upgrade on, nothing goes wrong on screen. The standby player warms up
        # hidden: its start's stalls are why it takes over only after steady play, and
        # never show (the longest break on screen says so).
        assert not [e for e in errors if e["fatal"] or (
            e["at"] >= ended_in_page and not e["standby"])], errors
        assert upgrades == 1
        assert sessions == 1
        page.close()
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.wait()
        stop(process)


def test_switching_rendition_every_4_s_for_40_s_never_stalls_and_keeps_the_latency(
    tmp_path, chromium,
) -> None:
    port = free_port()
    process, banner = start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    publisher = ffmpeg_publish(f"{banner['rtmp']}/{banner['key']}", frames=30 * 150, size=SIZE,
                               realtime=True, prerecorded=True, background=True)
    try:
        wait_for(lambda: len(listed(base, "demo")) == 4, 30, "the ladder")
        page = open_watch_page(chromium, f"{base}/c/demo")
        page.wait_for_function("document.querySelectorAll('#quality option').length === 5",
                               timeout=20_000)
        labels = quality_labels(page)
        values = page.eval_on_selector_all("#quality option",
                                           "options => options.map(o => o.value)")
        by_height = {int(label.split("p")[0]): value
                     for label, value in zip(labels[1:], values[1:], strict=True)}
        assert sorted(by_height, reverse=True) == RUNG_HEIGHTS

        def latencies(seconds: float) -> list[float]:
            found = []
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                value = page.evaluate("window.golivePlayer.latency()")
                if value is not None:
                    found.append(value)
                page.wait_for_timeout(250)
            return found

        # The source's figure: the source chosen, settled, then 10 s of readouts.
        page.select_option("#quality", by_height[720])
        page.wait_for_function("window.golivePlayer.video.videoHeight === 720", timeout=10_000)
        page.wait_for_timeout(3000)
        source = statistics.median(latencies(10))

        page.evaluate(RESET_PLAYBACK)
        at_start = page.evaluate("window.golivePlayer.errors")
        order = [160, 480, 360, 720] * 3
        switching: list[float] = []
        for height in order[:10]:  # every 4 s for 40 s
            page.select_option("#quality", by_height[height])
            switching += latencies(4)
        playback = page.evaluate(PLAYBACK)
        errors = page.evaluate("window.golivePlayer.errors")[len(at_start):]
        switched = statistics.median(switching)
        print(f"\nswitching every 4 s for 40 s: longest stall {playback['longest_ms']:.0f} ms, "
              f"gaps {playback['gaps']}, heights on screen {playback['heights']}, hls.js errors "
              f"{errors}; latency median {switched:.2f} s (p95 "
              f"{statistics.quantiles(switching, n=20)[-1]:.2f} s) against the source's "
              f"{source:.2f} s; before switching, hls.js errors {at_start}; parts the page "
              f"marked as loaded {page.evaluate('window.golivePlayer.partsMarked')}")
        assert playback["longest_ms"] <= 500, playback
        media_errors = [e for e in errors if e["type"] == "mediaError"]
        assert not media_errors, media_errors
        assert switched <= source + 0.3, "switching put the viewer further behind live"
        assert switched <= 2.0, "more than two seconds behind live"
        # Every rendition was on screen.
        assert {int(h) for h in playback["heights"]} >= set(RUNG_HEIGHTS), playback["heights"]
        page.close()
    finally:
        publisher.kill()
        publisher.wait()
        stop(process)
