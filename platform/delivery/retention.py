"""Retention of recordings: a broadcast's segments stay in the segment store, as its VOD,
for GOLIVE_VOD_RETENTION_DAYS after it ended, then go. The live window needs nothing
here: the live index trims itself."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from golive.db import database_call
from streams.models import LiveSession
from streams.recordings import mark_recording_deleted

from .live import recording_prefix
from .segment_store import SegmentStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Expired:
    sessions: int
    objects: int


def expire_recordings(
    *,
    days: int | None = None,
    now: datetime | None = None,
    store: SegmentStore | None = None,
    dry_run: bool = False,
) -> Expired:
    """Deletes the recordings of broadcasts that ended more than ``days`` ago (default:
    the setting; 0 keeps everything) and marks them deleted. Idempotent; a recording whose
    deletion fails is left for the next run."""
    days = settings.GOLIVE_VOD_RETENTION_DAYS if days is None else days
    if days <= 0:
        return Expired(0, 0)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    due = LiveSession.objects.filter(
        ended_at__lt=cutoff, recording_deleted_at__isnull=True
    ).values_list("pk", flat=True)
    if dry_run:
        return Expired(due.count(), 0)
    store = store or SegmentStore()
    sessions = objects = 0
    for session_id in due.iterator():
        try:
            objects += store.delete_tree(recording_prefix(session_id))
        except Exception:
            log.exception("could not delete the recording of session %d", session_id)
            continue
        mark_recording_deleted(session_id)
        sessions += 1
    if sessions:
        log.info("retention: deleted %d recording(s), %d object(s)", sessions, objects)
    return Expired(sessions, objects)


async def expire_recordings_periodically(interval: float = 3600.0) -> None:
    """The embedded mode's stand-in for Celery beat: `expire_recordings` every hour."""

    # Not on asgiref's shared thread: VOD writes of live broadcasts run there, and a long
    # deletion must not hold them up.
    run = sync_to_async(database_call(expire_recordings), thread_sensitive=False)
    while True:
        try:
            await run()
        except Exception:
            log.exception("retention run failed")
        await asyncio.sleep(interval)
