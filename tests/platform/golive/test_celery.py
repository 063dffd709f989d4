"""The periodic work is scheduled in one place, and every scheduled task exists."""

from __future__ import annotations

from django.conf import settings

from golive.celery import app


def test_every_scheduled_task_is_registered() -> None:
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {"delivery.expire_recordings", "deals.close_payout_period",
                         "delivery.supervise_transcodes"}
    assert scheduled <= set(app.tasks)
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE


def test_transcode_sessions_have_their_own_queue_and_run_as_long_as_a_broadcast() -> None:
    """A session runs as long as its broadcast: on the transcode workers' queue, acked
    when it starts (never redelivered by the broker's visibility timeout), not cut off
    after the project's minute; a worker reserves no task it has no free process for."""
    from delivery.transcode_tasks import SESSION_TIME_LIMIT

    app.loader.import_default_modules()
    task = app.tasks["delivery.transcode_session"]
    assert app.amqp.router.route({}, task.name)["queue"].name == "transcode"
    assert task.acks_late is False
    assert task.time_limit == SESSION_TIME_LIMIT >= 7 * 24 * 3600
    assert task.soft_time_limit > 7 * 24 * 3600
    assert app.conf.worker_disable_prefetch is True
    assert app.conf.worker_prefetch_multiplier == 1
    supervise = app.tasks["delivery.supervise_transcodes"]
    assert app.amqp.router.route({}, supervise.name)["queue"].name == "celery"
