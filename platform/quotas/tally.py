"""Counting admissions into the hourly `AdmissionTally` rows.

Every admission decision is counted, and all of an hour's decisions of one kind land on
one row: written at once, a surge of publishes would queue on that row's lock (each
commit holding it) and pay a round trip and a commit each, on the way to its answer. So a
process that decides many admissions (the ingest) defers: `defer()` makes `count` add to
a buffer in memory, and its housekeeping `flush()`es it every second, one statement per
kind. What a crash loses is at most that second's counts; the counts are for people and
dashboards, never for deciding (the slot ledger and the leases decide).
"""

from __future__ import annotations

import threading
from collections import Counter
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


class _Buffer:
    """Counts waiting to be written, by (hour, result, reason); shared by the threads a
    process decides admissions on."""

    def __init__(self) -> None:
        self.deferred = False
        self._counts: Counter[tuple[datetime, str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, hour: datetime, result: str, reason: str, n: int) -> None:
        with self._lock:
            self._counts[(hour, result, reason)] += n

    def take(self) -> Counter[tuple[datetime, str, str]]:
        with self._lock:
            taken, self._counts = self._counts, Counter()
        return taken

    def give_back(self, counts: Counter[tuple[datetime, str, str]]) -> None:
        with self._lock:
            self._counts.update(counts)


_buffer = _Buffer()


def defer(on: bool = True) -> None:
    """From now on (in this process) `count` buffers and `flush` writes. Turning it off
    writes nothing: flush first."""
    _buffer.deferred = on


def flush() -> int:
    """Writes the buffered counts (one statement per hour, result and reason); returns
    how many decisions it wrote. What could not be written is kept for the next flush."""
    pending = _buffer.take()
    written = 0
    try:
        for (hour, result, reason), n in list(pending.items()):
            _write(hour, result, reason, n)
            written += n
            del pending[(hour, result, reason)]
    finally:
        if pending:
            _buffer.give_back(pending)
    return written


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
    hour = hour_of(at or timezone.now())
    if _buffer.deferred:
        # After the caller's transaction commits (at once outside one): a decision
        # rolled back is not counted, as with the write.
        transaction.on_commit(lambda: _buffer.add(hour, result, reason, n))
        return
    _write(hour, result, reason, n)


def _write(hour: datetime, result: str, reason: str, n: int) -> None:
    row = {"hour": hour, "result": result, "reason": reason}
    if AdmissionTally.objects.filter(**row).update(count=F("count") + n):
        return
    try:
        with transaction.atomic():
            AdmissionTally.objects.create(**row, count=n)
    except IntegrityError:
        # Someone created the hour's row between our update and insert: it exists now.
        AdmissionTally.objects.filter(**row).update(count=F("count") + n)
