"""The delivery benchmark's machinery at a tiny scale: a real origin process, the Redis
live index, a few clients. It checks what is answered, never how fast."""

from __future__ import annotations

import os

import pytest
import redis

from tests.bench.bench_delivery import (
    DEFAULT_REDIS,
    measure_hold,
    measure_wake,
    run_with_index,
    start_origin,
)
from tests.bench.processes import Processes
from tests.support.services import REQUIRE_SERVICES

pytestmark = [pytest.mark.slow, pytest.mark.services]

REDIS_URL = os.environ.get("REDIS_URL") or DEFAULT_REDIS


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except (redis.RedisError, OSError) as error:
        if REQUIRE_SERVICES:
            raise
        pytest.skip(f"Redis is needed at {REDIS_URL}: {error}")
    return REDIS_URL


def test_blocked_playlist_requests_are_woken_and_held_by_a_real_origin(tmp_path, redis_url):
    with Processes() as processes:
        origin = start_origin(processes, tmp_path / "origin", redis_url)
        wakes = run_with_index(redis_url, lambda index: measure_wake(origin, index, [1, 5], 2))
        hold = run_with_index(redis_url, lambda index: measure_hold(origin, index, 20, 1.0, print))
        assert origin.process.poll() is None, "the origin died"

    assert [(w.clients, w.problems) for w in wakes] == [(1, []), (5, [])]
    for wake in wakes:
        # Every client, every round: a 200 naming the part just published.
        assert len(wake.wake) == len(wake.reference) == wake.clients * 2
        assert all(0 < delay < 30 for delay in wake.wake + wake.reference)
        assert len(wake.publish) == 2

    assert hold.problems == []
    assert hold.held == 20
    assert hold.answered == 20
    assert hold.sockets >= 20
    assert 0 < hold.rss_idle <= hold.rss_holding
