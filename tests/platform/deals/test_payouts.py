"""The payout workflow through the database: worked examples, transitions, audit, ledger.

Amounts are worked out by hand in each test; March 2025 has 31 days.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from deals import ledger
from deals.actions import (
    PayoutError,
    approve_payout,
    compute_payout,
    mark_paid,
    void_payout,
)
from deals.calculation import Period
from deals.models import LedgerEntry, Payout, PayoutEvent
from tests.support.deals import at, draft_deal, make_deal, stream

MARCH = Period(2025, 3)


def transitions(payout: Payout) -> list[tuple[str, str, str]]:
    return [
        (event.actor_name, event.from_status, event.to_status)
        for event in PayoutEvent.objects.filter(payout=payout, refused=False)
    ]


def assert_ledger_balances() -> None:
    assert ledger.unbalanced_transactions() == []
    for transaction_id in LedgerEntry.objects.values_list("transaction_id", flat=True):
        rows = LedgerEntry.objects.filter(transaction_id=transaction_id)
        assert sum(r.debit_cents for r in rows) == sum(r.credit_cents for r in rows)


def test_a_full_month_meeting_the_requirement_is_stored_with_its_lines(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000)  # 40 h, 8 streams
    for day in range(1, 10):  # 9 sessions of 5 h: 45 h, 9 streams
        stream(alice.channel, at(3, day, 18), at(3, day, 23), peak=100 + day)
    payout = compute_payout(deal, MARCH, actor=ada)
    assert payout.amount_cents == 500_000  # $5,000.00, requirements met
    assert (payout.streamed_seconds, payout.streams, payout.peak_viewers) == (162_000, 9, 109)
    assert payout.requirements_met
    assert payout.status == "draft"
    lines = list(payout.lines.all())
    assert [line.position for line in lines] == list(range(1, len(lines) + 1))
    assert lines[-1].label == "payable"
    assert lines[-1].amount_cents == 500_000
    assert transitions(payout) == [("ada", "", "draft")]


@pytest.mark.parametrize(
    ("shortfall", "expected_cents"),
    [
        ("pro_rata", 364_583),  # 500,000 * 105,000 s / 144,000 s = 364,583.33 -> 364,583
        ("nothing", 0),
    ],
)
def test_a_month_missing_the_hours_pays_by_policy(alice, ada, shortfall, expected_cents) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, shortfall=shortfall)
    for day in range(1, 9):  # 8 sessions of 3 h 38 min 45 s = 105,000 s; 8 streams
        start = at(3, day, 18)
        stream(alice.channel, start, start + timedelta(hours=3, minutes=38, seconds=45))
    payout = compute_payout(deal, MARCH, actor=ada)
    assert payout.streamed_seconds == 105_000
    assert not payout.requirements_met
    assert payout.amount_cents == expected_cents


def test_a_deal_starting_mid_month_is_prorated(alice, ada) -> None:
    deal = make_deal(
        alice.streamer, ada, amount_cents=300_000,
        starts_on=date(2025, 3, 15), ends_on=date(2026, 3, 14),
    )
    stream(alice.channel, at(3, 10, 12), at(3, 10, 22))  # before the term: not counted
    for day in range(16, 21):  # 5 * 4.5 h = 22.5 h >= 40 * 17/31 = 21.94 h; 5 >= 5 streams
        stream(alice.channel, at(3, day, 18), at(3, day, 22, 30))
    payout = compute_payout(deal, MARCH, actor=ada)
    assert (payout.streamed_seconds, payout.streams) == (81_000, 5)
    # 15..31 March = 17 of 31 days: 300,000 * 17/31 = 164,516.13 -> 164,516
    assert payout.amount_cents == 164_516


def test_a_session_crossing_midnight_at_months_end_goes_to_both_months(alice, ada) -> None:
    deal = make_deal(
        alice.streamer, ada, kind="per_hour", amount_cents=4_000,
        min_hours=Decimal(0), min_streams=1,
    )
    # 31 March 22:30 -> 1 April 01:15: 1.5 h in March, 1.25 h in April, a stream of March.
    stream(alice.channel, at(3, 31, 22, 30), at(4, 1, 1, 15))
    march = compute_payout(deal, MARCH, actor=ada)
    assert (march.streamed_seconds, march.streams) == (5_400, 1)
    assert march.amount_cents == 6_000  # $40/h * 1.5 h
    april = compute_payout(deal, Period(2025, 4), actor=ada)
    assert (april.streamed_seconds, april.streams) == (4_500, 0)
    # April has no stream of its own: 0 < 1 minimum, pro rata pays the hours anyway.
    assert april.amount_cents == 5_000  # $40/h * 1.25 h


def test_a_per_hour_deal_pays_its_rate_on_every_second(alice, ada) -> None:
    deal = make_deal(
        alice.streamer, ada, kind="per_hour", amount_cents=5_000,
        min_hours=Decimal(10), min_streams=2,
    )
    stream(alice.channel, at(3, 3, 18), at(3, 3, 21))  # 3 h
    stream(alice.channel, at(3, 4, 18), at(3, 4, 22, 20) + timedelta(seconds=30))  # 4:20:30
    stream(alice.channel, at(3, 5, 18), at(3, 5, 21))  # 3 h
    payout = compute_payout(deal, MARCH, actor=ada)
    assert payout.streamed_seconds == 37_230
    assert payout.amount_cents == 51_708  # 5,000 * 37,230 / 3,600 = 51,708.33 -> 51,708


def test_only_the_deals_own_streamer_counts(alice, bob, ada) -> None:
    deal = make_deal(alice.streamer, ada, kind="per_hour", amount_cents=1_000, min_hours=0,
                     min_streams=0)
    stream(alice.channel, at(3, 2, 10), at(3, 2, 11))
    stream(bob.channel, at(3, 2, 10), at(3, 2, 20))
    assert compute_payout(deal, MARCH, actor=ada).amount_cents == 1_000  # 1 h at $10


def test_recomputing_a_draft_replaces_it(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, kind="per_hour", amount_cents=1_000, min_hours=0,
                     min_streams=0)
    stream(alice.channel, at(3, 2, 10), at(3, 2, 12))
    first = compute_payout(deal, MARCH, actor=ada)
    stream(alice.channel, at(3, 3, 10), at(3, 3, 11))  # a session recorded late
    second = compute_payout(deal, MARCH, actor=grace)
    assert second.pk == first.pk
    assert Payout.objects.count() == 1
    assert second.amount_cents == 3_000  # 3 h at $10
    assert second.computed_by == grace
    assert second.lines.count() == second.lines.values("position").distinct().count()
    assert second.lines.last().amount_cents == 3_000
    assert transitions(second) == [("ada", "", "draft"), ("grace", "draft", "draft")]
    assert PayoutEvent.objects.last().note == "recomputed with terms v1: $20.00 → $30.00"


def test_the_admin_who_computed_cannot_approve_but_another_can(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = compute_payout(deal, MARCH, actor=ada)
    with pytest.raises(PayoutError, match="cannot approve it too"):
        approve_payout(payout, actor=ada)
    assert Payout.objects.get().status == "draft"
    assert not LedgerEntry.objects.exists()
    refusal = PayoutEvent.objects.get(refused=True)
    assert (refusal.actor_name, refusal.from_status, refusal.to_status) == (
        "ada", "draft", "approved"
    )
    assert "cannot approve it too" in refusal.note
    approved = approve_payout(payout, actor=grace)
    assert (approved.status, approved.approved_by) == ("approved", grace)
    # The accrual: owed to alice, charged to deal expense.
    assert ledger.balances() == {
        ("deal_expense", "USD"): 500_000,
        ("streamer_payable", "USD"): -500_000,
    }
    # Approving again changes nothing and writes nothing.
    approve_payout(payout, actor=grace)
    assert LedgerEntry.objects.count() == 2
    assert transitions(payout) == [("ada", "", "draft"), ("grace", "draft", "approved")]


def test_a_paid_payout_cannot_be_voided_or_recomputed(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = compute_payout(deal, MARCH, actor=ada)
    approve_payout(payout, actor=grace)
    mark_paid(payout, actor=ada, reference="WIRE-2025-04-001")
    with pytest.raises(PayoutError, match="paid payout cannot be voided"):
        void_payout(payout, actor=grace, reason="changed my mind")
    with pytest.raises(PayoutError, match="already paid"):
        compute_payout(deal, MARCH, actor=grace)
    mark_paid(payout, actor=ada, reference="WIRE-2025-04-001")  # the same again: a no-op
    with pytest.raises(PayoutError, match="cannot be marked paid"):
        mark_paid(payout, actor=ada, reference="WIRE-OTHER")
    payout.refresh_from_db()
    assert (payout.status, payout.payment_reference) == ("paid", "WIRE-2025-04-001")
    assert ledger.balances() == {
        ("deal_expense", "USD"): 500_000,
        ("streamer_payable", "USD"): 0,
        ("cash", "USD"): -500_000,
    }
    assert_ledger_balances()


def test_an_approved_payout_cannot_be_recomputed_until_voided(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = compute_payout(deal, MARCH, actor=ada)
    approve_payout(payout, actor=grace)
    with pytest.raises(PayoutError, match="void it first"):
        compute_payout(deal, MARCH, actor=ada)


def test_every_transition_leaves_an_audit_row_and_the_ledger_follows(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = compute_payout(deal, MARCH, actor=ada)
    payout = compute_payout(deal, MARCH, actor=ada)
    approve_payout(payout, actor=grace)
    void_payout(payout, actor=grace, reason="wrong streamer account")
    payout = compute_payout(deal, MARCH, actor=grace)
    approve_payout(payout, actor=ada)
    mark_paid(payout, actor=grace, reference="WIRE-42")
    assert transitions(payout) == [
        ("ada", "", "draft"),
        ("ada", "draft", "draft"),
        ("grace", "draft", "approved"),
        ("grace", "approved", "void"),
        ("grace", "void", "draft"),
        ("ada", "draft", "approved"),
        ("grace", "approved", "paid"),
    ]
    void_event = PayoutEvent.objects.get(to_status="void")
    assert void_event.note == "wrong streamer account"
    assert [
        (entry.kind, entry.account, entry.debit_cents, entry.credit_cents)
        for entry in LedgerEntry.objects.all()
    ] == [
        ("accrual", "deal_expense", 500_000, 0),
        ("accrual", "streamer_payable", 0, 500_000),
        ("reversal", "streamer_payable", 500_000, 0),
        ("reversal", "deal_expense", 0, 500_000),
        ("accrual", "deal_expense", 500_000, 0),
        ("accrual", "streamer_payable", 0, 500_000),
        ("payment", "streamer_payable", 500_000, 0),
        ("payment", "cash", 0, 500_000),
    ]
    assert LedgerEntry.objects.values("transaction_id").distinct().count() == 4
    assert_ledger_balances()
    assert ledger.balances()[("streamer_payable", "USD")] == 0


def test_voiding_a_draft_needs_a_reason_and_moves_no_money(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000)
    payout = compute_payout(deal, MARCH, actor=ada)
    with pytest.raises(PayoutError, match="reason"):
        void_payout(payout, actor=ada, reason="  ")
    void_payout(payout, actor=ada, reason="duplicate deal")
    assert Payout.objects.get().status == "void"
    assert not LedgerEntry.objects.exists()
    with pytest.raises(PayoutError, match="void payout cannot be approved"):
        approve_payout(payout, actor=ada)


def test_marking_paid_needs_an_approved_payout_and_a_reference(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000)
    payout = compute_payout(deal, MARCH, actor=ada)
    with pytest.raises(PayoutError, match="draft payout cannot be marked paid"):
        mark_paid(payout, actor=grace, reference="WIRE-1")
    approve_payout(payout, actor=grace)
    with pytest.raises(PayoutError, match="reference"):
        mark_paid(payout, actor=grace, reference="")
    assert Payout.objects.get().status == "approved"


def test_a_zero_payout_is_approved_without_ledger_rows(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, shortfall="nothing")
    payout = compute_payout(deal, MARCH, actor=ada)  # no streams at all: nothing is owed
    assert payout.amount_cents == 0
    approve_payout(payout, actor=grace)
    assert not LedgerEntry.objects.exists()
    assert transitions(payout)[-1] == ("grace", "draft", "approved")


def test_a_period_that_has_not_ended_cannot_be_computed(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000)
    with pytest.raises(PayoutError, match="has not ended"):
        compute_payout(deal, MARCH, actor=ada, now=at(3, 31, 23, 59))
    assert not Payout.objects.exists()


def test_an_unsigned_deal_or_a_period_outside_the_term_cannot_be_computed(
    alice, bob, ada
) -> None:
    draft = draft_deal(alice.streamer, ada)
    with pytest.raises(PayoutError, match="never signed"):
        compute_payout(draft, MARCH, actor=ada)
    deal = make_deal(bob.streamer, ada, starts_on=date(2025, 4, 1))
    with pytest.raises(PayoutError, match="does not cover 2025-03"):
        compute_payout(deal, MARCH, actor=ada)
    assert not Payout.objects.exists()


def test_an_anonymous_actor_cannot_approve(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000)
    payout = compute_payout(deal, MARCH, actor=None, actor_name="cron")
    with pytest.raises(PayoutError, match="by a person"):
        approve_payout(payout, actor=None)


def test_the_database_refuses_a_second_payout_for_a_deal_and_period(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000)
    payout = compute_payout(deal, MARCH, actor=ada)
    with pytest.raises(IntegrityError), transaction.atomic():
        Payout.objects.create(
            deal=deal, period_start=payout.period_start, amount_cents=1, currency="USD",
            computed_at=payout.computed_at,
        )


def test_the_database_refuses_a_ledger_row_with_both_or_neither_side(alice, ada, grace) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = compute_payout(deal, MARCH, actor=ada)
    for debit, credit in [(5, 5), (0, 0), (-5, 0)]:
        with pytest.raises(IntegrityError), transaction.atomic():
            LedgerEntry.objects.create(
                transaction_id="00000000-0000-0000-0000-000000000001", payout=payout,
                kind="accrual", account="cash", debit_cents=debit, credit_cents=credit,
                currency="USD",
            )


def test_a_forged_one_sided_transaction_is_reported_as_unbalanced(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = compute_payout(deal, MARCH, actor=ada)
    LedgerEntry.objects.create(
        transaction_id="00000000-0000-0000-0000-000000000002", payout=payout, kind="accrual",
        account="cash", debit_cents=5, currency="USD",
    )
    assert [str(t) for t in ledger.unbalanced_transactions()] == [
        "00000000-0000-0000-0000-000000000002"
    ]
