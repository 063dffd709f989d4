"""Is the figure what the admin meant: amounts typed in units, hard limits, warnings that
need a confirmation, one deal per streamer at a time."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from deals.actions import UnconfirmedWarnings, save_deal, set_deal_status
from deals.calculation import DealKind, Shortfall, Terms
from deals.models import Deal
from deals.money import AmountError, parse_basis_points, parse_cents, parse_thresholds
from deals.plausibility import review, shortest_month
from tests.support.deals import draft_deal, make_deal, terms


@pytest.mark.parametrize(
    ("typed", "cents"),
    [("5000.00", 500_000), ("5000", 500_000), ("5,000.00", 500_000), (" 5000.5 ", 500_050),
     ("0.07", 7), ("50.00", 5_000), ("1,234,567.89", 123_456_789)],
)
def test_amounts_are_typed_in_units_with_at_most_two_decimals(typed, cents) -> None:
    assert parse_cents(typed) == cents


@pytest.mark.parametrize(
    ("typed", "says"),
    [("5000.005", "3 decimals"), ("50.125", "3 decimals"), ("-5000.00", "negative"),
     ("5.000,00", "not an amount"), ("$5000", "not an amount"), ("5,00", "not an amount"),
     ("", "Enter an amount"), ("1e6", "not an amount"), ("99999999999", "too large")],
)
def test_anything_else_is_refused_with_a_sentence(typed, says) -> None:
    with pytest.raises(AmountError, match=says):
        parse_cents(typed)


def test_shares_are_percentages_and_limits_name_their_currency() -> None:
    assert [parse_basis_points(p) for p in ("15", "12.5", "0.25", "100")] == [1500, 1250, 25,
                                                                              10_000]
    for bad in ("12.345", "101", "-1", "ten"):
        with pytest.raises(AmountError):
            parse_basis_points(bad)
    assert parse_thresholds("USD 250.00, EUR 200") == {"USD": 25_000, "EUR": 20_000}
    assert parse_thresholds("") == {}
    with pytest.raises(AmountError, match="XYZ"):
        parse_thresholds("XYZ 5")


def plain(kind: str = "flat", **values) -> Terms:
    defaults = {"amount_cents": 500_000, "currency": "USD", "starts_on": date(2026, 1, 1),
                "ends_on": date(2026, 12, 31), "min_hours": Decimal(40), "min_streams": 8,
                "shortfall": Shortfall.PRO_RATA}
    return Terms(kind=DealKind(kind), **(defaults | values))


def test_a_month_has_only_so_many_hours() -> None:
    assert shortest_month(date(2026, 1, 1), date(2026, 12, 31)).label == "2026-02"
    assert shortest_month(date(2026, 3, 1), date(2026, 4, 30)).label == "2026-04"
    errors = review(plain(min_hours=Decimal(800))).errors
    assert errors["min_hours"] == "800 hours a month cannot be streamed: 2026-02 has 672 hours."
    assert "min_hours" in review(plain(min_hours=Decimal(700))).errors  # February is short
    only_march = plain(min_hours=Decimal(700), starts_on=date(2026, 3, 1),
                       ends_on=date(2026, 3, 31))
    assert "min_hours" not in review(only_march).errors  # 744 h in March
    assert any("10 hours a day" in w for w in review(only_march).warnings)


def test_a_flat_or_hourly_deal_that_pays_nothing_is_refused() -> None:
    assert "pays nothing" in review(plain(amount_cents=0)).errors["amount"]
    assert "pays nothing" in review(plain("per_hour", amount_cents=0)).errors["amount"]


@pytest.mark.parametrize(
    ("terms_", "warning"),
    [
        (plain(amount_cents=5_000), "$50.00 a month is below the usual $1,000.00"),
        (plain(amount_cents=1_000_000_000), "$10,000,000.00 a month is above the usual"),
        (plain("per_hour", amount_cents=50), "$0.50 an hour is below the usual $10.00"),
        (plain("per_hour", amount_cents=1_000_000_000), "$10,000,000.00 an hour is above the "
                                                        "usual $250.00"),
        (plain(min_hours=Decimal(0), min_streams=0), "0 committed hours and 0 streams"),
        (plain(min_hours=Decimal(0)), "0 committed hours: the guarantee ($5,000.00 a month) is"),
        (plain(min_streams=0), "0 committed streams"),
    ],
)
def test_figures_far_from_the_usual_ones_are_warned_about(terms_, warning) -> None:
    found = review(terms_).warnings
    assert any(warning in sentence for sentence in found), found


def test_usual_figures_pass_without_a_word() -> None:
    assert review(plain()).warnings == ()
    assert review(plain("per_hour", amount_cents=5_000, min_hours=Decimal(0),
                        min_streams=0)).warnings == ()


def test_the_write_path_refuses_unconfirmed_warnings(alice, ada) -> None:
    with pytest.raises(UnconfirmedWarnings, match="0 committed hours"):
        save_deal(Deal(streamer=alice.streamer, starts_on=date(2025, 1, 1)),
                  terms(min_hours=0), actor=ada)
    with pytest.raises(UnconfirmedWarnings, match="an hour is above the usual"):
        save_deal(Deal(streamer=alice.streamer, starts_on=date(2025, 1, 1)),
                  terms(kind="per_hour", amount_cents=1_000_000_000), actor=ada)
    assert not Deal.objects.exists()


def test_more_hours_than_a_month_has_are_refused_even_when_confirmed(alice, ada) -> None:
    with pytest.raises(ValidationError) as error:
        save_deal(Deal(streamer=alice.streamer, starts_on=date(2025, 1, 1)),
                  terms(min_hours=Decimal(800)), actor=ada, confirmed=True)
    assert "2025-02 has 672 hours" in error.value.message_dict["min_hours"][0]


def test_a_second_deal_overlapping_the_first_is_refused_with_a_clear_message(
    alice, ada
) -> None:
    first = make_deal(alice.streamer, ada)  # 2025
    with pytest.raises(ValidationError) as error:
        draft_deal(alice.streamer, ada, starts_on=date(2025, 11, 1), ends_on=date(2026, 10, 31))
    [message] = error.value.message_dict["__all__"]
    assert message == (
        f"alice already has deal #{first.pk} (active) for 2025-01-01 → 2025-12-31, which "
        "overlaps 2025-11-01 → 2026-10-31: a streamer has one deal at a time. Change that "
        "deal's terms instead (a new version), or end it and start this one the day after."
    )
    assert Deal.objects.count() == 1


def test_a_deal_may_start_the_day_after_the_last_one_ends(alice, ada) -> None:
    first = make_deal(alice.streamer, ada)
    set_deal_status(first, "terminated", actor=ada, effective_on=date(2025, 10, 31))
    second = make_deal(alice.streamer, ada, starts_on=date(2025, 11, 1),
                       ends_on=date(2026, 10, 31))
    assert second.status == "active"


def test_a_cancelled_draft_blocks_nothing_but_a_draft_does(alice, ada) -> None:
    draft = draft_deal(alice.streamer, ada)
    with pytest.raises(ValidationError, match="one deal at a time"):
        draft_deal(alice.streamer, ada)
    set_deal_status(draft, "terminated", actor=ada)
    assert draft_deal(alice.streamer, ada).status == "draft"


def test_extending_a_deal_into_the_next_one_is_refused(alice, ada) -> None:
    first = make_deal(alice.streamer, ada)
    make_deal(alice.streamer, ada, starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31))
    with pytest.raises(ValidationError, match="one deal at a time"):
        save_deal(first, terms(ends_on=date(2026, 6, 30)), actor=ada,
                  effective_from=date(2025, 6, 1))
