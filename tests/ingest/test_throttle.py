"""Wrong-key throttling: one contract for both stores (this process's memory, Redis shared
by every ingest node), and the limit held across two ingest servers sharing Redis.

The rule (README, "Security"): ``max_failures`` failed checks per window block an address;
while blocked, only a key already admitted from that address is checked.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from ingest.gatekeeper import Grant, PublishRequest, Refusal
from ingest.server import IngestConfig
from ingest.throttle import (
    FailedKeyThrottle,
    KeyAttemptStore,
    MemoryKeyAttemptStore,
    RedisKeyAttemptStore,
    ThrottlePolicy,
)
from tests.ingest.clients import RawPublisher
from tests.ingest.harness import FakeGatekeeper

REDIS_URL = os.environ.get("REDIS_URL", "")
POLICY = ThrottlePolicy(
    max_failures=4, window=60, block_seconds=60, delay_step=0, queue_seconds=0.2
)
IP, NEIGHBOUR = "198.51.100.7", "198.51.100.8"


def redis_url_or_skip() -> str:
    import redis

    if not REDIS_URL:
        if os.environ.get("GOLIVE_REQUIRE_SERVICES"):
            raise AssertionError("REDIS_URL is not set and GOLIVE_REQUIRE_SERVICES is")
        pytest.skip("REDIS_URL is not set")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("GOLIVE_REQUIRE_SERVICES"):
            raise
        pytest.skip(f"Redis is needed: {error}")
    return REDIS_URL


def unique_prefix() -> str:
    return f"golive-test-throttle-{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def forget_prefix() -> Iterator[Callable[[str], str]]:
    """Gives out Redis prefixes and deletes their keys after the test."""
    prefixes: list[str] = []

    def make() -> str:
        prefixes.append(unique_prefix())
        return prefixes[-1]

    yield make  # type: ignore[misc]
    if prefixes:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for prefix in prefixes:
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)


StoreMaker = Callable[[], Awaitable[KeyAttemptStore]]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest, forget_prefix) -> StoreMaker:  # type: ignore[no-untyped-def]
    """Two stores that share their counts, as two ingest nodes' stores do."""
    if request.param == "memory":
        shared = MemoryKeyAttemptStore()

        async def memory() -> KeyAttemptStore:
            return shared

        return memory
    url, prefix = redis_url_or_skip(), forget_prefix()

    async def shared_redis() -> KeyAttemptStore:
        return RedisKeyAttemptStore.from_url(url, prefix=prefix)

    return shared_redis


async def close_all(*stores: KeyAttemptStore) -> None:
    for store in stores:
        if isinstance(store, RedisKeyAttemptStore):
            await store.aclose()


async def fail_once(throttle: FailedKeyThrottle, ip: str, key: str = "wrong") -> int:
    """One wrong key; returns the wait it was answered with first (0: it was checked)."""
    attempt = await throttle.begin(ip, key)
    if not attempt.wait:
        await throttle.failed(ip, attempt)
    return attempt.wait


def test_wrong_keys_over_two_nodes_are_capped_at_the_limit_in_total(make_store) -> None:
    async def run() -> list[int]:
        node_a = FailedKeyThrottle(POLICY, await make_store())
        node_b = FailedKeyThrottle(POLICY, await make_store())
        waits = [await fail_once((node_a, node_b)[i % 2], IP, f"guess-{i}") for i in range(10)]
        await close_all(node_a.store, node_b.store)
        return waits

    waits = asyncio.run(run())
    assert waits[:4] == [0, 0, 0, 0], "the first four are checked"
    assert all(55 <= wait <= 60 for wait in waits[4:]), waits


def test_checks_under_way_hold_their_places_so_parallel_guesses_cannot_overshoot(
    make_store,
) -> None:
    async def run() -> list[int]:
        node_a = FailedKeyThrottle(POLICY, await make_store())
        node_b = FailedKeyThrottle(POLICY, await make_store())
        attempts = [await (node_a, node_b)[i % 2].begin(IP, f"guess-{i}") for i in range(6)]
        await close_all(node_a.store, node_b.store)
        return [attempt.wait for attempt in attempts]

    waits = asyncio.run(run())
    assert waits[:4] == [0, 0, 0, 0]
    assert all(wait > 0 for wait in waits[4:]), waits


