"""How busy this origin process is, and the cap that keeps it answering under a surge.

Per process, no ORM, no lock of our own (one event loop per origin process):
- requests counted per object kind (`golive_origin_requests_total{object}`);
- held requests: blocking playlist reloads and preload-hinted parts waiting for their part.
  Each costs ~21 KiB and no thread, but every one must be answered when its part lands, so
  a process holding too many answers late (1,000 woken at once took 0.1-0.3 s here, and
  at 500 viewers straight to one origin parts took ~1 s to the first byte). Past
  GOLIVE_ORIGIN_MAX_HELD the origin answers 503 with Retry-After at once (`shed`), which
  players back off from and the edge retries on another origin; requests for objects that
  already exist are never refused (they cost a millisecond).

In the cluster each origin process reports its figures to Redis every `REPORT_EVERY`
seconds (a hash per process that expires when the process stops reporting), so the
capacity page shows every origin; in the embedded mode the page reads this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from redis.typing import FieldT

log = logging.getLogger(__name__)

OBJECTS = ("master", "playlist", "blocking_playlist", "part", "segment", "init")

REQUESTS = Counter(
    "golive_origin_requests",
    "Requests for LL-HLS objects answered by this origin process, by object kind.",
    ["object"],
)
SHED = Counter(
    "golive_origin_shed",
    "Blocking requests this origin process answered 503 + Retry-After at once because it "
    "already held GOLIVE_ORIGIN_MAX_HELD.",
)
HELD = Gauge(
    "golive_origin_held_requests",
    "Requests this origin process holds now (blocking reloads and hinted parts waiting).",
)
HELD_LIMIT = Gauge(
    "golive_origin_held_requests_limit", "GOLIVE_ORIGIN_MAX_HELD: held requests past which "
    "this origin process sheds new blocking requests.",
)
_COUNTERS = {kind: REQUESTS.labels(object=kind) for kind in OBJECTS}

REPORT_EVERY = 2.0
REPORT_PREFIX = "golive:origin-load:"


class OriginLoad:
    """This process's held requests and request counts (one instance: `LOAD`)."""

    def __init__(self) -> None:
        self.held = 0
        self.requests = 0
        self.shed = 0
        HELD.set_function(lambda: self.held)
        HELD_LIMIT.set_function(max_held)

    def count(self, kind: str) -> None:
        self.requests += 1
        _COUNTERS[kind].inc()
        if settings.REDIS_URL:
            _ensure_reporter()

    def hold(self) -> bool:
        """Takes a held slot; False (and counted as shed) when the process is full.
        Every True must be followed by `release()`."""
        if self.held >= max_held():
            self.shed += 1
            SHED.inc()
            return False
        self.held += 1
        return True

    def release(self) -> None:
        self.held -= 1


def max_held() -> int:
    return int(settings.GOLIVE_ORIGIN_MAX_HELD)


LOAD = OriginLoad()


@dataclass(frozen=True, slots=True)
class OriginFigures:
    """One origin process's load as the capacity page shows it."""

    name: str
    held: int
    limit: int
    requests_per_second: float
    shed_per_second: float
    age: float  # seconds since it reported


# -- reporting (cluster mode) -------------------------------------------------------------

_reporters: dict[int, asyncio.Task[None]] = {}


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _ensure_reporter() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    key = id(loop)
    task = _reporters.get(key)
    if task is None or task.done():
        _reporters[key] = loop.create_task(_report_forever())


async def _report_forever() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    name = REPORT_PREFIX + process_name()
    last_requests, last_shed, last_at = LOAD.requests, LOAD.shed, time.monotonic()
    try:
        while True:
            await asyncio.sleep(REPORT_EVERY)
            now = time.monotonic()
            span = max(now - last_at, 1e-6)
            figures: dict[FieldT, float] = {
                "held": LOAD.held,
                "limit": max_held(),
                "rps": round((LOAD.requests - last_requests) / span, 2),
                "shed_rps": round((LOAD.shed - last_shed) / span, 2),
                "at": time.time(),
            }
            last_requests, last_shed, last_at = LOAD.requests, LOAD.shed, now
            try:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.hset(name, mapping=figures)
                    pipe.expire(name, int(REPORT_EVERY * 5))
                    await pipe.execute()
            except Exception as error:  # Redis away: the origin goes on serving
                log.debug("origin load report failed: %s", error)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def read_origin_load() -> list[OriginFigures]:
    """Every origin process that reported lately (cluster), or this process (embedded)."""
    if not settings.REDIS_URL:
        return [OriginFigures(process_name(), LOAD.held, max_held(), 0.0, 0.0, 0.0)]
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    try:
        names = sorted(client.scan_iter(match=REPORT_PREFIX + "*", count=200))[:200]
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(name)
            rows = pipe.execute()
    except redis.RedisError as error:
        log.warning("cannot read origin load from Redis: %s", error)
        return []
    finally:
        client.close()
    now = time.time()
    figures = []
    for name, row in zip(names, rows, strict=True):
        if not row:
            continue
        values = {key.decode(): float(value) for key, value in row.items()}
        figures.append(
            OriginFigures(
                name.decode().removeprefix(REPORT_PREFIX),
                int(values.get("held", 0)),
                int(values.get("limit", 0)),
                values.get("rps", 0.0),
                values.get("shed_rps", 0.0),
                max(0.0, now - values.get("at", now)),
            )
        )
    return figures
