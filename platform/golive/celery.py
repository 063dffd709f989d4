"""Celery wiring. Without a broker (the embedded mode) task bodies run in-process."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "golive.settings")

app = Celery("golive")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
