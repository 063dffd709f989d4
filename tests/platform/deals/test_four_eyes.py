"""No admin moves money alone: every path, refused, and the refusal kept in the trail.

ada and grace are the two admins of the deals tests; hal is a third where one is needed.
"""

from __future__ import annotations

from datetime import date
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from deals.actions import (
    DealError,
    PayoutError,
    approve_payout,
    close_period,
    compute_payout,
    mark_paid,
    save_deal,
    sign_deal,
)
from deals.calculation import Period
from deals.models import Deal, DealEvent, DealVersion, LedgerEntry, Payout, PayoutEvent
from deals.tasks import close_payout_period
from tests.support.deals import at, draft_deal, make_deal, stream, terms
from tests.support.personas import make_admin

MARCH, APRIL = Period(2025, 3), Period(2025, 4)
NO_MINIMUMS = {"min_hours": 0, "min_streams": 0}


@pytest.fixture
def hal(db):
    return make_admin("hal")


def change(deal, actor, effective_from: date, **values):
    """Proposes new terms for a signed deal (their figures confirmed)."""
    return save_deal(deal, terms(**(NO_MINIMUMS | values)), actor=actor,
                     effective_from=effective_from, confirmed=True)


def refusals(obj) -> list[tuple[str, str, str]]:
    return [(e.actor_name, e.to_status, e.note) for e in obj.events.filter(refused=True)]


# --- Create and sign ----------------------------------------------------------------------


def test_the_admin_who_created_a_deal_cannot_sign_it(alice, ada, grace) -> None:
    deal = draft_deal(alice.streamer, ada, amount_cents=1_000_000_000)  # $10,000,000 a month
    with pytest.raises(DealError, match=r"ada wrote these terms \(v1\) and cannot sign them too"):
        sign_deal(deal, actor=ada)
    assert Deal.objects.get().status == "draft"
    [(who, attempted, note)] = refusals(deal)
    assert (who, attempted) == ("ada", "active")
    assert "another admin must" in note
    assert sign_deal(deal, actor=grace).status == "active"


def test_whoever_changed_a_drafts_terms_cannot_sign_them_either(alice, ada, grace, hal) -> None:
    deal = draft_deal(alice.streamer, ada)
    save_deal(deal, terms(amount_cents=450_000), actor=grace)
    for author in (ada, grace):
        with pytest.raises(DealError, match="cannot sign them too"):
            sign_deal(deal, actor=author)
    signed = sign_deal(deal, actor=hal)
    assert (signed.status, signed.signed_by) == ("active", hal)
    assert DealVersion.objects.get().signed_by_name == "hal"


def test_a_deal_is_signed_by_a_person_not_by_a_command(alice, ada) -> None:
    deal = draft_deal(alice.streamer, ada)
    with pytest.raises(DealError, match="by a person"):
        sign_deal(deal, actor=None)


def test_signing_twice_changes_nothing(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada)
    again = sign_deal(deal, actor=grace)
    assert again.changed is False
    assert DealEvent.objects.filter(deal=deal, action="signed").count() == 1


# --- Changing signed terms ----------------------------------------------------------------


def test_changing_a_signed_amount_pays_nothing_new_until_another_admin_signs_it(
    alice, ada, grace
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=200_000, **NO_MINIMUMS)
    saved = change(deal, ada, date(2025, 4, 1), amount_cents=250_000)
    assert saved.outcome == "proposed"
    assert (saved.version.number, saved.version.status) == (2, "proposed")
    assert "amount $2,000.00 → $2,500.00" in DealEvent.objects.filter(deal=deal).last().note
    # Unsigned, v2 changes nothing: April is still computed with v1.
    assert compute_payout(deal, APRIL, actor=ada).amount_cents == 200_000
    with pytest.raises(DealError, match="cannot sign them too"):
        sign_deal(deal, actor=ada)
    assert compute_payout(deal, APRIL, actor=grace).amount_cents == 200_000
    sign_deal(deal, actor=grace)
    assert compute_payout(deal, APRIL, actor=ada).amount_cents == 250_000


