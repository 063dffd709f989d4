"""Celery tasks of the cluster's transcode sessions (`delivery.transcode_cluster` holds
the logic): one long task per broadcast on the `transcode` queue, and the check beat
runs every second.

A session task runs for as long as its broadcast. It is acknowledged when it starts, not
when it ends: acked late, the Redis broker would hand it to another worker once its
visibility timeout (an hour) passed while it still ran. A worker takes one such task per
process (``--concurrency``; settings.CELERY_WORKER_DISABLE_PREFETCH keeps it from
reserving more than it can start). No time limit: it ends with its broadcast.
"""

from __future__ import annotations

from celery import shared_task

from .transcode_cluster import run_session, supervise_transcodes


@shared_task(
    name="delivery.transcode_session",
    acks_late=False,
    ignore_result=True,
    time_limit=None,
    soft_time_limit=None,
)
def transcode_session(session_id: int) -> str:
    return run_session(session_id)


@shared_task(name="delivery.supervise_transcodes", ignore_result=True)
def supervise_transcodes_task() -> int:
    return supervise_transcodes()
