"""What the capacity page shows: live streams against the quota over the last day, how
publishes fared, and the health of every live session.

The functions taking rows are pure (tests give them hand-built intervals and changes);
the `load_` ones run a fixed handful of queries, never one per sample or per stream.
Times are aware datetimes; the page shows them in the site's time zone (UTC by default).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, Sum
from django.utils import timezone

from streams.broadcasts import lease_ttl
from streams.models import LiveSession

from .models import AdmissionTally, QuotaChange, ServerQuota, SlotLease
from .tally import hour_of

WINDOW = timedelta(hours=24)
STEP = timedelta(minutes=5)

# A publish's interval: from its start to its end, None while it is still open.
Interval = tuple[datetime, datetime | None]


@dataclass(frozen=True, slots=True)
class Limits:
    max_streams: int
    partner_reserve: int

    @property
    def open_to_all(self) -> int:
        """Slots a non-partner channel may use: the quota less the partner reserve."""
        return max(0, self.max_streams - self.partner_reserve)


@dataclass(frozen=True, slots=True)
class Series:
    """Live streams and the limits in force at each of ``instants`` (ascending)."""

    instants: tuple[datetime, ...]
    live: tuple[int, ...]
    limits: tuple[Limits, ...]
    peak: int
    peak_at: datetime | None


def sample_instants(
    end: datetime, window: timedelta = WINDOW, step: timedelta = STEP
) -> list[datetime]:
    """``window // step`` instants, ``step`` apart, the last one ``end``."""
    count = window // step
    return [end - (count - 1 - i) * step for i in range(count)]


def live_counts(intervals: Iterable[Interval], instants: Sequence[datetime]) -> list[int]:
    """How many intervals hold each instant (``start <= t < end``; an open one holds every
    instant from its start). One sort and a sweep: O((n + m) log n)."""
    starts: list[datetime] = []
    ends: list[datetime] = []
    for start, end in intervals:
        if end is not None and end <= start:
            continue  # never live at any instant
        starts.append(start)
        if end is not None:
            ends.append(end)
    starts.sort()
    ends.sort()
    # Every interval ended by t had started by t, so started - ended is what is open.
    return [bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t) for t in instants]


def peak_live(
    intervals: Iterable[Interval], since: datetime, until: datetime
) -> tuple[int, datetime | None]:
    """The most intervals open at once within [since, until], and the first instant it
    happened (None when nothing was live). Exact, not sampled: short bursts count."""
    events: list[tuple[datetime, int]] = []
    for start, end in intervals:
        if end is not None and (end <= start or end <= since):
            continue
        events.append((max(start, since), 1))
        if end is not None:
            events.append((end, -1))
    # At one instant, ends come before starts: an interval is open until, not at, its end.
    events.sort(key=lambda event: (event[0], event[1]))
    live = best = 0
    best_at: datetime | None = None
    for at, change in events:
        if at > until:
            break
        live += change
        if live > best:
            best, best_at = live, at
    return best, best_at


def limits_at(
    changes: Sequence[tuple[datetime, dict[str, Any], dict[str, Any]]],
    current: Limits,
    instants: Sequence[datetime],
) -> list[Limits]:
    """The limits in force at each instant, from the audit trail: before a change, its
    ``old`` values held; after the last change, ``current`` holds. ``changes`` are
    (changed_at, old, new) in ascending time and need go back no further than the
    first instant."""
    times = [changed_at for changed_at, _, _ in changes]
    befores = [_limits(old, current) for _, old, _ in changes]
    result = []
    for t in instants:
        following = bisect.bisect_right(times, t)  # the first change after t
        result.append(befores[following] if following < len(changes) else current)
    return result


def _limits(values: dict[str, Any], fallback: Limits) -> Limits:
    return Limits(
        int(values.get("max_streams", fallback.max_streams)),
        int(values.get("partner_reserve", fallback.partner_reserve)),
    )


