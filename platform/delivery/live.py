"""The process's live index and segment store, and the names delivery uses for things."""

from __future__ import annotations

import asyncio
import threading

from django.conf import settings

from transcoder.live_index import LiveIndex, open_live_index
from transcoder.renditions import SOURCE as SOURCE  # re-exported for delivery's users

from .segment_store import SegmentStore


def target_duration() -> int:
    """EXT-X-TARGETDURATION, fixed for a broadcast (settings.GOLIVE_HLS_TARGET_DURATION)."""
    return int(settings.GOLIVE_HLS_TARGET_DURATION)


def part_target() -> float:
    """EXT-X-PART-INF PART-TARGET, seconds (settings.GOLIVE_HLS_PART_TARGET): what the
    packager cuts parts to, fixed for a broadcast by its ingest."""
    return float(settings.GOLIVE_HLS_PART_TARGET)


def part_hold_back_parts(*, ladder: bool = False) -> float:
    """PART-HOLD-BACK in parts, set by the origin: settings.GOLIVE_HLS_PART_HOLD_BACK for
    a broadcast that goes out source-only, GOLIVE_HLS_LADDER_PART_HOLD_BACK in every
    playlist of one with a quality ladder (a rung's part comes after the source's by its
    encoding, and a switch must load another rendition within what is buffered)."""
    if ladder:
        return float(settings.GOLIVE_HLS_LADDER_PART_HOLD_BACK)
    return float(settings.GOLIVE_HLS_PART_HOLD_BACK)


# A blocking playlist request waits at most this many target durations (draft: 3).
BLOCK_TARGETS = 3

_lock = threading.Lock()
_indexes: dict[int, LiveIndex] = {}


def live_index() -> LiveIndex:
    """This event loop's live index: Redis when REDIS_URL is set, else one memory index
    shared by the whole process (the ingest and the origin of the embedded mode).

    A Redis client is bound to the loop that created it, hence one per loop.
    """
    if not settings.REDIS_URL:
        with _lock:
            return _indexes.setdefault(0, open_live_index(None))
    key = id(asyncio.get_running_loop())
    with _lock:
        if key not in _indexes:
            _indexes[key] = open_live_index(
                settings.REDIS_URL, prefix=settings.GOLIVE_REDIS_PREFIX
            )
        return _indexes[key]


def stream_name(session_id: int) -> str:
    """Index stream of a live session. A new session is a new stream, so part and segment
    URIs never repeat across broadcasts and may be cached as immutable."""
    return f"s{session_id}"


def recording_prefix(session_id: int) -> str:
    """The segment-store folder holding everything of one broadcast."""
    return f"live/{session_id}"


def store_path(session_id: int, rendition: str, name: str) -> str:
    return f"{recording_prefix(session_id)}/{rendition}/{name}"


def segment_store() -> SegmentStore:
    return SegmentStore()
