"""The origin's media URLs through the ASGI entry point, called as Daphne calls it: the
same answers as through Django, and a blocked playlist request costs no thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.support.origin import PLAYLIST, SESSION, STREAM, Exchange
from transcoder.live_index import PartRef


def test_blocked_playlist_requests_hold_no_thread_and_all_wake_with_their_part(index) -> None:
    async def scenario() -> None:
        before = threading.active_count()
        exchanges = [Exchange(f"{PLAYLIST}?_HLS_msn=0&_HLS_part=1") for _ in range(50)]
        requests = [asyncio.create_task(e.run()) for e in exchanges]
        await asyncio.sleep(0.3)
        assert not any(r.done() for r in requests), "answered before the part existed"
        # Django's handler would hold one thread per request here (50 more).
        assert threading.active_count() <= before + 2
        await index.add_part(STREAM, "source", PartRef(0, 1, 0.334), b"p1")
        await asyncio.wait_for(asyncio.gather(*requests), 5)
        for exchange in exchanges:
            assert exchange.status == 200
            assert b"part-0.1.m4s" in exchange.body
            assert exchange.headers["content-length"] == str(len(exchange.body))
            assert exchange.headers["cache-control"] == "public, max-age=6"
            assert exchange.headers["access-control-allow-origin"] == "*"
            assert exchange.headers["x-content-type-options"] == "nosniff"

    asyncio.run(scenario())


def test_a_viewer_who_goes_away_while_blocked_ends_its_wait_at_once(index) -> None:
    async def scenario() -> None:
        exchange = Exchange(f"{PLAYLIST}?_HLS_msn=0&_HLS_part=1")
        request = asyncio.create_task(exchange.run())
        await asyncio.sleep(0.1)
        exchange.disconnect()
        await asyncio.wait_for(request, 1)  # not the 6 s blocking limit
        assert exchange.sent == []
        assert not index._waiters, "the wait was left behind"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("target", "status", "cache"),
    [
        (f"{PLAYLIST}?_HLS_msn=0&_HLS_part=0", 200, "public, max-age=6"),
        (PLAYLIST, 200, "public, max-age=1"),
        (f"{PLAYLIST}?_HLS_msn=abc", 400, "public, max-age=60"),
        (f"{PLAYLIST}?_HLS_part=2", 400, "public, max-age=60"),
        (f"{PLAYLIST}?_HLS_msn=9", 400, "public, max-age=1"),
        ("/live/demo/1/source/index.m3u8", 404, "public, max-age=2"),
        ("/live/demo/1/..bad/index.m3u8", 404, "public, max-age=60"),
        (f"/live/demo/{SESSION}/source/part-0.0.m4s", 200, "public, max-age=31536000, immutable"),
        (f"/live/demo/{SESSION}/source/init-1.mp4", 200, "public, max-age=31536000, immutable"),
        (f"/live/demo/{SESSION}/source/seg-7.m4s", 404, "public, max-age=1"),
    ],
)
def test_media_urls_answer_as_the_views_say(index, target, status, cache) -> None:
    exchange = Exchange(target)
    asyncio.run(exchange.run())
    assert (exchange.status, exchange.headers["cache-control"]) == (status, cache), exchange.body


def test_a_post_to_a_media_url_is_not_allowed(index) -> None:
    exchange = Exchange(PLAYLIST)
    exchange.scope["method"] = "POST"
    asyncio.run(exchange.run())
    assert exchange.status == 405


def test_other_urls_still_go_through_django(index) -> None:
    exchange = Exchange("/healthz")
    asyncio.run(exchange.run())
    assert exchange.status == 200
    assert exchange.headers["x-frame-options"] == "DENY"  # Django's middleware ran
