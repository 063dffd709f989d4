"""Takeover requests between ingest nodes, in Redis.

An encoder that reconnects to another ingest node than the one still holding its old
(silent) connection asks that node to let go: the request waits in a set per node, which
the node's housekeeping empties every second (`PlatformIngest`) and answers by ending the
publish if it is silent. Without Redis there is one ingest node, and no request to make.
"""

from __future__ import annotations

import logging
from functools import cache

from django.conf import settings

log = logging.getLogger(__name__)

# A request not taken within this many seconds is dropped (its node is gone).
REQUEST_TTL = 10


@cache
def _redis(url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _key(node: str) -> str:
    return f"{settings.GOLIVE_REDIS_PREFIX}:takeover:{node}"


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
    """The sessions other nodes asked this node to hand over, once each."""
    if not settings.REDIS_URL:
        return []
    with _redis(settings.REDIS_URL).pipeline(transaction=True) as pipe:
        pipe.smembers(_key(node))
        pipe.delete(_key(node))
        members, _ = pipe.execute()
    return [int(member) for member in members]
