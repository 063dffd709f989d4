"""Which broadcast a channel is on, cached per process, and the session's peak viewers.

A heartbeat must not cost a query, so the channel's live session is looked up at most
every `LOOKUP_TTL` seconds per process, and the peak is written at most every
`PEAK_EVERY` seconds per channel per process (and only when it rose): one UPDATE for a
surge of thousands of viewers, never one per viewer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import close_old_connections

LOOKUP_TTL = 5.0
PEAK_EVERY = 10.0


@dataclass
class _Live:
    looked_up: float
    session_id: int | None
    peak: int = 0
    written_at: float = 0.0


_live: dict[str, _Live] = {}
_pending: set[asyncio.Task[None]] = set()


def _find_session(slug: str) -> int | None:
    from streams.models import LiveSession

    close_old_connections()
    return (
        LiveSession.objects.filter(channel__slug=slug, ended_at__isnull=True)
        .values_list("pk", flat=True)
        .first()
    )


def _raise_peak(session_id: int, count: int) -> None:
    from streams.models import LiveSession

    close_old_connections()
    LiveSession.objects.filter(pk=session_id, peak_viewers__lt=count).update(peak_viewers=count)


async def live_session(slug: str) -> int | None:
    """The channel's live session id, or None (not live, or no such channel)."""
    now = time.monotonic()
    entry = _live.get(slug)
    if entry is None or now - entry.looked_up > LOOKUP_TTL:
        session_id = await sync_to_async(_find_session, thread_sensitive=False)(slug)
        if entry is None or entry.session_id != session_id:
            entry = _Live(now, session_id)
        entry.looked_up = now
        _live[slug] = entry
        if len(_live) > 10_000:  # a flood of made-up slugs must not grow this forever
            for stale in [s for s, e in _live.items() if now - e.looked_up > LOOKUP_TTL]:
                del _live[stale]
    return entry.session_id


def note_count(slug: str, count: int) -> None:
    """Records ``count`` towards the live session's peak, in the background, throttled."""
    entry = _live.get(slug)
    if entry is None or entry.session_id is None or count <= entry.peak:
        return
    now = time.monotonic()
    if now - entry.written_at < PEAK_EVERY and entry.written_at:
        return
    entry.peak, entry.written_at = count, now
    task = asyncio.get_running_loop().create_task(
        sync_to_async(_raise_peak, thread_sensitive=False)(entry.session_id, count)
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def forget() -> None:
    _live.clear()
