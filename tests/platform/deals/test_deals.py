"""Deal terms: validation, range warnings, status transitions and their audit rows."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from deals.actions import DealError, save_deal, set_deal_status, sign_deal
from deals.models import Deal, DealEvent
from tests.platform.deals.conftest import make_deal


def new_deal(streamer, **terms) -> Deal:
    values = {"kind": "flat", "amount_cents": 500_000, "starts_on": date(2025, 1, 1),
              "ends_on": date(2025, 12, 31)}
    return Deal(streamer=streamer, **(values | terms))


def history(deal: Deal) -> list[tuple[str, str, str]]:
    return [(e.actor_name, e.from_status, e.to_status) for e in DealEvent.objects.filter(deal=deal)]


def test_a_new_deal_is_a_draft_created_by_its_admin(alice, ada) -> None:
    deal = new_deal(alice.streamer)
    assert save_deal(deal, actor=ada) == []
    assert (deal.status, deal.created_by) == ("draft", ada)
    assert history(deal) == [("ada", "", "draft")]


def test_a_term_ending_before_it_starts_is_refused(alice, ada) -> None:
    deal = new_deal(alice.streamer, starts_on=date(2025, 6, 1), ends_on=date(2025, 5, 31))
    with pytest.raises(ValidationError) as error:
        save_deal(deal, actor=ada)
    assert "ends_on" in error.value.message_dict
    assert not Deal.objects.exists()


def test_a_negative_amount_is_refused(alice, ada) -> None:
    with pytest.raises(ValidationError) as error:
        save_deal(new_deal(alice.streamer, amount_cents=-1), actor=ada)
    assert "amount_cents" in error.value.message_dict


@pytest.mark.parametrize(
    ("field", "value"), [("currency", "usd"), ("currency", "DOLLARS"), ("revenue_share_bps", 1500)]
)
def test_bad_currency_or_a_share_on_a_flat_deal_is_refused(alice, ada, field, value) -> None:
    with pytest.raises(ValidationError) as error:
        save_deal(new_deal(alice.streamer, **{field: value}), actor=ada)
    assert field in error.value.message_dict


def test_amounts_outside_the_usual_range_are_saved_with_a_warning(alice, bob, ada) -> None:
    big = new_deal(bob.streamer, amount_cents=5_000_000)  # $50,000: a big name
    [warning] = save_deal(big, actor=ada)
    assert "above the usual $10,000.00" in warning
    small = new_deal(alice.streamer, amount_cents=25_000)
    [warning] = save_deal(small, actor=ada)
    assert "below the usual $1,000.00" in warning
    assert Deal.objects.count() == 2


def test_the_database_refuses_terms_the_form_would_have_caught(alice) -> None:
    for bad in [{"amount_cents": -5}, {"ends_on": date(2024, 1, 1)}]:
        with pytest.raises(IntegrityError), transaction.atomic():
            new_deal(alice.streamer, **bad).save()


def test_editing_terms_records_what_changed(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada)
    deal.amount_cents = 600_000
    save_deal(deal, actor=grace)
    event = DealEvent.objects.filter(deal=deal).last()
    assert (event.actor_name, event.note) == ("grace", "amount_cents 500000 → 600000")
    assert Deal.objects.get().status == "active"  # an edit never changes the status


def test_signing_pausing_and_terminating_are_audited(alice, ada, grace) -> None:
    deal = new_deal(alice.streamer)
    save_deal(deal, actor=ada)
    with pytest.raises(DealError, match="sign the deal"):
        set_deal_status(deal, "active", actor=ada)
    deal = sign_deal(deal, actor=grace)
    assert (deal.status, deal.signed_by) == ("active", grace)
    set_deal_status(deal, "paused", actor=ada, note="contract review")
    set_deal_status(deal, "active", actor=ada)
    deal = set_deal_status(deal, "terminated", actor=ada, effective_on=date(2025, 6, 15))
    assert deal.ends_on == date(2025, 6, 15)
    assert history(deal) == [
        ("ada", "", "draft"),
        ("grace", "draft", "active"),
        ("ada", "active", "paused"),
        ("ada", "paused", "active"),
        ("ada", "active", "terminated"),
    ]
    assert "ends 2025-06-15 instead of 2025-12-31" in DealEvent.objects.last().note
    with pytest.raises(DealError, match="terminated cannot become active"):
        set_deal_status(deal, "active", actor=ada)
    deal.amount_cents = 1
    with pytest.raises(DealError, match="cannot change"):
        save_deal(deal, actor=ada)