def test_each_month_is_computed_with_the_version_in_force_then(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=200_000, **NO_MINIMUMS)
    change(deal, ada, date(2025, 6, 1), amount_cents=250_000)
    sign_deal(deal, actor=grace)
    change(deal, grace, date(2025, 9, 1), amount_cents=300_000)
    sign_deal(deal, actor=ada)
    amounts = {
        month: compute_payout(deal, Period(2025, month), actor=ada).amount_cents
        for month in range(1, 13)
    }
    assert amounts == {1: 200_000, 2: 200_000, 3: 200_000, 4: 200_000, 5: 200_000,
                       6: 250_000, 7: 250_000, 8: 250_000,
                       9: 300_000, 10: 300_000, 11: 300_000, 12: 300_000}
    versions = dict(Payout.objects.values_list("period_start__month", "version__number"))
    assert versions == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 2, 9: 3, 10: 3, 11: 3, 12: 3}


def test_a_later_signature_replaces_earlier_terms_from_its_first_day(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=200_000, **NO_MINIMUMS)
    change(deal, ada, date(2025, 6, 1), amount_cents=250_000)
    sign_deal(deal, actor=grace)
    change(deal, ada, date(2025, 4, 1), amount_cents=220_000)
    sign_deal(deal, actor=grace)
    assert [compute_payout(deal, Period(2025, m), actor=ada).amount_cents for m in (3, 4, 7)] \
        == [200_000, 220_000, 220_000]


def test_a_draft_computed_before_new_terms_were_signed_is_recomputed_before_approval(
    alice, ada, grace
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=200_000, **NO_MINIMUMS)
    stale = compute_payout(deal, MARCH, actor=ada)
    change(deal, ada, date(2025, 3, 1), amount_cents=250_000)
    sign_deal(deal, actor=grace)
    with pytest.raises(PayoutError, match="recompute it"):
        approve_payout(stale, actor=grace)
    assert not LedgerEntry.objects.exists()
    fresh = compute_payout(deal, MARCH, actor=ada)
    assert approve_payout(fresh, actor=grace).amount_cents == 250_000


def test_new_terms_cannot_reach_into_a_month_already_approved(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=200_000, **NO_MINIMUMS)
    approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)
    with pytest.raises(ValidationError) as error:
        change(deal, ada, date(2025, 3, 1), amount_cents=250_000)
    assert "2025-03 is already approved or paid" in error.value.message_dict["effective_from"][0]
    assert "from 2025-04-01 at the earliest" in error.value.message_dict["effective_from"][0]
    with pytest.raises(ValidationError, match="1st of a month"):
        change(deal, ada, date(2025, 4, 15), amount_cents=250_000)
    assert DealVersion.objects.count() == 1


def test_a_proposal_cannot_be_signed_once_a_month_it_reaches_is_approved(
    alice, ada, grace
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=200_000, **NO_MINIMUMS)
    change(deal, ada, date(2025, 3, 1), amount_cents=250_000)
    approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)  # with v1
    with pytest.raises(DealError, match="2025-03 is already approved or paid"):
        sign_deal(deal, actor=grace)
    assert Payout.objects.get().amount_cents == 200_000


# --- Compute, approve, pay ----------------------------------------------------------------


def test_the_admin_who_computed_cannot_approve_and_the_approver_cannot_pay(
    alice, ada, grace
) -> None:
    deal = make_deal(alice.streamer, ada, **NO_MINIMUMS)
    payout = compute_payout(deal, MARCH, actor=ada)
    with pytest.raises(PayoutError, match="computed this payout and cannot approve it too"):
        approve_payout(payout, actor=ada)
    approve_payout(payout, actor=grace)
    with pytest.raises(PayoutError, match="approved this payout and cannot mark it paid too"):
        mark_paid(payout, actor=grace, reference="WIRE-1")
    assert Payout.objects.get().status == "approved"
    assert [(who, to) for who, to, _ in refusals(payout)] == [
        ("ada", "approved"), ("grace", "paid")
    ]
    assert mark_paid(payout, actor=ada, reference="WIRE-1").status == "paid"


def test_a_payout_the_close_computed_needs_one_admin_to_approve_and_another_to_pay(
    alice, ada, grace
) -> None:
    make_deal(alice.streamer, ada, amount_cents=300_000, **NO_MINIMUMS)
    [closed] = close_period(MARCH, actor_name="cron (payouts close)")
    payout = Payout.objects.get()
    assert (closed.outcome, payout.computed_by) == ("computed", None)
    approve_payout(payout, actor=ada)  # the system computed it: any one admin approves
    with pytest.raises(PayoutError, match="ada approved this payout and cannot mark it paid"):
        mark_paid(payout, actor=ada, reference="WIRE-2")
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    mark_paid(payout, actor=grace, reference="WIRE-2")
    payout.refresh_from_db()
    assert (payout.approved_by, payout.paid_by) == (ada, grace)


