"""The watch page on a 503 (the edge or an origin shedding load): it backs off
exponentially from Retry-After, with jitter, instead of hammering."""

from __future__ import annotations

import shutil
import time

import pytest

from streams.models import LiveSession
from tests.platform.delivery.browser import CHROMIUM_FLAGS

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def shed(times: list[float]):  # type: ignore[no-untyped-def]
    def busy(route) -> None:  # type: ignore[no-untyped-def]
        times.append(time.monotonic())
        route.fulfill(status=503, body="busy\n", content_type="text/plain",
                      headers={"Retry-After": "1", "Cache-Control": "public, max-age=1"})

    return busy


def test_on_503_the_watch_page_backs_off_exponentially_with_jitter(alice, live_server) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (./golive test installs it with apt)")
    from playwright.sync_api import sync_playwright

    LiveSession.objects.create(channel=alice.channel, ingest_node="ingest-a")
    asked: dict[int, list[float]] = {0: [], 1: []}
    delays: dict[int, list[float]] = {0: [], 1: []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_FLAGS)
        pages = []
        for number in (0, 1):
            page = browser.new_page()

            page.route("**/live/**", shed(asked[number]))
            page.goto(f"{live_server.url}/c/{alice.channel.slug}")
            pages.append(page)
        until = time.monotonic() + 14
        while time.monotonic() < until:
            for number, page in enumerate(pages):
                delay = page.evaluate("window.golivePlayer.retryDelay || null")
                if delay is not None and (not delays[number] or delays[number][-1] != delay):
                    delays[number].append(delay)
            time.sleep(0.05)
        browser.close()
    print(f"\nback-off delays (s): {delays}; requests: {[len(v) for v in asked.values()]}")
    for number in (0, 1):
        assert len(delays[number]) >= 3, delays
        # Retry-After 1 s, doubling each time, each delay jittered within its upper half.
        for attempt, delay in enumerate(delays[number][:4]):
            assert 0.5 * 2**attempt <= delay <= 2**attempt, (attempt, delay)
    # Two viewers that failed together come back at different moments.
    assert delays[0][:3] != delays[1][:3]
    # And far fewer requests than a reload every second would make.
    assert all(len(times) <= 14 for times in asked.values()), asked
