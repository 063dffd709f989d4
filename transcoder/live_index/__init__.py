"""The live index: the hot, ephemeral store of a rendition's recent parts and segments.

The packager publishes parts and segments; the LL-HLS origin waits for parts (blocking
playlist reload), snapshots a rendition's window to render its playlist and serves part
bytes. `MemoryLiveIndex` serves the embedded mode (one process), `RedisLiveIndex` the
cluster (ingest writes, N origin processes read). One contract suite runs against both.
"""

from __future__ import annotations

from typing import Any

from transcoder.live_index.memory import MemoryLiveIndex
from transcoder.live_index.model import (
    DEFAULT_TTL_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    FencedError,
    LiveIndex,
    LiveIndexError,
    OrderError,
    PartRef,
    Position,
    RenditionWindow,
    SegmentRef,
    StreamEndedError,
    UnknownRenditionError,
)

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "DEFAULT_WINDOW_SECONDS",
    "FencedError",
    "LiveIndex",
    "LiveIndexError",
    "MemoryLiveIndex",
    "OrderError",
    "PartRef",
    "Position",
    "RenditionWindow",
    "SegmentRef",
    "StreamEndedError",
    "UnknownRenditionError",
    "open_live_index",
]


def open_live_index(redis_url: str | None = None, **options: Any) -> LiveIndex:
    """The Redis index when ``redis_url`` is set (cluster mode), else the memory one.
    ``options`` go to the implementation (``window_seconds``, ``ttl_seconds`` …)."""
    if redis_url:
        from transcoder.live_index.redis_index import RedisLiveIndex

        return RedisLiveIndex.from_url(redis_url, **options)
    return MemoryLiveIndex(**options)
