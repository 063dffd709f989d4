"""Is a deal's figure what the admin meant? Hard limits refuse; warnings ask for a second look.

Pure: terms in, sentences out. The admin form shows the warnings and saves only once the
admin ticks "I have checked the figures"; `deals.actions.save_deal` refuses unconfirmed
warnings too, so no other caller can skip them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .calculation import DealKind, Period, Terms
from .money import Money

# The usual range of a monthly guarantee. Outside it is allowed (the biggest names get
# bigger packages) once an admin confirms the figure.
USUAL_MINIMUM_CENTS = 100_000
USUAL_MAXIMUM_CENTS = 1_000_000
# The usual range of a per-hour rate: 40 to 100 hours a month at these rates lands near
# the monthly guarantees above.
USUAL_HOURLY_MINIMUM_CENTS = 1_000
USUAL_HOURLY_MAXIMUM_CENTS = 25_000
# Above this many hours a day on average, a monthly minimum is implausible, if possible.
PLAUSIBLE_HOURS_PER_DAY = 10


@dataclass(frozen=True, slots=True)
class Review:
    """What is wrong with terms (``errors``, by form field) and what deserves a look."""

    errors: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def shortest_month(starts_on: date, ends_on: date) -> Period:
    """The shortest calendar month the term touches (the first one of that length)."""
    months: list[Period] = []
    month = Period.of(starts_on)
    while month.first_day <= ends_on and len(months) < 12:  # 12 months hold every length
        months.append(month)
        month = month.next()
    return min(months or [Period.of(starts_on)], key=lambda m: (m.days, m))


def review(terms: Terms) -> Review:
    """Hard limits and warnings for a deal's terms.

    Hard: a flat or per-hour deal that pays nothing; more minimum hours a month than the
    shortest month of the term has. Warnings: a guarantee outside the usual $1,000 to
    $10,000 a month, a per-hour rate outside $10 to $250, no committed hours or streams
    on a guarantee (paid for nothing), more than 10 hours a day on average.
    """
    money = Money(terms.currency)
    errors: dict[str, str] = {}
    warnings: list[str] = []
    per_hour = terms.kind == DealKind.PER_HOUR
    unit = "an hour" if per_hour else "a month"
    if terms.amount_cents == 0 and terms.kind != DealKind.MINIMUM_PLUS_SHARE:
        errors["amount"] = f"{money(0)} {unit}: a deal that pays nothing is not a deal."
    elif per_hour:
        warnings += _outside(
            money, terms.amount_cents, USUAL_HOURLY_MINIMUM_CENTS, USUAL_HOURLY_MAXIMUM_CENTS,
            "an hour", "per-hour rate",
        )
    else:
        warnings += _outside(
            money, terms.amount_cents, USUAL_MINIMUM_CENTS, USUAL_MAXIMUM_CENTS, "a month",
            "guarantee",
        )
    if terms.starts_on <= terms.ends_on:
        month = shortest_month(terms.starts_on, terms.ends_on)
        month_hours = month.days * 24
        if terms.min_hours > month_hours:
            errors["min_hours"] = (
                f"{terms.min_hours} hours a month cannot be streamed: {month} has "
                f"{month_hours} hours."
            )
        elif terms.min_hours > month.days * PLAUSIBLE_HOURS_PER_DAY:
            warnings.append(
                f"{terms.min_hours} minimum hours a month is more than "
                f"{PLAUSIBLE_HOURS_PER_DAY} hours a day in {month}: check the figure."
            )
    if not per_hour and terms.amount_cents > 0:
        guarantee = f"the guarantee ({money(terms.amount_cents)} a month)"
        if terms.min_hours == 0 and terms.min_streams == 0:
            warnings.append(
                f"0 committed hours and 0 streams: {guarantee} is paid in full even if the "
                "streamer never goes live."
            )
        elif terms.min_hours == 0:
            warnings.append(
                f"0 committed hours: {guarantee} is paid in full for "
                f"{terms.min_streams} stream(s) of any length."
            )
        elif terms.min_streams == 0:
            warnings.append(
                f"0 committed streams: {guarantee} is paid for the hours alone, "
                "in one sitting if need be."
            )
    return Review(errors, tuple(warnings))


def _outside(
    money: Money, cents: int, low: int, high: int, unit: str, name: str
) -> list[str]:
    if cents > high:
        return [
            f"{money(cents)} {unit} is above the usual {money(high)} for a {name}: fine for "
            "a negotiated package, check the figure."
        ]
    if cents < low:
        return [f"{money(cents)} {unit} is below the usual {money(low)} for a {name}: check "
                "the figure."]
    return []
