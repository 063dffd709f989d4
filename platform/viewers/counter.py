"""Viewer counts from player heartbeats: a sliding window of tab ids per channel.

Each watching tab picks a random id and heartbeats about every 10 s; a channel's count
is the number of distinct tabs heard from in the last `WINDOW` seconds. Redis in a cluster
(one sorted set per channel: tab id scored by its last heartbeat, trimmed on every beat;
all origin processes share it), memory when embedded. Never an ORM write per viewer.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from django.conf import settings

# Three missed heartbeats (every 10 s) and a tab no longer counts.
WINDOW = 30.0
TAB = re.compile(r"[A-Za-z0-9_-]{8,64}")


class ViewerCounts(Protocol):
    async def beat(self, slug: str, tab: str) -> int:
        """Counts ``tab`` as watching ``slug`` now; returns the channel's count."""

    async def leave(self, slug: str, tab: str) -> int:
        """The tab closed (or stopped playing): it stops counting at once."""

    async def acounts(self, slugs: Sequence[str]) -> dict[str, int]: ...

    def counts(self, slugs: Sequence[str]) -> dict[str, int]:
        """Synchronous, for pages and /metrics: one round trip for any number of slugs."""


class MemoryViewerCounts:
    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._tabs: dict[str, dict[str, float]] = {}

    def _count(self, slug: str, now: float) -> int:
        tabs = self._tabs.get(slug)
        if not tabs:
            return 0
        horizon = now - self.window
        for tab in [t for t, seen in tabs.items() if seen < horizon]:
            del tabs[tab]
        if not tabs:
            del self._tabs[slug]
        return len(tabs)

    async def beat(self, slug: str, tab: str) -> int:
        now = self._clock()
        with self._lock:
            self._tabs.setdefault(slug, {})[tab] = now
            return self._count(slug, now)

    async def leave(self, slug: str, tab: str) -> int:
        now = self._clock()
        with self._lock:
            self._tabs.get(slug, {}).pop(tab, None)
            return self._count(slug, now)

    def counts(self, slugs: Sequence[str]) -> dict[str, int]:
        now = self._clock()
        with self._lock:
            return {slug: self._count(slug, now) for slug in slugs}

    async def acounts(self, slugs: Sequence[str]) -> dict[str, int]:
        return self.counts(slugs)


class RedisViewerCounts:
    """ZADD the tab with now, trim what fell out of the window, ZCARD: one pipeline a beat.
    Keys expire two windows after the last beat, so a channel nobody watches leaves none."""

    def __init__(self, url: str, prefix: str = "golive:viewers", window: float = WINDOW) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.window = window
        self._sync = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._async: dict[int, object] = {}
        self._lock = threading.Lock()

    def _key(self, slug: str) -> str:
        return f"{self.prefix}:{slug}"

    def _client(self) -> object:
        import redis.asyncio as aioredis

        key = id(asyncio.get_running_loop())
        with self._lock:
            client = self._async.get(key)
            if client is None:
                client = self._async[key] = aioredis.Redis.from_url(
                    self.url, socket_timeout=5, socket_connect_timeout=5
                )
            return client

    async def beat(self, slug: str, tab: str) -> int:
        now = time.time()
        key = self._key(slug)
        pipe = self._client().pipeline(transaction=False)  # type: ignore[attr-defined]
        pipe.zadd(key, {tab: now})
        pipe.zremrangebyscore(key, "-inf", now - self.window)
        pipe.zcard(key)
        pipe.expire(key, int(self.window * 2))
        result = await pipe.execute()
        return int(result[2])

    async def leave(self, slug: str, tab: str) -> int:
        key = self._key(slug)
        pipe = self._client().pipeline(transaction=False)  # type: ignore[attr-defined]
        pipe.zrem(key, tab)
        pipe.zcount(key, time.time() - self.window, "+inf")
        result = await pipe.execute()
        return int(result[1])

    def counts(self, slugs: Sequence[str]) -> dict[str, int]:
        if not slugs:
            return {}
        horizon = time.time() - self.window
        pipe = self._sync.pipeline(transaction=False)
        for slug in slugs:
            pipe.zcount(self._key(slug), horizon, "+inf")
        return {slug: int(n) for slug, n in zip(slugs, pipe.execute(), strict=True)}

    async def acounts(self, slugs: Sequence[str]) -> dict[str, int]:
        if not slugs:
            return {}
        horizon = time.time() - self.window
        pipe = self._client().pipeline(transaction=False)  # type: ignore[attr-defined]
        for slug in slugs:
            pipe.zcount(self._key(slug), horizon, "+inf")
        return {slug: int(n) for slug, n in zip(slugs, await pipe.execute(), strict=True)}


_lock = threading.Lock()
_counts: list[ViewerCounts] = []


def viewer_counts() -> ViewerCounts:
    """The process's counter: Redis when REDIS_URL is set, else memory."""
    with _lock:
        if not _counts:
            prefix = f"{getattr(settings, 'GOLIVE_REDIS_PREFIX', 'golive')}:viewers"
            _counts.append(
                RedisViewerCounts(settings.REDIS_URL, prefix=prefix)
                if settings.REDIS_URL else MemoryViewerCounts()
            )
        return _counts[0]


def reset_for_tests() -> None:
    with _lock:
        _counts.clear()
