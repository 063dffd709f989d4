"""A deal's activity read from live sessions: for a payout, or this period's progress.

Reads only; the numbers come from `deals.calculation`, so the progress bar, the earnings
page, the API and the payout itself agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Prefetch, Q, QuerySet

from streams.models import LiveSession

from .calculation import Activity, Period, Requirements, Session, measure, requirements
from .calculation import term_window as window_of
from .models import Deal


def overlapping(start: datetime, end: datetime) -> QuerySet[LiveSession]:
    """Live sessions that overlap [start, end), still-live ones included."""
    return LiveSession.objects.filter(started_at__lt=end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=start)
    )


def sessions_of(deal: Deal, period: Period) -> list[Session]:
    """The deal's streamer's sessions overlapping the period, as plain values."""
    rows = overlapping(period.start_at, period.end_at).filter(channel__owner_id=deal.streamer_id)
    return as_sessions(rows)


def as_sessions(rows: Iterable[LiveSession]) -> list[Session]:
    return [Session(row.started_at, row.ended_at, row.peak_viewers) for row in rows]


def with_period_sessions(deals: QuerySet[Deal], now: datetime) -> QuerySet[Deal]:
    """Fetches this period's sessions of every listed deal's streamer in one query, and
    every deal's versions in another, for `progress` (a list page would otherwise make
    queries per deal)."""
    period = Period.containing(now)
    sessions = overlapping(period.start_at, period.end_at).order_by()
    return deals.prefetch_related(
        "versions",
        Prefetch("streamer__channel__sessions", queryset=sessions, to_attr="period_sessions"),
    )


def prefetched_sessions(deal: Deal) -> list[Session] | None:
    """The sessions `with_period_sessions` fetched, or None when it was not used."""
    try:
        channel = deal.streamer.channel
    except ObjectDoesNotExist:
        return None
    # The Prefetch's to_attr: an attribute the model does not declare.
    rows: list[LiveSession] | None = getattr(channel, "period_sessions", None)
    return None if rows is None else as_sessions(rows)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a deal is into one period's requirements."""

    period: Period
    activity: Activity
    required: Requirements

    @property
    def hours_percent(self) -> int:
        if self.required.seconds <= 0:
            return 100
        return min(100, int(self.activity.seconds * 100 / self.required.seconds))

    @property
    def met(self) -> bool:
        return self.required.met_by(self.activity)


def progress(
    deal: Deal, now: datetime, sessions: Iterable[Session] | None = None
) -> Progress | None:
    """This period's figures so far, or None when the term does not cover this period.

    Measured against the signed terms in force this month (a draft: its proposal).
    ``sessions`` may be given; else those `with_period_sessions` fetched are used, or they
    are read now. The same period must be meant: the caller passes the same ``now``.
    """
    period = Period.containing(now)
    version = deal.shown_version(max(period.first_day, deal.starts_on))
    if version is None:
        return None
    terms = version.terms(deal)
    window = window_of(terms, period)
    if window is None:
        return None
    if sessions is None:
        sessions = prefetched_sessions(deal)
    if sessions is None:
        sessions = sessions_of(deal, period)
    activity = measure(sessions, *window, now=now)
    return Progress(period, activity, requirements(terms, period))