def test_a_payout_celery_beat_computed_needs_two_admins_as_well(alice, ada, grace) -> None:
    make_deal(alice.streamer, ada, amount_cents=300_000, **NO_MINIMUMS)
    assert close_payout_period.apply(args=["2025-03"]).get()["outcomes"] == {"computed": 1}
    payout = Payout.objects.get()
    assert payout.computed_by_name == "celery beat"
    approve_payout(payout, actor=grace)
    with pytest.raises(PayoutError, match="cannot mark it paid too"):
        mark_paid(payout, actor=grace, reference="WIRE-3")
    assert PayoutEvent.objects.filter(payout=payout, refused=True, actor_name="grace").exists()


def test_a_deal_never_signed_cannot_have_a_payout_approved(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, **NO_MINIMUMS)
    payout = compute_payout(deal, MARCH, actor=ada)
    Deal.objects.filter(pk=deal.pk).update(signed_at=None)  # as if it had never been signed
    with pytest.raises(PayoutError, match="never signed"):
        approve_payout(payout, actor=grace)


# --- The single-approver limit --------------------------------------------------------------


def test_by_default_even_a_one_dollar_payout_needs_two_admins(alice, ada, settings) -> None:
    assert settings.GOLIVE_SINGLE_APPROVER_BELOW == ""
    deal = make_deal(alice.streamer, ada, kind="per_hour", amount_cents=1_000, **NO_MINIMUMS)
    stream(alice.channel, at(3, 1, 10), at(3, 1, 10, 6))  # 6 minutes at $10/h = $1.00
    payout = compute_payout(deal, MARCH, actor=ada)
    assert payout.amount_cents == 100
    with pytest.raises(PayoutError, match="cannot approve it too"):
        approve_payout(payout, actor=ada)


@override_settings(GOLIVE_SINGLE_APPROVER_BELOW="USD 250.00, EUR 200.00")
def test_below_the_configured_limit_one_admin_may_approve_and_pay_alone(alice, bob, ada) -> None:
    small = make_deal(alice.streamer, ada, kind="per_hour", amount_cents=1_000, **NO_MINIMUMS)
    stream(alice.channel, at(3, 1, 10), at(3, 1, 12))  # 2 h at $10/h = $20.00
    payout = approve_payout(compute_payout(small, MARCH, actor=ada), actor=ada)
    mark_paid(payout, actor=ada, reference="PETTY-1")
    assert "below the single-approver limit of $250.00" in PayoutEvent.objects.filter(
        payout=payout, to_status="approved").get().note
    big = make_deal(bob.streamer, ada, amount_cents=25_000, **NO_MINIMUMS)  # exactly $250.00
    with pytest.raises(PayoutError, match="cannot approve it too"):
        approve_payout(compute_payout(big, MARCH, actor=ada), actor=ada)


def test_an_unreadable_limit_is_read_as_two_admins_always(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, kind="per_hour", amount_cents=1_000, **NO_MINIMUMS)
    payout = compute_payout(deal, MARCH, actor=ada)
    with override_settings(GOLIVE_SINGLE_APPROVER_BELOW="dollars 250"), \
            mock.patch("deals.actions.log") as log, \
            pytest.raises(PayoutError, match="cannot approve it too"):
        approve_payout(payout, actor=ada)
    log.error.assert_called_once()


def test_a_withdrawn_proposal_leaves_the_signed_terms_in_force(alice, ada, grace, client) -> None:
    from deals.actions import withdraw_proposal

    deal = make_deal(alice.streamer, ada, amount_cents=200_000, **NO_MINIMUMS)
    change(deal, ada, date(2025, 3, 1), amount_cents=900_000)
    client.force_login(grace)
    client.post(f"/admin/deals/deal/{deal.pk}/withdraw/", {"reason": "typo: meant 2,500"})
    assert list(deal.versions.values_list("status", flat=True)) == ["signed", "withdrawn"]
    assert "typo: meant 2,500" in DealEvent.objects.filter(deal=deal).last().note
    assert sign_deal(deal, actor=grace).changed is False  # nothing waits any more
    assert compute_payout(deal, MARCH, actor=ada).amount_cents == 200_000
    draft = draft_deal(alice.streamer, ada, starts_on=date(2026, 1, 1),
                       ends_on=date(2026, 12, 31))
    with pytest.raises(DealError, match="cancel or terminate the deal instead"):
        withdraw_proposal(draft, actor=grace)
