"""The transcode session's lease, on the real Redis: one holder at a time, kept alive by
renewals, lost when it lapses; and the live index refuses the writes of a holder whose
lease is gone (fencing), even one that never noticed."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.transcoder.live_index.test_contract import REDIS_URL, REQUIRE_SERVICES, redis_problem
from transcoder.lease import Lease, LeaseKeeper, new_token, token_pid
from transcoder.live_index import FencedError, LiveIndexError, PartRef
from transcoder.live_index.redis_index import RedisLiveIndex

PREFIX = f"golive:test:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    problem = redis_problem()
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(problem)
        pytest.skip(problem)
    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    yield connection
    for key in connection.scan_iter(match=f"{PREFIX}:*"):
        connection.delete(key)
    connection.close()


def key() -> str:
    return f"{PREFIX}:lease:{uuid.uuid4().hex[:8]}"


def test_one_holder_at_a_time_until_it_releases(client: redis.Redis) -> None:
    name = key()
    first, second = Lease(client, name, 2.0), Lease(client, name, 2.0)
    assert first.acquire()
    assert first.held
    assert not second.acquire()
    assert second.holder() == first.token
    assert not second.renew()  # renewing what is not ours does nothing
    assert not second.release()
    assert client.get(name) == first.token.encode()
    assert first.release()
    assert not first.held
    assert second.acquire()


def test_a_lease_not_renewed_lapses_and_another_takes_it(client: redis.Redis) -> None:
    name = key()
    first, second = Lease(client, name, 0.3), Lease(client, name, 0.3)
    assert first.acquire()
    time.sleep(0.2)
    assert first.renew()  # renewed: still ours past the first TTL
    time.sleep(0.2)
    assert not second.acquire()
    time.sleep(0.35)
    assert not first.held  # by the clock, before asking
    assert second.acquire()
    assert not first.renew()


def test_the_keeper_renews_and_says_when_the_lease_is_lost(client: redis.Redis) -> None:
    name = key()
    lease = Lease(client, name, 0.5)
    assert lease.acquire()
    lost: list[str] = []
    called = threading.Event()

    def on_lost(reason: str) -> None:
        lost.append(reason)
        called.set()

    keeper = LeaseKeeper(lease, every=0.1, on_lost=on_lost)
    keeper.start()
    time.sleep(1.2)  # more than twice the TTL: only renewals keep it
    assert client.get(name) == lease.token.encode()
    assert not lost
    client.set(name, "someone-else", px=5000)  # taken over (say it lapsed meanwhile)
    assert called.wait(2)
    assert keeper.lost is not None
    assert len(lost) == 1
    keeper.stop()
    assert client.get(name) == b"someone-else"  # a lost lease is not released


def test_stopping_the_keeper_releases_the_lease(client: redis.Redis) -> None:
    name = key()
    lease = Lease(client, name, 0.5)
    assert lease.acquire()
    keeper = LeaseKeeper(lease, every=0.1)
    keeper.start()
    keeper.stop()
    assert client.get(name) is None
    with pytest.raises(ValueError, match="more often"):
        LeaseKeeper(lease, every=0.5)


def test_a_token_names_its_process() -> None:
    import os

    assert token_pid(new_token()) == os.getpid()
    assert token_pid("garbage") is None


def test_the_live_index_refuses_a_lapsed_holders_writes(client: redis.Redis) -> None:
    async def scenario() -> None:
        index = RedisLiveIndex.from_url(REDIS_URL, prefix=PREFIX)
        try:
            stream = "s1"
            await index.set_init(stream, "source", b"init", 0.334, target_duration=2)
            name = index.lease_key(stream, "transcoder")
            old, new = Lease(client, name, 5.0), Lease(client, name, 5.0)
            assert old.acquire()
            writer = index.fenced(stream, "transcoder", old.token)
            await writer.set_init(stream, "360p30", b"init", 0.334, target_duration=2)
            await writer.add_part(stream, "360p30", PartRef(7, 0, 0.334, True), b"p0",
                                  program_date_time=1000.0)
            # The lease passes to a new holder while the old one is paused: its next
            # writes are refused, nothing of them lands.
            client.delete(name)
            assert new.acquire()
            with pytest.raises(FencedError):
                await writer.add_part(stream, "360p30", PartRef(7, 1, 0.334), b"p1")
            with pytest.raises(FencedError):
                await writer.mark_gap(stream, "360p30", 7, 2.0, 1000.0)
            window = await index.snapshot(stream, "360p30")
            assert window is not None
            assert [(p.msn, p.index) for p in window.parts] == [(7, 0)]
            successor = index.fenced(stream, "transcoder", new.token)
            await successor.mark_gap(stream, "360p30", 7, 2.0, 1000.0)
            await successor.add_part(stream, "360p30", PartRef(8, 0, 0.334, True), b"q0")
            window = await index.snapshot(stream, "360p30")
            assert window is not None
            assert [(s.msn, s.gap) for s in window.segments] == [(7, True)]
            # No lease at all: refused too. And a fenced writer never ends the stream.
            client.delete(name)
            with pytest.raises(FencedError):
                await successor.add_part(stream, "360p30", PartRef(8, 1, 0.334), b"q1")
            with pytest.raises(LiveIndexError):
                await successor.end(stream)
            with pytest.raises(FencedError):
                await successor.add_part("s2", "360p30", PartRef(8, 1, 0.334), b"q1")
        finally:
            await index.aclose()

    asyncio.run(scenario())
