"""The chat's process-wide services: database workers, the limiter, room loading."""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from django.conf import settings

from streams.gatekeeper import DatabaseWorkers

from . import actions
from .limits import Limiter, MemoryLimiter, RedisLimiter

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_workers: DatabaseWorkers | None = None


def database(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``function`` run on the chat's own database threads (a few, each with its own
    connection), never on the event loop, never one thread per socket."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        global _workers
        with _lock:
            if _workers is None:
                _workers = DatabaseWorkers(size=4)
            workers = _workers
        return workers.wrap(function)(*args, **kwargs)

    return call


@functools.cache
def limiter() -> Limiter:
    if settings.REDIS_URL:
        import redis

        from .hub import chat_prefix

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5,
                                      socket_connect_timeout=5)
        return RedisLimiter(client, prefix=chat_prefix())
    return MemoryLimiter()


def _load(slug: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    room = actions.find_room(slug)
    if room is None:
        return [], {}
    return actions.recent_messages(room), actions.room_state(room)


load_room = database(_load)
