"""The watch page on 503s (the edge or an origin shedding load): retries back off
exponentially and each page with its own jitter, so a crowd refused together does not
come back together."""

from __future__ import annotations

import itertools
import shutil
import time

import pytest

from streams.models import LiveSession
from tests.platform.delivery.browser import CHROMIUM_FLAGS

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PAGES = 3


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
    asked: list[list[float]] = [[] for _ in range(PAGES)]
    with sync_playwright() as playwright:
        # Pages in the background have their timers throttled: none of them is, here.
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            *CHROMIUM_FLAGS, "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
        ])
        for times in asked:
            page = browser.new_context().new_page()
            page.route("**/live/**", shed(times))
            page.goto(f"{live_server.url}/c/{alice.channel.slug}")
        # Not time.sleep: Playwright answers the routed requests only while it runs.
        page.wait_for_timeout(12_000)
        browser.close()
    gaps = [[b - a for a, b in itertools.pairwise(times)] for times in asked]
    print(f"\nseconds between a page's requests after 503s: "
          f"{[[round(g, 2) for g in page] for page in gaps]}")
    for page in gaps:
        assert len(page) >= 3, gaps
        # Exponential from Retry-After (1 s), with equal jitter: the k-th wait is between
        # half of and all of 2^k seconds (plus the status check before each restart).
        for k, gap in enumerate(page[:3]):
            assert 0.5 * 2**k <= gap <= 2**k + 0.75, gaps
    # Each page its own jitter: the first waits are not all the same.
    firsts = sorted(page[0] for page in gaps)
    assert firsts[-1] - firsts[0] > 0.03 * firsts[-1], gaps
    # Far fewer requests than one a second each.
    assert all(len(times) <= 8 for times in asked), asked
