"""A paid payout is never edited: it is corrected by an adjustment (more owed to the
streamer) or a clawback (some owed back), each a payout of its own through the same
approval, and the ledger stays balanced."""

from __future__ import annotations

from unittest import mock

import pytest

from deals import ledger
from deals.actions import (
    PayoutError,
    approve_payout,
    compute_payout,
    correct_payout,
    mark_paid,
    settled_cents,
    void_payout,
)
from deals.calculation import Period
from deals.models import LedgerEntry, Payout, PayoutEvent
from tests.support.deals import at, make_deal

MARCH = Period(2025, 3)


@pytest.fixture
def paid(alice, ada, grace) -> Payout:
    """alice's March: $5,000.00, computed by ada, approved by grace, paid by ada."""
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)
    return mark_paid(payout, actor=ada, reference="WIRE-MARCH")


def frozen(payout: Payout) -> tuple:
    payout.refresh_from_db()
    return (payout.status, payout.amount_cents, payout.payment_reference, payout.paid_by_id,
            payout.approved_by_id, payout.lines.count())


def test_an_adjustment_is_a_new_payout_that_needs_two_more_admins(paid, ada, grace) -> None:
    before = frozen(paid)
    adjustment = correct_payout(paid, kind="adjustment", amount_cents=25_000, actor=ada,
                                reason="two streams were recorded late")
    assert frozen(paid) == before  # the paid payout is untouched
    assert (adjustment.kind, adjustment.status, adjustment.corrects_id) == (
        "adjustment", "draft", paid.pk
    )
    assert (adjustment.period, adjustment.amount_display) == (MARCH, "+$250.00")
    with pytest.raises(PayoutError, match="cannot approve it too"):
        approve_payout(adjustment, actor=ada)
    approve_payout(adjustment, actor=grace)
    with pytest.raises(PayoutError, match="cannot mark it paid too"):
        mark_paid(adjustment, actor=grace, reference="WIRE-ADJ")
    mark_paid(adjustment, actor=ada, reference="WIRE-ADJ")
    assert settled_cents(paid) == 525_000
    assert ledger.unbalanced_transactions() == []
    assert ledger.balances() == {
        ("deal_expense", "USD"): 525_000,
        ("streamer_payable", "USD"): 0,
        ("cash", "USD"): -525_000,
    }
    note = PayoutEvent.objects.filter(payout=paid).last().note
    assert note == f"corrected by adjustment #{adjustment.pk} (+$250.00, draft): two streams " \
                   "were recorded late"


def test_a_clawback_comes_off_what_was_paid_and_the_ledger_stays_balanced(
    paid, ada, grace
) -> None:
    clawback = correct_payout(paid, kind="clawback", amount_cents=10_000, actor=grace,
                              reason="a stream was a rerun")
    assert clawback.amount_display == "-$100.00"
    approve_payout(clawback, actor=ada)
    assert ledger.balances()[("streamer_receivable", "USD")] == 10_000  # owed back
    assert ledger.balances()[("deal_expense", "USD")] == 490_000
    recovered = mark_paid(clawback, actor=grace, reference="OFFSET-APRIL")
    assert recovered.status_display == "recovered"
    assert settled_cents(paid) == 490_000
    assert ledger.unbalanced_transactions() == []
    assert ledger.balances() == {
        ("deal_expense", "USD"): 490_000,
        ("streamer_payable", "USD"): 0,
        ("streamer_receivable", "USD"): 0,
        ("cash", "USD"): -490_000,
    }
    kinds = list(LedgerEntry.objects.filter(payout=clawback).values_list("kind", "account"))
    assert kinds == [("clawback", "streamer_receivable"), ("clawback", "deal_expense"),
                     ("recovery", "cash"), ("recovery", "streamer_receivable")]


def test_voiding_an_approved_clawback_reverses_it(paid, ada, grace) -> None:
    clawback = correct_payout(paid, kind="clawback", amount_cents=10_000, actor=grace,
                              reason="a stream was a rerun")
    approve_payout(clawback, actor=ada)
    void_payout(clawback, actor=grace, reason="it was not a rerun after all")
    assert ledger.balances()[("streamer_receivable", "USD")] == 0
    assert ledger.balances()[("deal_expense", "USD")] == 500_000
    assert ledger.unbalanced_transactions() == []


