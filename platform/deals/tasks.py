"""Celery task for the period close: a thin wrapper around `deals.actions.close_period`.

Celery beat runs it early on the 1st of each month (`golive/celery.py`); without a broker,
cron runs `manage.py payouts close` instead. Idempotent: only drafts are recomputed.
"""

from __future__ import annotations

from collections import Counter

from celery import shared_task
from django.utils import timezone

from .actions import close_period
from .calculation import Period


@shared_task(name="deals.close_payout_period", soft_time_limit=600, time_limit=660)
def close_payout_period(period: str | None = None) -> dict[str, object]:
    """Computes draft payouts for ``period`` (YYYY-MM), by default last month in UTC."""
    month = Period.parse(period) if period else Period.containing(timezone.now()).previous()
    results = close_period(month, actor_name="celery beat")
    return {"period": month.label, "outcomes": dict(Counter(r.outcome for r in results))}
