"""What a deal owes for one period: pure functions over dates, session intervals and cents.

Nothing here reads the database or the clock, so the worked examples in the tests call
`calculate` directly with the values they wrote down by hand. The rules, which every
calculation also spells out in its lines:

- A period is a calendar month in UTC, half-open: [the 1st 00:00, the next 1st 00:00).
- A deal's term is inclusive of both its dates. What is measured is the window where the
  term and the period overlap.
- Hours: each live session's interval clipped to that window; a session still live counts
  up to now or the window's end, whichever is earlier. Summed exactly, then whole seconds.
- Streams: a session is one stream of the window in which it *started*. A session crossing
  midnight at a month's end gives its hours to both months but counts as a stream once, in
  the month where it started.
- Partial months: the guarantee and both minimums are prorated by the term's days inside
  the month over the days in the month; the prorated minimum stream count is rounded up.
- Missed requirements: "pro rata" pays the guarantee times the lesser of hours/required
  hours and streams/required streams (each capped at 1); "nothing" pays no guarantee when
  either minimum is missed. A per-hour deal is already paid by the hour, so pro rata changes
  nothing for it, while "nothing" pays 0 when a minimum is missed.
- Minimum guarantee plus revenue share pays the greater of the (prorated, shortfall-
  adjusted) guarantee and the share of the period's revenue.
- Money is integer cents. Arithmetic in between is exact (`Fraction`); the total is rounded
  once, to the cent, half up (x.5 cents goes up). Never float.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import StrEnum
from fractions import Fraction

from .money import Money

BASIS_POINTS = 10_000
SECONDS_PER_HOUR = 3600


class DealKind(StrEnum):
    FLAT = "flat"
    MINIMUM_PLUS_SHARE = "minimum_plus_share"
    PER_HOUR = "per_hour"


class Shortfall(StrEnum):
    PRO_RATA = "pro_rata"
    NOTHING = "nothing"


class CalculationError(ValueError):
    """The inputs cannot describe a payout (for instance the term misses the period)."""


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A calendar month in UTC."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 2000 <= self.year <= 9998:
            raise CalculationError(f"{self.year}-{self.month:02} is not a usable month")

    @classmethod
    def parse(cls, text: str) -> Period:
        """`YYYY-MM` → Period. Raises CalculationError for anything else."""
        year, dash, month = text.strip().partition("-")
        if not (dash and year.isdigit() and month.isdigit() and len(year) == 4):
            raise CalculationError(f"{text!r} is not a month written YYYY-MM")
        return cls(int(year), int(month))

    @classmethod
    def of(cls, day: date) -> Period:
        return cls(day.year, day.month)

    @classmethod
    def containing(cls, moment: datetime) -> Period:
        return cls.of(moment.astimezone(UTC).date())

    @property
    def label(self) -> str:
        return f"{self.year}-{self.month:02}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def end_day(self) -> date:
        """The first day after the period."""
        return self.next().first_day

    @property
    def days(self) -> int:
        return (self.end_day - self.first_day).days

    @property
    def start_at(self) -> datetime:
        return midnight(self.first_day)

    @property
    def end_at(self) -> datetime:
        return midnight(self.end_day)

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def __str__(self) -> str:
        return self.label


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Terms:
    """A deal's terms as plain values. ``amount_cents`` is per month, or per hour."""

    kind: DealKind
    amount_cents: int
    currency: str
    starts_on: date
    ends_on: date  # inclusive
    min_hours: Decimal
    min_streams: int
    shortfall: Shortfall
    revenue_share_bps: int = 0


@dataclass(frozen=True, slots=True)
class Session:
    started_at: datetime
    ended_at: datetime | None  # None: still live
    peak_viewers: int = 0  # 0: not known


@dataclass(frozen=True, slots=True)
class Activity:
    """What a streamer did inside a window."""

    seconds: int
    streams: int
    peak_viewers: int | None  # None: no session reported a peak


@dataclass(frozen=True, slots=True)
class Requirements:
    """The minimums for one period, prorated when the term covers only part of it."""

    term_days: int
    period_days: int
    seconds: Fraction
    streams: int

    @property
    def factor(self) -> Fraction:
        return Fraction(self.term_days, self.period_days)

    @property
    def partial(self) -> bool:
        return self.term_days < self.period_days

    def met_by(self, activity: Activity) -> bool:
        return activity.seconds >= self.seconds and activity.streams >= self.streams


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    detail: str
    amount_cents: int | None = None


@dataclass(frozen=True, slots=True)
class Calculation:
    amount_cents: int
    currency: str
    activity: Activity
    requirements: Requirements
    lines: tuple[Line, ...]

    @property
    def requirements_met(self) -> bool:
        return self.requirements.met_by(self.activity)


