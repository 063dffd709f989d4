"""The periodic work is scheduled in one place, and every scheduled task exists."""

from __future__ import annotations

from django.conf import settings

from golive.celery import app


def test_every_scheduled_task_is_registered() -> None:
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {"delivery.expire_recordings", "deals.close_payout_period"}
    assert scheduled <= set(app.tasks)
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE
