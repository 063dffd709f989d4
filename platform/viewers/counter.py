"""Viewer counts from player heartbeats: a sliding window of tab ids per channel, bounded
per client address.

Each watching tab picks a random id and heartbeats about every 10 s; a channel's count
is the number of distinct tabs heard from in the last `WINDOW` seconds. Redis in a cluster
(one sorted set per channel: tab id scored by its last heartbeat, trimmed on every beat;
all origin processes share it), memory when embedded. Never an ORM write per viewer.

A bot makes up tab ids for free, so each client address (`viewers.addresses`) gets a
budget of beacon requests a minute (`admit`) and counts at most `tabs_per_address` tabs
per channel (a second sorted set per channel and address, checked and written in the same
Lua script as the count: atomic across origin processes, one round trip). Past the cap a
tab still watches and sees the count; it is just not counted.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

# Three missed heartbeats (every 10 s) and a tab no longer counts.
WINDOW = 30.0
TAB = re.compile(r"[A-Za-z0-9_-]{8,64}")
# The beacon budget's window; a fixed window (as the chat's limits), reset on expiry.
BUDGET_WINDOW = 60.0
TABS_PER_ADDRESS = 10
BEACONS_PER_MINUTE = 120


@dataclass(frozen=True, slots=True)
class Beat:
    viewers: int
    # False when the address already has its cap of tabs counted on the channel.
    counted: bool


class ViewerCounts(Protocol):
    async def admit(self, address: str) -> float | None:
        """Counts one beacon request from ``address``: None while within its budget, else
        the seconds until the budget resets (answer 429 with that as Retry-After)."""

    async def beat(self, slug: str, tab: str, address: str) -> Beat:
        """Counts ``tab`` as watching ``slug`` now, unless ``address`` already has its cap
        of other tabs counted there; returns the channel's count."""

    async def leave(self, slug: str, tab: str, address: str) -> int:
        """The tab closed (or stopped playing): it stops counting at once."""

    async def acounts(self, slugs: Sequence[str]) -> dict[str, int]: ...

    def counts(self, slugs: Sequence[str]) -> dict[str, int]:
        """Synchronous, for pages and /metrics: one round trip for any number of slugs."""


class MemoryViewerCounts:
    def __init__(
        self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic, *,
        tabs_per_address: int = TABS_PER_ADDRESS, beacons_per_minute: int = BEACONS_PER_MINUTE,
        budget_window: float = BUDGET_WINDOW,
    ) -> None:
        self.window = window
        self.tabs_per_address = tabs_per_address
        self.beacons_per_minute = beacons_per_minute
        self.budget_window = budget_window
        self._clock = clock
        self._lock = threading.Lock()
        self._tabs: dict[str, dict[str, float]] = {}
        self._by_address: dict[tuple[str, str], dict[str, float]] = {}
        self._budgets: dict[str, tuple[float, int]] = {}
        self._calls = 0

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

    def _address_tabs(self, key: tuple[str, str], now: float) -> dict[str, float]:
        tabs = self._by_address.setdefault(key, {})
        horizon = now - self.window
        for tab in [t for t, seen in tabs.items() if seen < horizon]:
            del tabs[tab]
        return tabs

    def _sweep(self, now: float) -> None:
        # Every thousand calls: drop what expired, so memory follows active addresses.
        self._calls += 1
        if self._calls % 1000:
            return
        horizon = now - self.window
        self._by_address = {
            key: kept for key, tabs in self._by_address.items()
            if (kept := {t: seen for t, seen in tabs.items() if seen >= horizon})
        }
        self._budgets = {
            address: budget for address, budget in self._budgets.items()
            if now - budget[0] < self.budget_window
        }

    async def admit(self, address: str) -> float | None:
        now = self._clock()
        with self._lock:
            self._sweep(now)
            start, used = self._budgets.get(address, (now, 0))
            if now - start >= self.budget_window:
                start, used = now, 0
            used += 1
            self._budgets[address] = (start, used)
            return None if used <= self.beacons_per_minute else start + self.budget_window - now

    async def beat(self, slug: str, tab: str, address: str) -> Beat:
        now = self._clock()
        with self._lock:
            mine = self._address_tabs((slug, address), now)
            counted = tab in mine or len(mine) < self.tabs_per_address
            if counted:
                mine[tab] = now
                self._tabs.setdefault(slug, {})[tab] = now
            elif not mine:
                del self._by_address[(slug, address)]
            return Beat(self._count(slug, now), counted)

    async def leave(self, slug: str, tab: str, address: str) -> int:
        now = self._clock()
        with self._lock:
            self._tabs.get(slug, {}).pop(tab, None)
            mine = self._by_address.get((slug, address))
            if mine is not None:
                mine.pop(tab, None)
                if not mine:
                    del self._by_address[(slug, address)]
            return self._count(slug, now)

    def counts(self, slugs: Sequence[str]) -> dict[str, int]:
        now = self._clock()
        with self._lock:
            return {slug: self._count(slug, now) for slug in slugs}

    async def acounts(self, slugs: Sequence[str]) -> dict[str, int]:
        return self.counts(slugs)


