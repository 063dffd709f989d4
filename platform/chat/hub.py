"""Chat fan-out: one pub/sub channel per room, in-process fan-out to a bounded queue per
socket.

Why not the channel layer's groups: channels_redis's ``group_send`` writes every message
once per member into Redis (O(members) per message) and drops messages past a channel's
capacity at a few hundred members (channels_redis #62, #83). Here a message is published
once per room (PUBLISH golive:chat:<slug>); each process holding sockets of that room is
subscribed once, parses it once and appends the same encoded frame to each local socket's
queue. A socket whose queue or transport buffer fills is closed (Owncast does the same), so
one slow reader never holds memory for everyone. After the Redis connection drops the bus
reconnects with backoff, resubscribes and resyncs every room (fresh history to every
socket): messages published meanwhile would otherwise be missing without anyone knowing.

Embedded mode: `MemoryBus` hands frames straight to the hub, same code above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from django.conf import settings

log = logging.getLogger(__name__)

HISTORY = 50
# Frames a socket may have waiting before it counts as too slow (about 6 s of a room at
# its 10 messages/s cap, plus the occasional notice).
QUEUE_LIMIT = 64
# Bytes the server may hold for a socket's transport (daphne writes never wait, so the
# queue alone cannot see a slow TCP peer).
TRANSPORT_LIMIT = 256 * 1024
SLOW_CLOSE_CODE = 4008
VIEWER_EVERY = 3.0


class Subscriber:
    """One socket's place in a room: a bounded queue its writer drains."""

    __slots__ = ("closed", "dropped", "limit", "queue", "wake")

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.queue: deque[str] = deque()
        self.wake = asyncio.Event()
        self.limit = limit
        self.closed = False
        self.dropped = False

    def push(self, frame: str) -> bool:
        if self.closed:
            return False
        if len(self.queue) >= self.limit:
            self.drop()
            return False
        self.queue.append(frame)
        self.wake.set()
        return True

    def drop(self) -> None:
        """Too slow: the writer closes the socket and nothing more is queued."""
        self.closed = self.dropped = True
        self.queue.clear()
        self.wake.set()


class RoomState:
    """What a process knows of one room: its local sockets, last messages and modes."""

    __slots__ = ("history", "loaded", "slug", "state", "subscribers", "viewers")

    def __init__(self, slug: str) -> None:
        self.slug = slug
        self.subscribers: set[Subscriber] = set()
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.state: dict[str, Any] = {}
        self.loaded = asyncio.Event()
        self.viewers = -1

    def remember(self, event: dict[str, Any]) -> None:
        kind = event.get("t")
        if kind == "msg":
            if not any(m.get("id") == event.get("id") for m in self.history):
                self.history.append(event)
        elif kind == "del":
            self._forget(lambda m: m.get("id") == event.get("id"))
        elif kind == "purge":
            self._forget(lambda m: m.get("user") == event.get("user"))
        elif kind == "state":
            self.state = event

    def _forget(self, gone: Callable[[dict[str, Any]], bool]) -> None:
        kept = [m for m in self.history if not gone(m)]
        self.history.clear()
        self.history.extend(kept)

    def deliver(self, frame: str) -> None:
        for subscriber in list(self.subscribers):
            if not subscriber.push(frame):
                self.subscribers.discard(subscriber)


class Bus(Protocol):
    async def publish(self, room: str, frame: str) -> None: ...
    async def subscribe(self, room: str) -> None: ...
    async def unsubscribe(self, room: str) -> None: ...
    async def aclose(self) -> None: ...


Counter = Callable[[list[str]], Awaitable[dict[str, int]]]
Loader = Callable[[str], Awaitable[tuple[list[dict[str, Any]], dict[str, Any]]]]


