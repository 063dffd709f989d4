"""Acceptance, in Chromium against `manage.py up` with ffmpeg publishing:
- the dashboard hides the key until asked; rotating it refuses the old key at the next
  publish; health figures move during a stream and warn about a 5 s keyframe interval;
- 30 simulated heartbeating viewers show as 30 on the watch page and in the directory
  within 15 s, and fall to 0 within 60 s of leaving.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import uuid

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish
from tests.platform.delivery.browser import ARTIFACTS, CHROMIUM_FLAGS
from tests.support.processes import free_port, start, stop, wait_for, wait_live

pytestmark = pytest.mark.slow


def browser_or_skip():
    if shutil.which("chromium") is None or shutil.which("ffmpeg") is None:
        pytest.skip("chromium and ffmpeg are needed")


def test_dashboard_key_rotation_and_live_health(tmp_path) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    port = free_port()
    process, banner = start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    old_key = banner["key"]
    publisher = None
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{base}/accounts/login/?next=/dashboard")
            page.fill("input[name=username]", "demo")
            page.fill("input[name=password]", banner["streamer_password"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/dashboard")
            assert old_key not in page.content()  # never in the page, not even hidden
            page.click("#rotate-key")
            page.click("#confirm-rotate")
            key_field = page.locator("#stream-key")
            assert key_field.get_attribute("type") == "password"  # hidden until asked
            assert not page.get_by_text(re.compile(r"gl_\w{8}_\w{32}")).count()
            page.click("#show-key")
            assert key_field.get_attribute("type") == "text"
            new_key = key_field.input_value()
            assert re.fullmatch(r"gl_\w{8}_\w{32}", new_key)

            # The old key is refused at the next publish, with a sentence naming the dashboard.
            refused = ffmpeg_publish(f"{banner['rtmp']}/{old_key}", frames=30, timeout=30)
            assert refused.returncode != 0
            assert "dashboard" in refused.stderr

            # The new key streams, with a 5 s GOP: the dashboard's figures move and warn.
            publisher = ffmpeg_publish(f"{banner['rtmp']}/{new_key}", frames=30 * 40,
                                       realtime=True, gop=150, background=True)
            wait_live(base)
            page.goto(f"{base}/dashboard")
            page.wait_for_function("document.getElementById('h-bitrate').textContent !== '\\u2013'",
                                   timeout=20_000)
            first = page.inner_text("#h-duration")
            page.wait_for_function(
                f"document.getElementById('h-duration').textContent !== {json.dumps(first)}",
                timeout=15_000,
            )
            page.wait_for_selector("#warnings [data-code=keyframe_interval]", timeout=25_000)
            warning = page.inner_text("#warnings [data-code=keyframe_interval]")
            assert "every 5.0 s" in warning
            assert "2 s" in warning
            assert "kb/s" in page.inner_text("#h-bitrate")
            assert page.inner_text("#h-keyframe") == "5.0 s"
            page.wait_for_function(
                "window.goliveDashboard.hls && document.getElementById('preview').currentTime > 0",
                timeout=20_000,
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-keyframe-warning.png"), full_page=True)
            browser.close()
    finally:
        if publisher is not None:
            publisher.kill()
            publisher.wait()
        stop(process)


class Viewers:
    """N simulated players heartbeating every 10 s, each with its own tab id and address:
    N people behind the edge (loopback, a trusted proxy by default, forwards their
    addresses), not N tabs of one machine, which would count only up to the per-address
    cap."""

    def __init__(self, base: str, count: int) -> None:
        self.base = base
        self.tabs = [uuid.uuid4().hex for _ in range(count)]
        self.addresses = [f"198.51.100.{n + 1}" for n in range(count)]
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while self.running:
            for tab, address in zip(self.tabs, self.addresses, strict=True):
                session.post(f"{self.base}/viewers/heartbeat", timeout=5,
                             data=json.dumps({"channel": "demo", "tab": tab}),
                             headers={"X-Forwarded-For": address})
            for _ in range(100):
                if not self.running:
                    return
                time.sleep(0.1)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.running = False
        self.thread.join()


def test_thirty_heartbeating_viewers_show_on_the_watch_page_and_directory(tmp_path) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    port = free_port()
    process, banner = start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    publisher = ffmpeg_publish(f"{banner['rtmp']}/{banner['key']}", frames=30 * 120,
                               size="320x180", realtime=True, background=True, timeout=200)
    try:
        wait_live(base)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=CHROMIUM_FLAGS)
            watch = browser.new_page(viewport={"width": 1400, "height": 900})
            # This page observes: its own heartbeats are blocked, so only the 30 count.
            watch.route("**/viewers/heartbeat", lambda route: route.abort())
            watch.goto(f"{base}/c/demo")
            directory = browser.new_page(viewport={"width": 1400, "height": 900})
            directory.goto(f"{base}/")
            viewers = Viewers(base, 30)
            viewers.start()
            shown_watch = wait_for(lambda: watch.inner_text("#viewers") == "30", 15,
                                   "30 on the watch page")
            shown_directory = wait_for(
                lambda: directory.inner_text("[data-viewers=demo]") == "30", 15,
                "30 in the directory")
            print(f"\n30 viewers shown after {shown_watch:.1f} s (watch page),"
                  f" {shown_directory:.1f} s (directory)")
            # A bot on one address making up 30 more tabs adds only its cap of 10.
            bot = [requests.post(f"{base}/viewers/heartbeat", timeout=5, data=json.dumps(
                {"channel": "demo", "tab": uuid.uuid4().hex})).json() for _ in range(30)]
            assert [answer["counted"] for answer in bot] == [True] * 10 + [False] * 20
            assert bot[-1]["viewers"] == 40
            time.sleep(3)  # a thumbnail is made every 10 s
            directory.reload()
            directory.wait_for_selector("[data-viewers=demo]")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            directory.screenshot(path=str(ARTIFACTS / "directory-viewers.png"))
            watch.screenshot(path=str(ARTIFACTS / "watch-viewers.png"))
            viewers.stop()
            left = time.monotonic()
            wait_for(lambda: watch.inner_text("#viewers") == "0", 60, "0 on the watch page")
            wait_for(lambda: directory.inner_text("[data-viewers=demo]") == "0",
                     60 - (time.monotonic() - left), "0 in the directory")
            print(f"0 viewers shown {time.monotonic() - left:.1f} s after they left")
            browser.close()
    finally:
        publisher.kill()
        publisher.wait()
        stop(process)
