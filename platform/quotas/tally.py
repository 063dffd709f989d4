"""Counting admissions into the hourly `AdmissionTally` rows."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import AdmissionTally

Result = AdmissionTally.Result
_REASON_LENGTH = AdmissionTally._meta.get_field("reason").max_length or 32


def hour_of(at: datetime) -> datetime:
    """The UTC hour ``at`` (an aware datetime) falls in: the key of its tally row."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def count(result: str, reason: str = "", n: int = 1, at: datetime | None = None) -> None:
    """Adds ``n`` to the tally of ``result``/``reason`` for the hour of ``at`` (default now).

    Safe under concurrency on SQLite and PostgreSQL: an increment in the database
    (``count + n``), and when the hour's row does not exist yet, an insert whose unique
    constraint makes a concurrent inserter fall back to the increment. Usable inside the
    caller's transaction (the insert runs in a savepoint). Not idempotent: each call counts.
    Raises ValueError for a result outside `AdmissionTally.Result`, a reason longer than
    the column, or ``n`` < 1.
    """
    if result not in AdmissionTally.Result.values:
        raise ValueError(f"unknown admission result {result!r}")
    if len(reason) > _REASON_LENGTH:
        raise ValueError(f"reason {reason!r} is longer than {_REASON_LENGTH} characters")
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    row = {"hour": hour_of(at or timezone.now()), "result": result, "reason": reason}
    if AdmissionTally.objects.filter(**row).update(count=F("count") + n):
        return
    try:
        with transaction.atomic():
            AdmissionTally.objects.create(**row, count=n)
    except IntegrityError:
        # Someone created the hour's row between our update and insert: it exists now.
        AdmissionTally.objects.filter(**row).update(count=F("count") + n)
