"""Periodic delivery work for Celery beat (cluster mode); `manage.py up` runs the same
function in-process, and `manage.py expire_recordings` is there for cron."""

from __future__ import annotations

from celery import shared_task

from .retention import expire_recordings

# The cluster's transcode session tasks live beside their logic; imported here, where
# Celery's autodiscovery looks, so every worker knows them.
from .transcode_tasks import supervise_transcodes_task, transcode_session

__all__ = ["expire_recordings_task", "supervise_transcodes_task", "transcode_session"]


@shared_task(name="delivery.expire_recordings")
def expire_recordings_task() -> dict[str, int]:
    expired = expire_recordings()
    return {"sessions": expired.sessions, "objects": expired.objects}
