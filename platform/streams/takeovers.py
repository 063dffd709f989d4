"""Takeover requests between ingest nodes, in Redis, and which nodes are alive.

An encoder that reconnects to another ingest node than the one still holding its old
(silent) connection asks that node to let go: the request waits in a set per node, which
the node's housekeeping empties every second (`PlatformIngest`) and answers by ending the
publish if it is silent. The same round trip renews the node's "alive" mark, which lapses
ALIVE_TTL seconds after a node dies: a reconnect then need not wait for the lease of the
dead node's session to expire. Without Redis there is one ingest node, and nothing to ask.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# A request not taken within this many seconds is dropped (its node is gone).
REQUEST_TTL = 10
# A node not heard of for this long is dead (it renews its mark every second).
ALIVE_TTL = 5


@cache
def _redis(url: str) -> redis.Redis:
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _key(node: str) -> str:
    return f"{settings.GOLIVE_REDIS_PREFIX}:takeover:{node}"


def _alive_key(node: str) -> str:
    return f"{settings.GOLIVE_REDIS_PREFIX}:node-alive:{node}"


def is_alive(node: str) -> bool:
    """Whether ``node`` renewed its mark within ALIVE_TTL. True when that cannot be known
    (no Redis, or Redis unreachable): a node is never declared dead on a doubt."""
    if not settings.REDIS_URL:
        return True
    try:
        return bool(_redis(settings.REDIS_URL).exists(_alive_key(node)))
    except Exception as error:
        log.warning("could not tell whether ingest node %s is alive: %s", node, error)
        return True


def request(node: str, session_id: int) -> bool:
    """Asks ``node`` to end its publish of ``session_id`` if silent. False when there is
    no Redis to carry the request."""
    if not settings.REDIS_URL:
        return False
    try:
        with _redis(settings.REDIS_URL).pipeline(transaction=True) as pipe:
            pipe.sadd(_key(node), str(session_id))
            pipe.expire(_key(node), REQUEST_TTL)
            pipe.execute()
    except Exception as error:
        log.warning("could not ask %s to hand session %d over: %s", node, session_id, error)
        return False
    return True


def take_requests(node: str) -> list[int]:
    """Marks ``node`` alive; returns the sessions other nodes asked it to hand over, once
    each. Called every second by the node's housekeeping (and once as it starts)."""
    if not settings.REDIS_URL:
        return []
    try:
        with _redis(settings.REDIS_URL).pipeline(transaction=True) as pipe:
            pipe.set(_alive_key(node), "1", ex=ALIVE_TTL)
            pipe.smembers(_key(node))
            pipe.delete(_key(node))
            _, members, _ = pipe.execute()
    except Exception as error:  # the rest of the housekeeping goes on
        log.warning("could not read takeover requests for %s: %s", node, error)
        return []
    return [int(member) for member in members]


def forget(node: str) -> None:
    """Drops ``node``'s alive mark (it is stopping)."""
    if settings.REDIS_URL:
        try:
            _redis(settings.REDIS_URL).delete(_alive_key(node))
        except Exception as error:
            log.warning("could not drop the alive mark of %s: %s", node, error)