class Hub:
    """A process's rooms. ``load(slug)`` returns (history, state) from the database."""

    def __init__(self, load: Loader, counts: Counter | None = None) -> None:
        self.rooms: dict[str, RoomState] = {}
        self._load = load
        self._counts = counts
        self._counting: asyncio.Task[None] | None = None
        self.bus: Bus = MemoryBus(self)

    async def join(self, slug: str, subscriber: Subscriber) -> RoomState:
        if self._counts is not None and self._counting is None:
            self._counting = asyncio.get_running_loop().create_task(self._count_viewers())
        room = self.rooms.get(slug)
        if room is None:
            room = self.rooms[slug] = RoomState(slug)
            # Subscribed before the history is read: a message published in between is
            # in both, and `remember` keeps it once.
            await self.bus.subscribe(slug)
            await self._fill(room)
        else:
            await room.loaded.wait()
        room.subscribers.add(subscriber)
        return room

    async def _fill(self, room: RoomState) -> None:
        try:
            history, state = await self._load(room.slug)
        except Exception:
            log.exception("chat history of %s could not be read", room.slug)
            history, state = [], {}
        known = list(room.history)
        room.history.clear()
        for event in [*history, *known]:
            room.remember(event)
        room.state = room.state or state
        room.loaded.set()

    async def leave(self, slug: str, subscriber: Subscriber) -> None:
        room = self.rooms.get(slug)
        if room is None:
            return
        room.subscribers.discard(subscriber)
        if not room.subscribers and room.loaded.is_set():
            del self.rooms[slug]
            await self.bus.unsubscribe(slug)

    async def publish(self, slug: str, event: dict[str, Any]) -> None:
        await self.bus.publish(slug, encode(event))

    def receive(self, slug: str, frame: str) -> None:
        """A frame from the bus: remembered once, fanned out to this process's sockets."""
        room = self.rooms.get(slug)
        if room is None:
            return
        try:
            event = json.loads(frame)
        except ValueError:
            log.warning("chat %s: dropped a frame that is not JSON", slug)
            return
        room.remember(event)
        room.deliver(frame)

    def deliver_local(self, slug: str, event: dict[str, Any]) -> None:
        """To this process's sockets of a room only (viewer counts, which each process
        reads for itself)."""
        room = self.rooms.get(slug)
        if room is not None:
            room.deliver(encode(event))

    async def _count_viewers(self) -> None:
        """Every few seconds, each room's viewer count to its sockets here: one read per
        process for all its rooms, so the watch page's figure moves without polling."""
        assert self._counts is not None
        while True:
            await asyncio.sleep(VIEWER_EVERY)
            try:
                slugs = list(self.rooms)
                if not slugs:
                    continue
                counts = await self._counts(slugs)
                for slug, count in counts.items():
                    room = self.rooms.get(slug)
                    if room is not None and count != room.viewers:
                        room.viewers = count
                        room.deliver(encode({"t": "viewers", "n": count}))
            except Exception:
                log.exception("viewer counts for chat rooms failed")

    async def resync(self) -> None:
        """After a bus outage: every room's history and modes afresh, to every socket."""
        for room in list(self.rooms.values()):
            room.history.clear()
            room.state = {}
            await self._fill(room)
            room.deliver(encode(history_event(room, resync=True)))
            if room.state:
                room.deliver(encode(room.state))


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def history_event(room: RoomState, *, resync: bool = False) -> dict[str, Any]:
    return {"t": "history", "messages": list(room.history), "resync": resync}


class MemoryBus:
    """One process: publishing is delivering."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def publish(self, room: str, frame: str) -> None:
        self.hub.receive(room, frame)

    async def subscribe(self, room: str) -> None:
        return None

    async def unsubscribe(self, room: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


class RedisBus:
    """One Redis pub/sub connection per process, subscribed to the rooms it has sockets in."""

    def __init__(self, hub: Hub, url: str, prefix: str = "golive:chat") -> None:
        import redis.asyncio as aioredis

        self.hub = hub
        self.prefix = prefix
        self._url = url
        self._publisher = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._pubsub: Any = None
        self._rooms: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._broken = False
        self.reconnects = 0

    def _channel(self, room: str) -> str:
        return f"{self.prefix}:{room}"

    async def publish(self, room: str, frame: str) -> None:
        await self._publisher.publish(self._channel(room), frame)

    async def subscribe(self, room: str) -> None:
        # One lock for every (un)subscription and reconnect: redis-py opens a second
        # connection if two coroutines issue the first command of a PubSub at once.
        async with self._lock:
            self._rooms.add(room)
            if self._pubsub is None:
                self._pubsub = self._new_pubsub()
                self._reader = asyncio.get_running_loop().create_task(self._read())
            with contextlib.suppress(Exception):  # the reader resubscribes after an outage
                await self._pubsub.subscribe(self._channel(room))

    async def unsubscribe(self, room: str) -> None:
        async with self._lock:
            self._rooms.discard(room)
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(self._channel(room))

    def _new_pubsub(self) -> Any:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self._url, socket_connect_timeout=5)
        return client.pubsub(ignore_subscribe_messages=True)

    async def _read(self) -> None:
        delay = 0.1
        cut = len(self.prefix) + 1
        while True:
            try:
                if self._broken:
                    raise ConnectionError("the last reconnect failed")
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
                delay = 0.1
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"]
                data = message["data"]
                self.hub.receive(
                    (channel.decode() if isinstance(channel, bytes) else channel)[cut:],
                    data.decode() if isinstance(data, bytes) else data,
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("chat bus lost Redis (%s); reconnecting in %.1f s", error, delay)
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter)
                delay = min(delay * 2, 5.0)
                async with self._lock:
                    self._pubsub = self._new_pubsub()
                    try:
                        if self._rooms:
                            await self._pubsub.subscribe(
                                *(self._channel(r) for r in self._rooms)
                            )
                    except Exception as again:
                        log.warning("chat bus: Redis still unreachable (%s)", again)
                        self._broken = True
                        continue
                self._broken = False
                self.reconnects += 1
                log.info("chat bus reconnected: resyncing %d room(s)", len(self.hub.rooms))
                await self.hub.resync()

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._publisher.aclose()


_lock = threading.Lock()
_hubs: dict[int, Hub] = {}


def get_hub() -> Hub:
    """This event loop's hub (a Redis client belongs to the loop that made it)."""
    key = id(asyncio.get_running_loop())
    with _lock:
        hub = _hubs.get(key)
        if hub is None:
            from viewers.counter import viewer_counts

            from .service import load_room

            hub = _hubs[key] = Hub(load_room, viewer_counts().acounts)
            if settings.REDIS_URL:
                hub.bus = RedisBus(hub, settings.REDIS_URL, prefix=chat_prefix())
        return hub


def chat_prefix() -> str:
    return f"{getattr(settings, 'GOLIVE_REDIS_PREFIX', 'golive')}:chat"