def load_series(
    now: datetime, quota: ServerQuota, window: timedelta = WINDOW, step: timedelta = STEP
) -> Series:
    """Two queries: sessions overlapping the window, quota changes within it. ``quota``
    is the row as it is now (the limits after the last change)."""
    instants = sample_instants(now, window, step)
    since = instants[0]
    intervals = list(
        LiveSession.objects.filter(started_at__lte=now)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=since))
        .values_list("started_at", "ended_at")
    )
    changes = list(
        QuotaChange.objects.filter(changed_at__gt=since)
        .order_by("changed_at", "id")
        .values_list("changed_at", "old", "new")
    )
    current = Limits(quota.max_streams, quota.partner_reserve)
    peak, peak_at = peak_live(intervals, since, now)
    return Series(
        tuple(instants),
        tuple(live_counts(intervals, instants)),
        tuple(limits_at(changes, current, instants)),
        peak,
        peak_at,
    )


# --- Admissions ------------------------------------------------------------------------

# What each refusal reason means to ops; reasons not listed are shown as they are.
REFUSAL_REASONS = {
    "unknown_key": "unknown or revoked stream key",
    "banned": "channel banned",
    "already_live": "channel already live",
    "capacity": "platform at its stream quota",
    "partner_reserve": "only partner slots left",
    "cooldown": "channel in its force-stop cool-down",
}


@dataclass(frozen=True, slots=True)
class Refusals:
    reason: str
    count: int

    @property
    def meaning(self) -> str:
        return REFUSAL_REASONS.get(self.reason, "")


@dataclass(frozen=True, slots=True)
class Admissions:
    """Tallies from the hour starting ``since`` (a whole UTC hour) to now."""

    since: datetime
    totals: dict[str, int]  # every AdmissionTally.Result, zero when none
    refusals: tuple[Refusals, ...]  # most frequent first

    @property
    def refused(self) -> int:
        return self.totals[AdmissionTally.Result.REFUSED]


def tally_admissions(since: datetime, rows: Iterable[tuple[str, str, int]]) -> Admissions:
    """Sums (result, reason, count) rows by result, and refusals by reason."""
    totals = dict.fromkeys(AdmissionTally.Result.values, 0)
    by_reason: dict[str, int] = {}
    for result, reason, count in rows:
        totals[result] = totals.get(result, 0) + count
        if result == AdmissionTally.Result.REFUSED:
            by_reason[reason] = by_reason.get(reason, 0) + count
    ordered = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    return Admissions(since, totals, tuple(Refusals(reason, n) for reason, n in ordered))


def load_admissions(now: datetime, window: timedelta = WINDOW) -> Admissions:
    """The last ``window`` in whole UTC hours, the current one included: at 14:30 and a
    24-hour window, from 15:00 the day before (tallies are hourly)."""
    since = hour_of(now - window) + timedelta(hours=1)
    rows = (
        AdmissionTally.objects.filter(hour__gte=since)
        .values_list("result", "reason")
        .annotate(total=Sum("count"))
        .order_by()
    )
    return tally_admissions(since, rows)


# --- Live sessions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveRow:
    """One live session as the page lists it; health figures are None when unknown."""

    session_id: int
    channel: str
    partner: bool
    node: str
    started_at: datetime
    duration: timedelta
    resolution: str
    video_codec: str
    audio_codec: str
    frame_rate: float | None
    bitrate_kbps: float | None
    keyframe_interval_ms: int | None
    lag_ms: int | None
    heartbeat_age: timedelta | None
    stale: bool
    disconnected: bool
    transcoded: bool
    lease_expires_at: datetime | None
    lease_left: timedelta | None  # negative once overdue (the reaper has not run yet)

    @property
    def lease_overdue(self) -> bool:
        return self.lease_left is not None and self.lease_left < timedelta(0)

    @property
    def duration_text(self) -> str:
        return format_duration(self.duration)

    @property
    def heartbeat_text(self) -> str:
        if self.heartbeat_age is None:
            return "none yet"
        return f"{format_duration(self.heartbeat_age)} ago"

    @property
    def lease_text(self) -> str:
        if self.lease_left is None:
            return "no lease"
        if self.lease_overdue:
            return f"expired {format_duration(-self.lease_left)} ago"
        return f"in {format_duration(self.lease_left)}"