# KEYS: the channel's tabs, this address's tabs on the channel.
# ARGV: now, horizon, tab, the cap of tabs per address, key TTL (s).
_BEAT = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
local counted = 1
if not redis.call('ZSCORE', KEYS[2], ARGV[3])
   and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  counted = 0
else
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {redis.call('ZCARD', KEYS[1]), counted}
"""


class RedisViewerCounts:
    """One Lua script a beat (trim, cap check, ZADD, ZCARD, EXPIRE); one MULTI a budget
    check (SET NX PX, INCR, PTTL). Keys expire two windows after their last write, so
    a channel nobody watches and an address gone quiet leave nothing behind."""

    def __init__(
        self, url: str, prefix: str = "golive:viewers", window: float = WINDOW, *,
        tabs_per_address: int = TABS_PER_ADDRESS, beacons_per_minute: int = BEACONS_PER_MINUTE,
        budget_window: float = BUDGET_WINDOW,
    ) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.window = window
        self.tabs_per_address = tabs_per_address
        self.beacons_per_minute = beacons_per_minute
        self.budget_window = budget_window
        self._sync = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._async: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    # Slugs and address groups hold no ":"-separated part that could make one key
    # another's: "<prefix>:<slug>", "<prefix>:addr:<slug>:<address>", "<prefix>:budget:…".
    def _key(self, slug: str) -> str:
        return f"{self.prefix}:{slug}"

    def _address_key(self, slug: str, address: str) -> str:
        return f"{self.prefix}:addr:{slug}:{address}"

    def _client(self) -> tuple[Any, Any]:
        """This event loop's client and beat script (an asyncio client is bound to its loop)."""
        import redis.asyncio as aioredis

        key = id(asyncio.get_running_loop())
        with self._lock:
            found = self._async.get(key)
            if found is None:
                client = aioredis.Redis.from_url(
                    self.url, socket_timeout=5, socket_connect_timeout=5
                )
                found = self._async[key] = (client, client.register_script(_BEAT))
            return found

    async def admit(self, address: str) -> float | None:
        client, _ = self._client()
        name = f"{self.prefix}:budget:{address}"
        pipe = client.pipeline(transaction=True)
        # SET NX PX starts a window (with its expiry) only when none is running; INCR
        # keeps the expiry. (PEXPIRE NX would need Redis 7.)
        pipe.set(name, 0, px=int(self.budget_window * 1000), nx=True)
        pipe.incr(name)
        pipe.pttl(name)
        _, used, ttl = await pipe.execute()
        if int(used) <= self.beacons_per_minute:
            return None
        return max(int(ttl), 1) / 1000

    async def beat(self, slug: str, tab: str, address: str) -> Beat:
        _, script = self._client()
        now = time.time()
        viewers, counted = await script(
            keys=[self._key(slug), self._address_key(slug, address)],
            args=[now, now - self.window, tab, self.tabs_per_address, int(self.window * 2)],
        )
        return Beat(int(viewers), bool(counted))

    async def leave(self, slug: str, tab: str, address: str) -> int:
        client, _ = self._client()
        key = self._key(slug)
        pipe = client.pipeline(transaction=False)
        pipe.zrem(key, tab)
        pipe.zrem(self._address_key(slug, address), tab)
        pipe.zcount(key, time.time() - self.window, "+inf")
        result = await pipe.execute()
        return int(result[2])

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
        client, _ = self._client()
        horizon = time.time() - self.window
        pipe = client.pipeline(transaction=False)
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
            tabs = settings.GOLIVE_VIEWER_TABS_PER_ADDRESS
            beacons = settings.GOLIVE_BEACONS_PER_MINUTE
            _counts.append(
                RedisViewerCounts(
                    settings.REDIS_URL, prefix=prefix, tabs_per_address=tabs,
                    beacons_per_minute=beacons,
                )
                if settings.REDIS_URL
                else MemoryViewerCounts(tabs_per_address=tabs, beacons_per_minute=beacons)
            )
        return _counts[0]


def reset_for_tests() -> None:
    with _lock:
        _counts.clear()