def test_a_clawback_cannot_take_back_more_than_the_month_has_paid(paid, ada, grace) -> None:
    first = correct_payout(paid, kind="clawback", amount_cents=400_000, actor=ada, reason="x")
    approve_payout(first, actor=grace)
    with pytest.raises(PayoutError, match=r"cannot claw back \$1,000.01: 2025-03 has paid "
                                          r"\$1,000.00 so far"):
        correct_payout(paid, kind="clawback", amount_cents=100_001, actor=ada, reason="y")
    assert correct_payout(paid, kind="clawback", amount_cents=100_000, actor=ada, reason="y")


def test_only_a_paid_months_payout_is_corrected(alice, ada, grace, paid) -> None:
    adjustment = correct_payout(paid, kind="adjustment", amount_cents=1_000, actor=ada,
                                reason="late stream")
    with pytest.raises(PayoutError, match="not one of its corrections"):
        correct_payout(adjustment, kind="adjustment", amount_cents=1, actor=ada, reason="z")
    april = compute_payout(paid.deal, Period(2025, 4), actor=ada)
    with pytest.raises(PayoutError, match="a draft payout is not corrected: void it"):
        correct_payout(april, kind="adjustment", amount_cents=1, actor=ada, reason="z")
    for amount, reason, kind, says in [
        (0, "why", "adjustment", "positive amount"),
        (1, "  ", "adjustment", "reason is required"),
        (1, "why", "bonus", "an adjustment or a clawback"),
    ]:
        with pytest.raises(PayoutError, match=says):
            correct_payout(paid, kind=kind, amount_cents=amount, actor=ada, reason=reason)
    with pytest.raises(PayoutError, match="by a person"):
        correct_payout(paid, kind="adjustment", amount_cents=1, actor=None, reason="why")


def test_the_streamers_earnings_page_shows_the_payout_and_its_corrections(
    paid, alice, ada, grace, client
) -> None:
    adjustment = correct_payout(paid, kind="adjustment", amount_cents=25_000, actor=ada,
                                reason="two streams were recorded late")
    approve_payout(adjustment, actor=grace)
    mark_paid(adjustment, actor=ada, reference="WIRE-ADJ")
    clawback = correct_payout(paid, kind="clawback", amount_cents=10_000, actor=ada,
                              reason="a rerun counted as live")
    approve_payout(clawback, actor=grace)
    correct_payout(paid, kind="adjustment", amount_cents=99_900, actor=ada, reason="draft")
    client.force_login(alice.user)
    with mock.patch("django.utils.timezone.now", return_value=at(4, 20)):
        page = client.get("/earnings").content.decode()
    rows = page.split("<tbody>", 1)[1]
    assert rows.count("<tr") == 3  # the month, the paid adjustment, the approved clawback
    assert "$5,000.00" in rows
    assert "adjustment of the 2025-03 payout" in rows
    assert "+$250.00" in rows
    assert "clawback of the 2025-03 payout" in rows
    assert "-$100.00" in rows
    assert "$999.00" not in page  # a draft is not a promise
    assert "Paid (corrections included): $5,250.00" in page
    assert "To pay back: $100.00" in page
    detail = client.get(f"/earnings/payouts/{paid.pk}").content.decode()
    assert "two streams were recorded late" in detail
    assert "a rerun counted as live" in detail
    why = client.get(f"/earnings/payouts/{adjustment.pk}").content.decode()
    assert "two streams were recorded late" in why


def test_the_api_lists_corrections_with_their_direction(paid, alice, ada, grace, api) -> None:
    clawback = correct_payout(paid, kind="clawback", amount_cents=10_000, actor=ada,
                              reason="a rerun counted as live")
    approve_payout(clawback, actor=grace)
    api.force_authenticate(alice.user)
    rows = api.get("/api/v1/earnings/payouts/").json()["results"]
    shown = {(r["kind"], r["amount_cents"], r["net_cents"], r["amount"], r["corrects"])
             for r in rows}
    assert shown == {("regular", 500_000, 500_000, "$5,000.00", None),
                     ("clawback", 10_000, -10_000, "-$100.00", paid.pk)}
