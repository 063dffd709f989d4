"""The origin's cap on held requests: past GOLIVE_ORIGIN_MAX_HELD a blocking request is
answered 503 + Retry-After at once, counted in /metrics; what exists is always served."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from tests.support.origin import PLAYLIST, SESSION, STREAM, Exchange
from transcoder.live_index import PartRef

PART = f"/live/demo/{SESSION}/source/part-0.1.m4s"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_past_the_cap_blocking_requests_get_503_with_retry_after_and_are_counted(
    index: Any, settings: Any
) -> None:
    settings.GOLIVE_ORIGIN_MAX_HELD = 3
    from delivery.load import LOAD

    async def scenario() -> None:
        shed_before = sample("golive_origin_shed_total")
        held = [Exchange(f"{PLAYLIST}?_HLS_msn=0&_HLS_part=1") for _ in range(2)]
        held.append(Exchange(PART))  # a preload-hinted part is held too
        tasks = [asyncio.create_task(e.run()) for e in held]
        await asyncio.sleep(0.1)
        assert LOAD.held == 3
        assert sample("golive_origin_held_requests") == 3
        assert not any(e.sent for e in held)

        refused = Exchange(f"{PLAYLIST}?_HLS_msn=0&_HLS_part=1")
        await asyncio.wait_for(refused.run(), 1)
        assert refused.status == 503
        assert refused.headers["retry-after"] == "1"
        # Short-lived and cacheable: an edge shares it instead of asking again at once.
        assert refused.headers["cache-control"] == "public, max-age=1"
        assert sample("golive_origin_shed_total") == shed_before + 1

        # A part that exists and a plain playlist cost nothing to hold: still answered.
        existing = Exchange(f"/live/demo/{SESSION}/source/part-0.0.m4s")
        plain = Exchange(PLAYLIST)
        await asyncio.wait_for(asyncio.gather(existing.run(), plain.run()), 1)
        assert (existing.status, plain.status) == (200, 200)

        await index.add_part(STREAM, "source", PartRef(0, 1, 0.334, False), b"p1")
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        assert [e.status for e in held] == [200, 200, 200]
        assert LOAD.held == 0

    asyncio.run(scenario())


def test_requests_are_counted_per_object_kind(index: Any) -> None:
    async def scenario() -> None:
        for target in (PLAYLIST, f"{PLAYLIST}?_HLS_msn=0&_HLS_part=0",
                       f"/live/demo/{SESSION}/source/part-0.0.m4s"):
            await Exchange(target).run()

    before = {k: sample("golive_origin_requests_total", object=k)
              for k in ("playlist", "blocking_playlist", "part")}
    asyncio.run(scenario())
    after = {k: sample("golive_origin_requests_total", object=k) for k in before}
    assert {k: after[k] - before[k] for k in before} == {
        "playlist": 1, "blocking_playlist": 1, "part": 1
    }
