"""Celery tasks of the cluster's transcode sessions (`delivery.transcode_cluster` holds
the logic): one long task per broadcast on the `transcode` queue, and the check beat
runs every second.

A session task runs for as long as its broadcast. It is acknowledged when it starts, not
when it ends: acked late, the Redis broker would hand it to another worker once its
visibility timeout (an hour) passed while it still ran. A worker takes one such task per
process (``--concurrency``; settings.CELERY_WORKER_DISABLE_PREFETCH keeps it from
reserving more than it can start).
"""

from __future__ import annotations

from celery import shared_task

from .transcode_cluster import run_session, supervise_transcodes

# A session's time limits. Celery has no "none" for one task: a task without its own
# falls back on the project's (60 s soft, 90 s hard) and on the worker's, which would end
# every session after a minute. A month is longer than any broadcast should take one
# process; past it the process is ended, its lease lapses and the session starts again
# on a fresh one (one segment's gap on the rungs).
SESSION_TIME_LIMIT = 30 * 24 * 3600


@shared_task(
    name="delivery.transcode_session",
    acks_late=False,
    ignore_result=True,
    time_limit=SESSION_TIME_LIMIT,
    soft_time_limit=SESSION_TIME_LIMIT - 60,
)
def transcode_session(session_id: int) -> str:
    return run_session(session_id)


@shared_task(name="delivery.supervise_transcodes", ignore_result=True)
def supervise_transcodes_task() -> int:
    return supervise_transcodes()