def test_a_check_finding_every_place_held_waits_for_one_to_be_given_back(make_store) -> None:
    """Many encoders starting at once behind one address: queued, not refused."""

    async def run() -> tuple[int, int]:
        node_a = FailedKeyThrottle(POLICY, await make_store())
        node_b = FailedKeyThrottle(
            ThrottlePolicy(max_failures=4, delay_step=0, queue_seconds=5), await make_store()
        )
        held = [await node_a.begin(IP, f"key-{i}") for i in range(4)]
        waiting = asyncio.ensure_future(node_b.begin(IP, "key-4"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await node_a.key_accepted(IP, "key-0", held[0])  # a right key gives its place back
        fifth = await asyncio.wait_for(waiting, 2)
        await close_all(node_a.store, node_b.store)
        return fifth.wait, sum(attempt.wait for attempt in held)

    assert asyncio.run(run()) == (0, 0)


def test_a_key_admitted_from_the_address_before_is_still_checked_during_a_block(
    make_store,
) -> None:
    async def run() -> tuple[int, int, int, int]:
        node_a = FailedKeyThrottle(POLICY, await make_store())
        node_b = FailedKeyThrottle(POLICY, await make_store())
        first = await node_a.begin(IP, "alice-key")
        await node_a.key_accepted(IP, "alice-key", first)
        for i in range(4):
            await fail_once(node_a, IP, f"guess-{i}")
        # On the other node: alice's key is checked, a key never admitted here is not.
        alice = (await node_b.begin(IP, "alice-key")).wait
        bob = (await node_b.begin(IP, "bob-key")).wait
        guess = (await node_b.begin(IP, "guess-9")).wait
        # Another address is not affected by this one's block.
        neighbour = (await node_b.begin(NEIGHBOUR, "guess-0")).wait
        await close_all(node_a.store, node_b.store)
        return alice, bob, guess, neighbour

    alice, bob, guess, neighbour = asyncio.run(run())
    assert alice == 0
    assert bob > 0
    assert guess > 0
    assert neighbour == 0


def test_a_right_key_gives_its_place_back(make_store) -> None:
    async def run() -> int:
        throttle = FailedKeyThrottle(POLICY, await make_store())
        for _ in range(10):
            attempt = await throttle.begin(IP, "alice-key")
            assert attempt.wait == 0
            await throttle.key_accepted(IP, "alice-key", attempt)
        for i in range(3):
            await fail_once(throttle, IP, f"typo-{i}")
        wait = (await throttle.begin(IP, "typo-3")).wait
        await close_all(throttle.store)
        return wait

    assert asyncio.run(run()) == 0, "ten good publishes and three typos: not blocked"


def test_blocks_double_and_end() -> None:
    now = [0.0]
    store = MemoryKeyAttemptStore(clock=lambda: now[0])
    policy = ThrottlePolicy(max_failures=2, window=60, block_seconds=10, max_block_seconds=25)
    throttle = FailedKeyThrottle(policy, store)

    async def block() -> int:
        for i in range(2):
            await fail_once(throttle, IP, f"g{i}")
        return (await throttle.begin(IP, "g")).wait

    assert asyncio.run(block()) == 10
    now[0] += 10.5
    assert asyncio.run(block()) == 20
    now[0] += 20.5
    assert asyncio.run(block()) == 25, "capped at max_block_seconds"


def test_redis_unreachable_falls_back_on_this_nodes_memory() -> None:
    async def run() -> list[int]:
        store = RedisKeyAttemptStore.from_url("redis://127.0.0.1:1/0", prefix=unique_prefix())
        throttle = FailedKeyThrottle(POLICY, store)
        waits = [await fail_once(throttle, IP, f"g{i}") for i in range(6)]
        await store.aclose()
        return waits

    waits = asyncio.run(run())
    assert waits[:4] == [0, 0, 0, 0], waits
    assert all(w > 0 for w in waits[4:]), waits



def test_right_keys_checked_while_redis_is_away_give_their_places_back() -> None:
    async def run() -> list[int]:
        store = RedisKeyAttemptStore.from_url("redis://127.0.0.1:1/0", prefix=unique_prefix())
        throttle = FailedKeyThrottle(POLICY, store)
        waits = []
        for i in range(POLICY.max_failures + 3):  # streamers behind one address
            attempt = await throttle.begin(IP, f"key-{i}")
            waits.append(attempt.wait)
            await throttle.key_accepted(IP, f"key-{i}", attempt)
        await store.aclose()
        return waits

    assert asyncio.run(run()) == [0] * (POLICY.max_failures + 3), "right keys never block"


def test_a_burst_of_checks_on_one_node_all_counted_in_redis(
    forget_prefix, caplog: pytest.LogCaptureFixture
) -> None:
    """More checks at once than the node keeps connections to Redis: they wait for one,
    none is counted in the node's memory instead (where the nodes' limit is not shared)."""
    url, prefix = redis_url_or_skip(), forget_prefix()
    burst = 300

    async def run() -> list[str | None]:
        store = RedisKeyAttemptStore.from_url(url, prefix=prefix)
        throttle = FailedKeyThrottle(POLICY, store)
        attempts = await asyncio.gather(
            *(throttle.begin(f"10.0.{i // 250}.{i % 250}", "key") for i in range(burst))
        )
        await store.aclose()
        return [attempt.ticket for attempt in attempts]

    with caplog.at_level("WARNING", logger="ingest.throttle"):
        tickets = asyncio.run(run())
    assert all(tickets), "every check took its place"
    assert not [r for r in caplog.records if "Redis unavailable" in r.getMessage()]



def test_a_node_connects_to_redis_before_its_first_publish(
    forget_prefix, caplog: pytest.LogCaptureFixture
) -> None:
    """Every connection open and the scripts loaded, at once: loading a script while all
    the connections were held waited out the pool's timeout and warned "unavailable"."""
    url, prefix = redis_url_or_skip(), forget_prefix()

    async def run() -> tuple[int, int, list[bool], float]:
        store = RedisKeyAttemptStore.from_url(url, prefix=prefix)
        pool = store._redis.connection_pool
        before = len(pool._available_connections)  # type: ignore[attr-defined]
        started = time.monotonic()
        await store.connect()
        took = time.monotonic() - started
        after = len(pool._available_connections)  # type: ignore[attr-defined]
        loaded = await store._redis.script_exists(
            *(s.sha for s in (store._begin, store._fail, store._succeed)))
        await store.aclose()
        return before, after, loaded, took

    with caplog.at_level("WARNING", logger="ingest.throttle"):
        before, after, loaded, took = asyncio.run(run())
    assert (before, after) == (0, RedisKeyAttemptStore.MAX_CONNECTIONS)
    assert loaded == [True, True, True]
    assert not [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert took < 1.5, f"connecting took {took:.2f} s (the pool's timeout is 2 s)"


def test_connecting_while_redis_is_away_warns_and_publishes_still_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> int:
        store = RedisKeyAttemptStore.from_url("redis://127.0.0.1:1/0", prefix=unique_prefix())
        await store.connect()
        wait = await fail_once(FailedKeyThrottle(POLICY, store), IP)
        await store.aclose()
        return wait

    with caplog.at_level("WARNING", logger="ingest.throttle"):
        assert asyncio.run(run()) == 0
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)


# -- two ingest servers sharing Redis -----------------------------------------------------


@dataclass
class CountingGatekeeper(FakeGatekeeper):
    checked: list[str] = field(default_factory=list)  # every key it was asked about

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        self.checked.append(request.key)
        return await super().admit(request)


def publish_status(port: int, key: str) -> dict[str, object]:
    client = RawPublisher("127.0.0.1", port)
    try:
        client.connect_and_publish(key)

        def answered(commands: list) -> bool:  # type: ignore[type-arg]
            return any(c.name == "onStatus" for c in commands)

        assert client.read_until(answered), "no answer to publish"
        status = next(c for c in client.commands() if c.name == "onStatus").args[0]
        assert isinstance(status, dict)
        return status
    finally:
        client.close()


def test_two_ingest_nodes_sharing_redis_cap_one_addresss_wrong_keys_in_total(
    start_ingest, forget_prefix
) -> None:
    url, prefix = redis_url_or_skip(), forget_prefix()
    gatekeeper = CountingGatekeeper(keys={"alice-key": "alice", "bob-key": "bob"})
    policy = ThrottlePolicy(max_failures=5, block_seconds=60, delay_step=0)
    nodes = [
        start_ingest(
            gatekeeper,
            IngestConfig(node=name, throttle=policy),
            key_attempts=RedisKeyAttemptStore.from_url(url, prefix=prefix),
        )
        for name in ("node-a", "node-b")
    ]
    # Alice has streamed from this address before the guessing starts.
    assert publish_status(nodes[0].port, "alice-key")["code"] == "NetStream.Publish.Start"
    codes = [
        publish_status(nodes[i % 2].port, f"guess-{i}")["code"] for i in range(12)
    ]
    guesses_checked = [key for key in gatekeeper.checked if key.startswith("guess-")]
    assert len(guesses_checked) == 5, f"checked {len(guesses_checked)} wrong keys in total"
    assert codes[:5] == ["NetStream.Publish.BadName"] * 5
    assert codes[5:] == ["NetStream.Publish.Rejected"] * 7
    # The README's rule: alice's key is still checked (and admitted) on either node; bob,
    # who never published from this address, waits for the block to end like the guesser.
    for node in nodes:
        assert publish_status(node.port, "alice-key")["code"] == "NetStream.Publish.Start"
    refused = publish_status(nodes[1].port, "bob-key")
    assert refused["code"] == "NetStream.Publish.Rejected"
    assert "Too many wrong stream keys" in str(refused["description"])
    assert "bob-key" not in gatekeeper.checked
