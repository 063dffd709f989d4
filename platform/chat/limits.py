"""Chat rate limits: per user, per room (with sampling past the cap) and slow mode.

Counters live in Redis in a cluster (every origin process sees the same counts) and in
memory when embedded. Both answer in O(1) and keep no state per message beyond a few
short-lived keys. Called from the send path's worker thread (sync).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Twitch: 20 messages per 30 s for viewers, 100 for moderators and the broadcaster.
USER_WINDOW = 30.0
VIEWER_LIMIT = 20
MODERATOR_LIMIT = 100
# Amazon IVS chat: 10 messages a second for a room; past it messages are sampled.
ROOM_PER_SECOND = 10


@dataclass(frozen=True, slots=True)
class Limits:
    user_window: float = USER_WINDOW
    viewer_limit: int = VIEWER_LIMIT
    moderator_limit: int = MODERATOR_LIMIT
    room_per_second: int = ROOM_PER_SECOND


class Limiter(Protocol):
    def hit(self, key: str, limit: int, window: float) -> float | None:
        """Counts one event under ``key``; None if within ``limit`` per fixed ``window``
        seconds, else the seconds until the window resets."""

    def claim(self, key: str, seconds: float) -> float | None:
        """Takes ``key`` for ``seconds`` (slow mode); None if taken now, else the seconds
        it stays held."""

    def room_second(self, room: str) -> tuple[int, int]:
        """Counts one message in this second of ``room``: (count so far this second, count
        in the previous second)."""


def sampled(
    limiter: Limiter, room: str, cap: int, rand: Callable[[], float] = random.random
) -> bool:
    """Whether a room message may pass the room cap. Under the cap every message passes.
    When the previous second went over, each message passes with probability
    cap / previous, so a surge lets a fair sample through rather than the fastest
    senders; the cap itself is never exceeded within a second."""
    current, previous = limiter.room_second(room)
    if current > cap:
        return False
    if previous > cap:
        return rand() < cap / previous
    return True


class MemoryLimiter:
    """The embedded mode's limiter: one process, so counts in a dict under a lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}
        self._held: dict[str, float] = {}
        self._seconds: dict[str, tuple[int, int, int]] = {}
        self._calls = 0

    def hit(self, key: str, limit: int, window: float) -> float | None:
        now = self._clock()
        with self._lock:
            self._sweep(now)
            start, count = self._windows.get(key, (now, 0))
            if now - start >= window:
                start, count = now, 0
            count += 1
            self._windows[key] = (start, count)
            return None if count <= limit else start + window - now

    def claim(self, key: str, seconds: float) -> float | None:
        now = self._clock()
        with self._lock:
            until = self._held.get(key, 0.0)
            if until > now:
                return until - now
            self._held[key] = now + seconds
            return None

    def room_second(self, room: str) -> tuple[int, int]:
        second = int(self._clock())
        with self._lock:
            at, current, previous = self._seconds.get(room, (second, 0, 0))
            if at != second:
                previous = current if at == second - 1 else 0
                current = 0
            current += 1
            self._seconds[room] = (second, current, previous)
            return current, previous

    def _sweep(self, now: float) -> None:
        # Every thousand calls: drop what has expired, so memory follows active users.
        self._calls += 1
        if self._calls % 1000:
            return
        self._windows = {k: v for k, v in self._windows.items() if now - v[0] < 3600}
        self._held = {k: v for k, v in self._held.items() if v > now}


class RedisLimiter:
    """Shared by every process of a cluster. Fixed windows (INCR + EXPIRE on first hit)
    and SET NX PX for slow mode: one round trip each."""

    def __init__(self, client: object, prefix: str = "golive:chat") -> None:
        import redis

        assert isinstance(client, redis.Redis)
        self._redis = client
        self._prefix = prefix

    def hit(self, key: str, limit: int, window: float) -> float | None:
        name = f"{self._prefix}:rate:{key}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.pttl(name)
        count, ttl = pipe.execute()
        if ttl is None or int(ttl) < 0:
            self._redis.pexpire(name, int(window * 1000))
            ttl = int(window * 1000)
        return None if int(count) <= limit else int(ttl) / 1000

    def claim(self, key: str, seconds: float) -> float | None:
        name = f"{self._prefix}:slow:{key}"
        if self._redis.set(name, b"1", nx=True, px=max(1, int(seconds * 1000))):
            return None
        ttl = self._redis.pttl(name)
        return max(0.0, int(ttl or 0) / 1000) or None

    def room_second(self, room: str) -> tuple[int, int]:
        second = int(time.time())
        now_key = f"{self._prefix}:room:{room}:{second}"
        pipe = self._redis.pipeline()
        pipe.incr(now_key)
        pipe.expire(now_key, 3)
        pipe.get(f"{self._prefix}:room:{room}:{second - 1}")
        current, _, previous = pipe.execute()
        return int(current), int(previous or 0)


def retry_words(seconds: float) -> str:
    whole = max(1, math.ceil(seconds))
    return f"{whole} second{'s' if whole != 1 else ''}"
