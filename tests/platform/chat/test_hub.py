"""Fan-out: one bus message per room, a bounded queue per socket, slow sockets dropped,
and a resync after the bus reconnects. The Redis bus runs against a real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from chat.hub import Hub, RedisBus, Subscriber, encode
from tests.support.services import redis_or_skip

REDIS = "redis://127.0.0.1:6379/14"


def loader(history=None, state=None):
    calls = []

    async def load(slug):
        calls.append(slug)
        return list(history or []), dict(state or {})

    load.calls = calls
    return load


def frames(subscriber: Subscriber) -> list[dict]:
    return [json.loads(frame) for frame in subscriber.queue]


def test_a_message_reaches_every_socket_of_its_room_only() -> None:
    async def scenario():
        hub = Hub(loader())
        a, b, other = Subscriber(), Subscriber(), Subscriber()
        await hub.join("r1", a)
        await hub.join("r1", b)
        await hub.join("r2", other)
        await hub.publish("r1", {"t": "msg", "id": 1, "user": "u", "text": "hi"})
        return a, b, other

    a, b, other = asyncio.run(scenario())
    assert frames(a) == frames(b) == [{"t": "msg", "id": 1, "user": "u", "text": "hi"}]
    assert list(other.queue) == []


def test_every_socket_gets_the_same_encoded_frame_object() -> None:
    async def scenario():
        hub = Hub(loader())
        subs = [Subscriber() for _ in range(100)]
        for s in subs:
            await hub.join("r", s)
        await hub.publish("r", {"t": "msg", "id": 1})
        return subs

    subs = asyncio.run(scenario())
    assert len({id(s.queue[0]) for s in subs}) == 1  # encoded once, shared


def test_a_socket_that_falls_behind_is_dropped_and_the_rest_keep_receiving() -> None:
    async def scenario():
        hub = Hub(loader())
        slow, fast = Subscriber(limit=5), Subscriber(limit=5)
        await hub.join("r", slow)
        await hub.join("r", fast)
        for n in range(8):
            await hub.publish("r", {"t": "msg", "id": n})
            fast.queue.clear()  # the fast one's writer keeps up
        return hub, slow, fast

    hub, slow, fast = asyncio.run(scenario())
    assert slow.dropped
    assert not slow.queue  # its memory is released at once
    assert not fast.dropped
    assert slow not in hub.rooms["r"].subscribers


def test_history_remembers_messages_and_forgets_deleted_and_purged_ones() -> None:
    history = [{"t": "msg", "id": 1, "user": "a", "text": "x"}]

    async def scenario():
        hub = Hub(loader(history, {"t": "state", "slow": 0}))
        s = Subscriber()
        room = await hub.join("r", s)
        await hub.publish("r", {"t": "msg", "id": 1, "user": "a", "text": "x"})  # a duplicate
        await hub.publish("r", {"t": "msg", "id": 2, "user": "b", "text": "y"})
        await hub.publish("r", {"t": "msg", "id": 3, "user": "a", "text": "z"})
        await hub.publish("r", {"t": "del", "id": 2})
        ids_after_delete = [m["id"] for m in room.history]
        await hub.publish("r", {"t": "purge", "user": "a"})
        return ids_after_delete, list(room.history), room.state

    after_delete, after_purge, state = asyncio.run(scenario())
    assert after_delete == [1, 3]
    assert after_purge == []
    assert state == {"t": "state", "slow": 0}


def test_a_room_is_loaded_once_and_unsubscribed_when_empty() -> None:
    load = loader()

    async def scenario():
        hub = Hub(load)
        a, b = Subscriber(), Subscriber()
        await asyncio.gather(hub.join("r", a), hub.join("r", b))
        await hub.leave("r", a)
        still = "r" in hub.rooms
        await hub.leave("r", b)
        return still, "r" in hub.rooms

    still, after = asyncio.run(scenario())
    assert load.calls == ["r"]
    assert still
    assert not after


def test_resync_sends_fresh_history_to_every_socket() -> None:
    rows = [{"t": "msg", "id": 1, "user": "a", "text": "x"}]

    async def scenario():
        hub = Hub(loader(rows))
        s = Subscriber()
        await hub.join("r", s)
        s.queue.clear()
        rows.append({"t": "msg", "id": 2, "user": "b", "text": "missed"})
        await hub.resync()
        return frames(s)

    sent = asyncio.run(scenario())
    assert sent[0]["t"] == "history"
    assert sent[0]["resync"] is True
    assert [m["id"] for m in sent[0]["messages"]] == [1, 2]


def test_viewer_counts_reach_the_rooms_sockets(monkeypatch) -> None:
    import chat.hub

    monkeypatch.setattr(chat.hub, "VIEWER_EVERY", 0.01)

    async def counts(slugs):
        return dict.fromkeys(slugs, 7)

    async def scenario():
        hub = Hub(loader(), counts)
        s = Subscriber()
        await hub.join("r", s)
        for _ in range(100):
            if any('"viewers"' in f for f in s.queue):
                break
            await asyncio.sleep(0.01)
        return frames(s)

    assert {"t": "viewers", "n": 7} in asyncio.run(scenario())


async def wait_for(predicate, timeout=5.0):  # noqa: ASYNC109 (a test helper)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


@pytest.mark.services
def test_two_processes_share_a_room_through_one_redis_channel() -> None:
    redis_or_skip(REDIS)
    prefix = f"test-{uuid.uuid4().hex[:8]}:chat"

    async def scenario():
        one, two = Hub(loader()), Hub(loader())
        one.bus = RedisBus(one, REDIS, prefix=prefix)
        two.bus = RedisBus(two, REDIS, prefix=prefix)
        a, b = Subscriber(), Subscriber()
        await one.join("room", a)
        await two.join("room", b)
        import redis.asyncio as aioredis

        probe = aioredis.Redis.from_url(REDIS)
        await wait_for(lambda: True)
        # Each process is one subscriber of the room's channel, whatever its sockets.
        for _ in range(100):
            subscribers = (await probe.pubsub_numsub(f"{prefix}:room"))[0][1]
            if subscribers == 2:
                break
            await asyncio.sleep(0.02)
        await one.publish("room", {"t": "msg", "id": 9, "text": "across"})
        await wait_for(lambda: a.queue and b.queue)
        await one.bus.aclose()
        await two.bus.aclose()
        await probe.aclose()
        return subscribers, frames(a), frames(b)

    subscribers, got_a, got_b = asyncio.run(scenario())
    assert subscribers == 2
    assert got_a == got_b == [{"t": "msg", "id": 9, "text": "across"}]


@pytest.mark.services
def test_after_redis_drops_the_connection_the_bus_resubscribes_and_resyncs() -> None:
    redis_or_skip(REDIS)
    prefix = f"test-{uuid.uuid4().hex[:8]}:chat"
    rows: list[dict] = []

    async def scenario():
        import redis.asyncio as aioredis

        listener, sender = Hub(loader(rows)), Hub(loader())
        listener.bus = RedisBus(listener, REDIS, prefix=prefix)
        sender.bus = RedisBus(sender, REDIS, prefix=prefix)
        s = Subscriber()
        await listener.join("room", s)
        await wait_for(lambda: listener.bus._pubsub is not None and listener.bus._pubsub.subscribed)
        admin = aioredis.Redis.from_url(REDIS)
        s.queue.clear()
        rows.append({"t": "msg", "id": 1, "text": "sent while cut off"})
        await admin.client_kill_filter(_type="pubsub")
        await wait_for(lambda: listener.bus.reconnects >= 1, timeout=10)
        await wait_for(lambda: any('"history"' in f for f in s.queue))
        await sender.publish("room", {"t": "msg", "id": 2, "text": "after"})
        await wait_for(lambda: any('"after"' in f for f in s.queue), timeout=5)
        await listener.bus.aclose()
        await sender.bus.aclose()
        await admin.aclose()
        return frames(s)

    got = asyncio.run(scenario())
    resync = next(f for f in got if f["t"] == "history")
    assert resync["resync"] is True
    assert resync["messages"] == [{"t": "msg", "id": 1, "text": "sent while cut off"}]
    assert got[-1] == {"t": "msg", "id": 2, "text": "after"}


def test_encode_is_compact_and_keeps_unicode() -> None:
    assert encode({"t": "msg", "text": "héllo"}) == '{"t":"msg","text":"héllo"}'