def format_duration(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def stale_after() -> timedelta:
    """A heartbeat older than a lease lasts means the ingest has stopped reporting."""
    return lease_ttl()


def live_row(session: LiveSession, lease: SlotLease | None, now: datetime) -> LiveRow:
    health = session.health if isinstance(session.health, dict) else {}
    heartbeat_age = now - session.last_heartbeat_at if session.last_heartbeat_at else None
    # Never heard from: stale once it has been open as long as a heartbeat may be late.
    silent_for = heartbeat_age if heartbeat_age is not None else now - session.started_at
    measured_fps = _number(health.get("frame_rate"))
    return LiveRow(
        session_id=session.pk,
        channel=session.channel.slug,
        partner=session.channel.is_partner,
        node=session.ingest_node,
        started_at=session.started_at,
        duration=now - session.started_at,
        resolution=session.resolution,
        video_codec=session.video_codec,
        audio_codec=session.audio_codec,
        frame_rate=measured_fps or (float(session.frame_rate) if session.frame_rate else None),
        bitrate_kbps=_number(health.get("bitrate_kbps")),
        keyframe_interval_ms=_whole(health.get("keyframe_interval_ms")),
        lag_ms=_whole(health.get("lag_ms")),
        heartbeat_age=heartbeat_age,
        stale=silent_for > stale_after(),
        disconnected=session.disconnected_at is not None,
        transcoded=session.transcoded,
        lease_expires_at=lease.expires_at if lease else None,
        lease_left=lease.expires_at - now if lease else None,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _whole(value: object) -> int | None:
    number = _number(value)
    return None if number is None else round(number)


def load_live_rows(now: datetime) -> list[LiveRow]:
    """Every open session (those within a reconnect grace too: they hold a slot), oldest
    first. One query."""
    sessions = (
        LiveSession.objects.filter(ended_at__isnull=True)
        .select_related("channel", "lease")
        .order_by("started_at", "pk")
    )
    return [live_row(session, getattr(session, "lease", None), now) for session in sessions]


# --- The chart -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # pixels along the axis
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Geometry of the capacity chart in SVG user units; the template only draws it."""

    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    live_points: str
    live_area: str
    quota_points: str
    open_points: str  # max_streams - partner_reserve
    has_reserve: bool
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]


def nice_step(span: float, ticks: int = 5) -> int:
    """A 1-2-5 step giving about ``ticks`` intervals over ``span`` (at least 1)."""
    raw = max(span / ticks, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * magnitude:
            return int(multiple * magnitude)
    return int(10 * magnitude)  # pragma: no cover (the loop always returns)


def draw(series: Series, width: int = 960, height: int = 320) -> Chart:
    left, right, top, bottom = 56, width - 16, 40, height - 36
    plot_width, plot_height = right - left, bottom - top
    highest = max([1, *series.live, *(limits.max_streams for limits in series.limits)])
    step = nice_step(highest * 1.05)
    y_max = math.ceil(highest * 1.05 / step) * step
    start, end = series.instants[0], series.instants[-1]
    span = (end - start).total_seconds() or 1.0

    def x(at: datetime) -> float:
        return round(left + (at - start).total_seconds() / span * plot_width, 1)

    def y(value: int) -> float:
        return round(bottom - value / y_max * plot_height, 1)

    xs = [x(at) for at in series.instants]
    live = [f"{px},{y(value)}" for px, value in zip(xs, series.live, strict=True)]
    hours = []
    first_hour = timezone.localtime(start).replace(minute=0, second=0, microsecond=0)
    at = first_hour if first_hour >= start else first_hour + timedelta(hours=1)
    while at <= end:
        local = timezone.localtime(at)
        hours.append(Tick(x(at), f"{local:%H}:00" if local.hour % 3 == 0 else ""))
        at += timedelta(hours=1)
    return Chart(
        width=width,
        height=height,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        live_points=" ".join(live),
        live_area=" ".join([f"{xs[0]},{bottom}", *live, f"{xs[-1]},{bottom}"]),
        quota_points=_steps(xs, [y(limits.max_streams) for limits in series.limits]),
        open_points=_steps(xs, [y(limits.open_to_all) for limits in series.limits]),
        has_reserve=any(limits.partner_reserve for limits in series.limits),
        x_ticks=tuple(hours),
        y_ticks=tuple(Tick(y(value), str(value)) for value in range(0, y_max + 1, step)),
    )


def _steps(xs: Sequence[float], ys: Sequence[float]) -> str:
    """A step line: a level holds until the sample where it changes."""
    points = [f"{xs[0]},{ys[0]}"]
    for i in range(1, len(xs)):
        if ys[i] != ys[i - 1]:
            points.append(f"{xs[i]},{ys[i - 1]}")
        points.append(f"{xs[i]},{ys[i]}")
    return " ".join(points)
