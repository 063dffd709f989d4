"""Deal terms: validation, versions, status transitions and their audit rows."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from deals.actions import (
    DealError,
    UnconfirmedWarnings,
    save_deal,
    set_deal_status,
    sign_deal,
)
from deals.models import Deal, DealEvent, DealVersion
from tests.support.deals import draft_deal, make_deal, terms


def history(deal: Deal) -> list[tuple[str, str, str]]:
    return [
        (e.actor_name, e.from_status, e.to_status)
        for e in DealEvent.objects.filter(deal=deal, refused=False)
    ]


def new(streamer) -> Deal:
    return Deal(streamer=streamer, starts_on=date(2025, 1, 1))


def test_a_new_deal_is_a_draft_with_its_terms_as_version_1(alice, ada) -> None:
    saved = save_deal(new(alice.streamer), terms(), actor=ada)
    deal = saved.deal
    assert (saved.outcome, saved.warnings) == ("created", ())
    assert (deal.status, deal.created_by, deal.ends_on) == ("draft", ada, date(2025, 12, 31))
    version = DealVersion.objects.get(deal=deal)
    assert (version.number, version.status, version.amount_cents, version.effective_from) == (
        1, "proposed", 500_000, date(2025, 1, 1)
    )
    assert history(deal) == [("ada", "", "draft")]
    assert "flat monthly guarantee $5,000.00 a month" in DealEvent.objects.get().note


def test_a_term_ending_before_it_starts_is_refused(alice, ada) -> None:
    with pytest.raises(ValidationError) as error:
        save_deal(new(alice.streamer), terms(ends_on=date(2024, 12, 31)), actor=ada)
    assert "ends_on" in error.value.message_dict
    assert not Deal.objects.exists()


def test_a_negative_amount_is_refused(alice, ada) -> None:
    with pytest.raises(ValidationError) as error:
        save_deal(new(alice.streamer), terms(amount_cents=-1), actor=ada)
    assert "amount" in error.value.message_dict


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "JPY"}, "currency"),  # no cents: "5000.00" would mean something else
        ({"revenue_share_bps": 1500}, "revenue_share"),
    ],
)
def test_an_unknown_currency_or_a_share_on_a_flat_deal_is_refused(
    alice, ada, values, field
) -> None:
    with pytest.raises(ValidationError) as error:
        save_deal(new(alice.streamer), terms(**values), actor=ada)
    assert field in error.value.message_dict
    assert not Deal.objects.exists()


def test_amounts_outside_the_usual_range_need_a_confirmation(alice, bob, ada) -> None:
    with pytest.raises(UnconfirmedWarnings) as warned:
        save_deal(new(bob.streamer), terms(amount_cents=5_000_000), actor=ada)
    assert "above the usual $10,000.00" in warned.value.warnings[0]
    assert not Deal.objects.exists()
    big = save_deal(new(bob.streamer), terms(amount_cents=5_000_000), actor=ada, confirmed=True)
    assert "above the usual $10,000.00" in big.warnings[0]
    small = save_deal(new(alice.streamer), terms(amount_cents=25_000), actor=ada, confirmed=True)
    assert "below the usual $1,000.00" in small.warnings[0]
    assert Deal.objects.count() == 2
    assert "confirmed despite" in DealEvent.objects.filter(deal=big.deal).get().note


def test_the_database_refuses_terms_the_form_would_have_caught(alice, ada) -> None:
    deal = draft_deal(alice.streamer, ada)
    version = deal.versions.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        DealVersion.objects.filter(pk=version.pk).update(amount_cents=-5)
    with pytest.raises(IntegrityError), transaction.atomic():
        Deal.objects.filter(pk=deal.pk).update(ends_on=date(2024, 1, 1))
    with pytest.raises(IntegrityError), transaction.atomic():  # a second pending version
        DealVersion.objects.create(
            deal=deal, number=2, effective_from=date(2025, 1, 1), ends_on=date(2025, 12, 31),
            amount_cents=1,
        )


def test_editing_a_drafts_terms_records_what_changed_in_its_currency(alice, ada, grace) -> None:
    deal = draft_deal(alice.streamer, ada)
    saved = save_deal(deal, terms(amount_cents=600_000), actor=grace)
    assert saved.outcome == "changed"
    event = DealEvent.objects.filter(deal=deal).last()
    assert (event.actor_name, event.note) == ("grace", "v1 changed: amount $5,000.00 → $6,000.00")
    assert DealVersion.objects.get(deal=deal).amount_cents == 600_000
    assert Deal.objects.get().status == "draft"  # an edit never changes the status


def test_signing_pausing_and_terminating_are_audited(alice, ada, grace) -> None:
    deal = draft_deal(alice.streamer, ada)
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
    with pytest.raises(DealError, match="cannot change"):
        save_deal(deal, terms(amount_cents=1), actor=ada)


def test_notes_change_without_a_new_version_or_a_signature(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada)
    deal.notes = "renewal talks in November"
    saved = save_deal(deal, terms(), actor=ada)
    assert saved.outcome == "notes"
    assert DealVersion.objects.filter(deal=deal).count() == 1
    assert Deal.objects.get().notes == "renewal talks in November"