def term_window(terms: Terms, period: Period) -> tuple[datetime, datetime] | None:
    """Where the term and the period overlap, as UTC datetimes; None when they do not."""
    start = max(period.first_day, terms.starts_on)
    end = min(period.end_day, terms.ends_on + timedelta(days=1))
    if start >= end:
        return None
    return midnight(start), midnight(end)


def measure(
    sessions: Iterable[Session], start: datetime, end: datetime, *, now: datetime
) -> Activity:
    """Hours clipped to [start, end), streams started inside it, the highest known peak."""
    streamed = timedelta(0)
    streams = 0
    peak: int | None = None
    for session in sessions:
        stop = session.ended_at if session.ended_at is not None else min(now, end)
        overlap = min(stop, end) - max(session.started_at, start)
        if overlap > timedelta(0):
            streamed += overlap
        if start <= session.started_at < end:
            streams += 1
        inside = overlap > timedelta(0) or start <= session.started_at < end
        if inside and session.peak_viewers > 0:
            peak = max(peak or 0, session.peak_viewers)
    return Activity(streamed // timedelta(seconds=1), streams, peak)


def requirements(terms: Terms, period: Period) -> Requirements:
    window = term_window(terms, period)
    if window is None:
        raise CalculationError(
            f"the term {terms.starts_on} → {terms.ends_on} does not cover {period}"
        )
    term_days = (window[1] - window[0]).days
    factor = Fraction(term_days, period.days)
    return Requirements(
        term_days=term_days,
        period_days=period.days,
        seconds=Fraction(terms.min_hours) * SECONDS_PER_HOUR * factor,
        streams=math.ceil(terms.min_streams * factor),
    )


def calculate(
    terms: Terms,
    period: Period,
    sessions: Iterable[Session],
    *,
    now: datetime,
    revenue_cents: int | None = None,
) -> Calculation:
    """The amount a deal owes for a period and the lines that explain it.

    ``revenue_cents`` is the period's revenue for a revenue share; None means golive has
    no revenue source to report (today's case), which the lines say. Raises
    CalculationError when the term does not cover the period. Pure and deterministic.
    """
    window = term_window(terms, period)
    required = requirements(terms, period)
    assert window is not None  # requirements() raised otherwise
    activity = measure(sessions, *window, now=now)
    money = Money(terms.currency)
    lines = [
        Line(
            "period",
            f"{period} in UTC: {period.first_day} 00:00 to {period.end_day} 00:00, "
            f"{period.days} days",
        ),
        _term_line(terms, period, required),
        Line(
            "hours streamed",
            f"{hours(activity.seconds)} h ({activity.seconds} s): live sessions clipped to "
            f"{window[0]:%Y-%m-%d %H:%M} to {window[1]:%Y-%m-%d %H:%M} UTC; a session still "
            "live counts up to now or the period's end, whichever is earlier",
        ),
        Line(
            "streams",
            f"{activity.streams}: sessions that started inside the window (a session "
            "crossing a period boundary counts in the period where it started)",
        ),
        _viewers_line(activity),
        _hours_requirement_line(terms, required, activity),
        _streams_requirement_line(terms, required, activity),
    ]
    if terms.kind == DealKind.PER_HOUR:
        exact = _per_hour(terms, required, activity, money, lines)
    else:
        exact = _guarantee(terms, required, activity, money, lines)
        if terms.kind == DealKind.MINIMUM_PLUS_SHARE:
            exact = _share(terms, exact, revenue_cents, money, lines)
    amount = round_half_up(exact)
    lines.append(
        Line(
            "payable",
            f"{money.exact(exact)} rounded once to the cent, half up: {money(amount)} "
            f"{terms.currency}",
            amount,
        )
    )
    return Calculation(amount, terms.currency, activity, required, tuple(lines))


def _term_line(terms: Terms, period: Period, required: Requirements) -> Line:
    covered = f"term {terms.starts_on} → {terms.ends_on} (both days included)"
    if not required.partial:
        return Line("term", f"{covered} covers all {period.days} days of {period}")
    return Line(
        "term",
        f"{covered} covers {required.term_days} of {period.days} days of {period}: "
        f"guarantee and minimums prorated by {required.term_days}/{period.days}",
    )


def _viewers_line(activity: Activity) -> Line:
    peak = (
        f"peak {activity.peak_viewers:,} (the highest session peak)"
        if activity.peak_viewers is not None
        else "peak unknown (no session reported one)"
    )
    return Line("viewers", f"{peak}; average unknown (live sessions record only their peak)")


def _hours_requirement_line(terms: Terms, required: Requirements, activity: Activity) -> Line:
    minimum = f"{hours_exact(Fraction(terms.min_hours) * SECONDS_PER_HOUR)} h"
    if required.partial:
        minimum += (
            f" x {required.term_days}/{required.period_days} = "
            f"{hours_exact(required.seconds)} h"
        )
    verdict = "met" if activity.seconds >= required.seconds else "missed"
    return Line("minimum hours", f"{minimum}; streamed {hours(activity.seconds)} h: {verdict}")


def _streams_requirement_line(
    terms: Terms, required: Requirements, activity: Activity
) -> Line:
    minimum = str(terms.min_streams)
    if required.partial:
        minimum += (
            f" x {required.term_days}/{required.period_days} rounded up = {required.streams}"
        )
    verdict = "met" if activity.streams >= required.streams else "missed"
    return Line("minimum streams", f"{minimum}; streamed {activity.streams}: {verdict}")


def _guarantee(
    terms: Terms, required: Requirements, activity: Activity, money: Money, lines: list[Line]
) -> Fraction:
    name = "flat monthly guarantee" if terms.kind == DealKind.FLAT else "minimum guarantee"
    base = Fraction(terms.amount_cents) * required.factor
    if required.partial:
        detail = (
            f"{name} {money(terms.amount_cents)} x {required.term_days}/"
            f"{required.period_days} = {money.exact(base)}"
        )
    else:
        detail = f"{name} {money(terms.amount_cents)} for the whole month"
    lines.append(Line("guarantee", detail))
    if required.met_by(activity):
        lines.append(Line("requirements", "all minimums met: the guarantee is paid in full"))
        return base
    if terms.shortfall == Shortfall.NOTHING:
        return _nothing_paid(money, lines)
    hours_ratio = _ratio(Fraction(activity.seconds), required.seconds)
    streams_ratio = _ratio(Fraction(activity.streams), Fraction(required.streams))
    ratio = min(hours_ratio, streams_ratio)
    paid = base * ratio
    lines.append(
        Line(
            "requirements",
            f"a minimum was missed; the deal pays pro rata: hours "
            f"{hours(activity.seconds)} h of {hours_exact(required.seconds)} h = "
            f"{_fraction_text(hours_ratio)}, streams {activity.streams} of "
            f"{required.streams} = {_fraction_text(streams_ratio)} (each capped at 1); "
            f"at the lesser, {money.exact(base)} x {_fraction_text(ratio)} = "
            f"{money.exact(paid)}",
        )
    )
    return paid


def _nothing_paid(money: Money, lines: list[Line]) -> Fraction:
    lines.append(
        Line("requirements", f"a minimum was missed and the deal says nothing is paid: {money(0)}")
    )
    return Fraction(0)


def _per_hour(
    terms: Terms, required: Requirements, activity: Activity, money: Money, lines: list[Line]
) -> Fraction:
    earned = Fraction(terms.amount_cents * activity.seconds, SECONDS_PER_HOUR)
    lines.append(
        Line(
            "hourly pay",
            f"{money(terms.amount_cents)} per hour x {activity.seconds} s / 3600 = "
            f"{money.exact(earned)}",
        )
    )
    if required.met_by(activity):
        lines.append(Line("requirements", "all minimums met: every hour is paid"))
        return earned
    if terms.shortfall == Shortfall.NOTHING:
        return _nothing_paid(money, lines)
    lines.append(
        Line(
            "requirements",
            "a minimum was missed; the deal pays pro rata, which an hourly rate already is: "
            "every hour is paid",
        )
    )
    return earned


def _share(
    terms: Terms,
    guarantee: Fraction,
    revenue_cents: int | None,
    money: Money,
    lines: list[Line],
) -> Fraction:
    percent = Decimal(terms.revenue_share_bps) / 100
    if revenue_cents is None:
        share = Fraction(0)
        detail = (
            f"revenue share {percent}%: no revenue recorded (golive has no revenue source "
            f"yet), so the share is {money(0)}"
        )
    else:
        share = Fraction(revenue_cents * terms.revenue_share_bps, BASIS_POINTS)
        detail = f"revenue share {percent}% of {money(revenue_cents)} = {money.exact(share)}"
    lines.append(Line("revenue share", detail))
    paid = max(guarantee, share)
    lines.append(
        Line(
            "guarantee or share",
            f"the greater of the guarantee {money.exact(guarantee)} and the share "
            f"{money.exact(share)}: {money.exact(paid)}",
        )
    )
    return paid


def _ratio(done: Fraction, needed: Fraction) -> Fraction:
    return Fraction(1) if needed <= 0 else min(Fraction(1), done / needed)


def _fraction_text(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def round_half_up(value: Fraction) -> int:
    """The nearest whole number, halves rounded up. ``value`` must not be negative."""
    if value < 0:
        raise CalculationError(f"a payout cannot be negative ({value})")
    return math.floor(value + Fraction(1, 2))


def hours(seconds: int) -> Decimal:
    """Hours to two decimal places, for display."""
    return hours_exact(Fraction(seconds))


def hours_exact(seconds: Fraction) -> Decimal:
    return _decimal(seconds / SECONDS_PER_HOUR, "0.01")


def _decimal(value: Fraction, places: str) -> Decimal:
    with localcontext() as context:
        context.prec = 40
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        return exact.quantize(Decimal(places), rounding=ROUND_HALF_UP)
