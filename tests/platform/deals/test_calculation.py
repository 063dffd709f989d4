"""Worked examples for `deals.calculation`, each computed by hand in the test.

March 2025 has 31 days; every example uses it unless it says otherwise.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from deals.calculation import (
    CalculationError,
    DealKind,
    Period,
    Session,
    Shortfall,
    Terms,
    calculate,
    round_half_up,
)
from deals.money import format_money

MARCH = Period(2025, 3)
AFTER_MARCH = datetime(2025, 4, 2, tzinfo=UTC)


def at(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


def sessions(count: int, length: timedelta, *, first_day: int = 1, peak: int = 0) -> list[Session]:
    """One session a day at 18:00 UTC, from ``first_day`` on."""
    return [
        Session(at(first_day + n, 18), at(first_day + n, 18) + length, peak)
        for n in range(count)
    ]


def terms(
    kind: DealKind = DealKind.FLAT,
    *,
    amount_cents: int,
    starts_on: date = date(2025, 1, 1),
    ends_on: date = date(2025, 12, 31),
    min_hours: str = "40",
    min_streams: int = 8,
    shortfall: Shortfall = Shortfall.PRO_RATA,
    revenue_share_bps: int = 0,
) -> Terms:
    return Terms(
        kind=kind,
        amount_cents=amount_cents,
        currency="USD",
        starts_on=starts_on,
        ends_on=ends_on,
        min_hours=Decimal(min_hours),
        min_streams=min_streams,
        shortfall=shortfall,
        revenue_share_bps=revenue_share_bps,
    )


def test_a_full_month_that_meets_the_requirement_pays_the_whole_guarantee() -> None:
    deal = terms(amount_cents=500_000)  # $5,000 a month, 40 h and 8 streams minimum
    played = sessions(9, timedelta(hours=5), peak=340)  # 9 * 5 h = 45 h ≥ 40 h; 9 ≥ 8
    result = calculate(deal, MARCH, played, now=AFTER_MARCH)
    assert result.activity.seconds == 45 * 3600
    assert result.activity.streams == 9
    assert result.activity.peak_viewers == 340
    assert result.requirements_met
    assert result.amount_cents == 500_000  # $5,000.00
    assert result.lines[-1].amount_cents == 500_000
    assert "$5,000.00 USD" in result.lines[-1].detail


def test_missed_hours_under_pro_rata_pay_the_hours_fraction() -> None:
    deal = terms(amount_cents=500_000, shortfall=Shortfall.PRO_RATA)
    # 8 sessions of 3 h 38 min 45 s = 8 * 13,125 s = 105,000 s (29.17 h) of 144,000 s (40 h);
    # 8 streams meet the stream minimum.
    played = sessions(8, timedelta(hours=3, minutes=38, seconds=45))
    result = calculate(deal, MARCH, played, now=AFTER_MARCH)
    assert result.activity.seconds == 105_000
    assert not result.requirements_met
    # 500,000 * 105,000 / 144,000 = 364,583.33… → 364,583 cents
    assert result.amount_cents == 364_583
    assert "29.17 h of 40.00 h = 35/48" in result.lines[-2].detail


def test_missed_streams_under_pro_rata_pay_the_lesser_ratio() -> None:
    deal = terms(amount_cents=500_000, shortfall=Shortfall.PRO_RATA)
    played = sessions(6, timedelta(hours=8))  # 48 h meets 40 h; 6 of 8 streams
    result = calculate(deal, MARCH, played, now=AFTER_MARCH)
    # hours ratio capped at 1, streams ratio 6/8: 500,000 * 6/8 = 375,000 cents
    assert result.amount_cents == 375_000


@pytest.mark.parametrize(
    ("count", "length"),
    [
        (8, timedelta(hours=3, minutes=38, seconds=45)),  # hours short: 29.17 h of 40
        (6, timedelta(hours=8)),  # streams short: 6 of 8, hours fine
    ],
)
def test_any_missed_minimum_under_nothing_pays_zero(count: int, length: timedelta) -> None:
    deal = terms(amount_cents=500_000, shortfall=Shortfall.NOTHING)
    result = calculate(deal, MARCH, sessions(count, length), now=AFTER_MARCH)
    assert result.amount_cents == 0
    assert "nothing is paid" in result.lines[-2].detail


def test_a_deal_starting_mid_month_prorates_guarantee_and_minimums() -> None:
    # Term from 15 March: days 15..31 = 17 of March's 31.
    deal = terms(amount_cents=300_000, starts_on=date(2025, 3, 15), ends_on=date(2026, 3, 14))
    before_the_term = Session(at(10, 12), at(10, 22), 900)  # 10 h on 10 March: not counted
    # Minimums: 40 h * 17/31 = 21.94 h; 8 * 17/31 = 4.39 → 5 streams.
    played = [before_the_term, *sessions(5, timedelta(hours=4, minutes=30), first_day=16)]
    result = calculate(deal, MARCH, played, now=AFTER_MARCH)
    assert result.requirements.term_days == 17
    assert result.requirements.streams == 5
    assert result.activity.seconds == 5 * 16_200  # 22.5 h ≥ 21.94 h
    assert result.activity.streams == 5
    assert result.activity.peak_viewers is None  # the only peak was before the term
    # 300,000 * 17/31 = 164,516.13 → 164,516 cents
    assert result.amount_cents == 164_516
    assert "17/31" in result.lines[1].detail


def test_a_mid_month_start_that_misses_its_prorated_hours_is_paid_pro_rata() -> None:
    deal = terms(amount_cents=300_000, starts_on=date(2025, 3, 15), ends_on=date(2026, 3, 14))
    played = sessions(5, timedelta(hours=4), first_day=16)  # 20 h = 72,000 s
    result = calculate(deal, MARCH, played, now=AFTER_MARCH)
    # (300,000 * 17/31) * 72,000 / (144,000 * 17/31) = 300,000 * 72,000/144,000 = 150,000
    assert result.amount_cents == 150_000


def test_the_last_partial_month_of_a_term_is_prorated() -> None:
    deal = terms(amount_cents=300_000, starts_on=date(2025, 3, 15), ends_on=date(2026, 3, 14))
    played = [
        Session(datetime(2026, 3, d, 10, tzinfo=UTC), datetime(2026, 3, d, 15, tzinfo=UTC))
        for d in range(1, 6)
    ]  # 25 h ≥ 40 * 14/31 = 18.06 h; 5 ≥ ⌈8 * 14/31⌉ = ⌈3.61⌉ = 4 streams
    result = calculate(deal, Period(2026, 3), played, now=datetime(2026, 4, 1, tzinfo=UTC))
    # 1 to 14 March 2026: 14 of 31 days. 300,000 * 14/31 = 135,483.87 → 135,484 cents
    assert result.amount_cents == 135_484


def test_a_session_crossing_midnight_at_months_end_splits_hours_and_counts_where_it_started(
) -> None:
    deal = terms(DealKind.PER_HOUR, amount_cents=4_000, min_hours="0", min_streams=0)
    played = [
        Session(datetime(2025, 2, 28, 23, tzinfo=UTC), at(1, 1)),  # 1 h in March, Feb's stream
        Session(at(31, 22, 30), at(1, 1, 15, month=4)),  # 1.5 h in March, 1.25 h in April
    ]
    march = calculate(deal, MARCH, played, now=AFTER_MARCH)
    assert (march.activity.seconds, march.activity.streams) == (3_600 + 5_400, 1)
    # $40/h * 9,000 s / 3,600 = 4,000 * 2.5 = 10,000 cents
    assert march.amount_cents == 10_000
    april = calculate(deal, Period(2025, 4), played, now=datetime(2025, 5, 2, tzinfo=UTC))
    assert (april.activity.seconds, april.activity.streams) == (4_500, 0)
    # 4,000 * 4,500 / 3,600 = 5,000 cents
    assert april.amount_cents == 5_000


def test_a_per_hour_deal_pays_every_second_rounded_once() -> None:
    deal = terms(DealKind.PER_HOUR, amount_cents=5_000, min_hours="10", min_streams=2)
    played = [
        Session(at(3, 18), at(3, 21)),  # 3 h
        Session(at(4, 18), at(4, 22, 20) + timedelta(seconds=30)),  # 4 h 20 min 30 s
        Session(at(5, 18), at(5, 21)),  # 3 h
    ]  # 10 h 20 min 30 s = 37,230 s
    result = calculate(deal, MARCH, played, now=AFTER_MARCH)
    assert result.activity.seconds == 37_230
    # 5,000 * 37,230 / 3,600 = 51,708.33 → 51,708 cents ($517.08)
    assert result.amount_cents == 51_708


def test_a_per_hour_deal_under_nothing_pays_zero_when_a_minimum_is_missed() -> None:
    deal = terms(
        DealKind.PER_HOUR, amount_cents=5_000, min_hours="12", shortfall=Shortfall.NOTHING
    )
    result = calculate(deal, MARCH, sessions(8, timedelta(hours=1)), now=AFTER_MARCH)
    assert result.amount_cents == 0


def test_a_per_hour_deal_under_pro_rata_still_pays_every_hour() -> None:
    deal = terms(DealKind.PER_HOUR, amount_cents=5_000, min_hours="12")
    result = calculate(deal, MARCH, sessions(8, timedelta(hours=1)), now=AFTER_MARCH)
    assert result.amount_cents == 40_000  # 5,000 * 8 h


def test_a_half_cent_rounds_up() -> None:
    deal = terms(amount_cents=100_001, min_hours="2", min_streams=0)
    result = calculate(deal, MARCH, sessions(1, timedelta(hours=1)), now=AFTER_MARCH)
    # 100,001 * 1/2 = 50,000.5 → 50,001 (half up; banker's rounding would give 50,000)
    assert result.amount_cents == 50_001
    assert round_half_up(Fraction(5, 2)) == 3
    assert round_half_up(Fraction(249, 100)) == 2


def test_a_still_live_session_counts_until_now_or_the_period_end() -> None:
    deal = terms(DealKind.PER_HOUR, amount_cents=3_600, min_hours="0", min_streams=0)
    live = [Session(at(31, 23), None)]
    # Computed after March: up to 1 April 00:00, 1 h → 3,600 cents.
    assert calculate(deal, MARCH, live, now=AFTER_MARCH).amount_cents == 3_600
    # Progress at 23:30 on 31 March: half an hour → 1,800 cents.
    assert calculate(deal, MARCH, live, now=at(31, 23, 30)).activity.seconds == 1_800


def test_minimum_plus_share_says_plainly_there_is_no_revenue() -> None:
    deal = terms(
        DealKind.MINIMUM_PLUS_SHARE, amount_cents=200_000, min_streams=0, min_hours="0",
        revenue_share_bps=2_000,
    )
    result = calculate(deal, MARCH, [], now=AFTER_MARCH)
    assert result.amount_cents == 200_000  # the minimum: the share of nothing is $0
    assert any("no revenue recorded" in line.detail for line in result.lines)
    # With revenue: 20 % of $15,000 = $3,000 beats the $2,000 minimum.
    with_revenue = calculate(deal, MARCH, [], now=AFTER_MARCH, revenue_cents=1_500_000)
    assert with_revenue.amount_cents == 300_000


def test_the_lines_explain_viewers_and_say_average_is_unknown() -> None:
    deal = terms(amount_cents=500_000)
    result = calculate(deal, MARCH, sessions(2, timedelta(hours=1)), now=AFTER_MARCH)
    viewers = next(line for line in result.lines if line.label == "viewers")
    assert "peak unknown" in viewers.detail
    assert "average unknown" in viewers.detail


def test_a_term_that_misses_the_period_cannot_be_calculated() -> None:
    deal = terms(amount_cents=500_000, starts_on=date(2025, 4, 1), ends_on=date(2025, 9, 30))
    with pytest.raises(CalculationError, match="does not cover 2025-03"):
        calculate(deal, MARCH, [], now=AFTER_MARCH)


def test_periods_are_calendar_months() -> None:
    assert Period.parse("2024-02").days == 29
    assert Period(2025, 1).previous() == Period(2024, 12)
    assert Period(2025, 12).next() == Period(2026, 1)
    assert Period.containing(datetime(2025, 3, 31, 23, 59, tzinfo=UTC)) == MARCH
    for bad in ["2025-13", "March", "2025-3-1", ""]:
        with pytest.raises(CalculationError):
            Period.parse(bad)


def test_money_is_formatted_per_currency() -> None:
    assert format_money(123_456_789, "USD") == "$1,234,567.89"
    assert format_money(5, "EUR") == "0.05 EUR"
