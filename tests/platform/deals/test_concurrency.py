"""Concurrent payout work on PostgreSQL: twenty threads, each on its own connection.

Half compute as ada and approve as grace, half the other way round, all released at once.
Whatever the interleaving, the database must end with one payout, approved once, and one
balanced accrual. Refusals (already approved, self-approval after someone else's
recompute) are the expected outcome for the losers; any other error fails the test.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections

from deals import ledger
from deals.actions import PayoutError, approve_payout, compute_payout
from deals.calculation import Period
from deals.models import LedgerEntry, Payout, PayoutEvent
from tests.support.deals import at, make_deal, stream
from tests.support.services import REQUIRE_SERVICES

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ATTEMPTS = 20


@pytest.fixture(autouse=True)
def _postgresql_only(db: None) -> None:
    if connection.vendor != "postgresql":
        if REQUIRE_SERVICES:
            pytest.fail("GOLIVE_REQUIRE_SERVICES=1 but the database is not PostgreSQL")
        pytest.skip("row locks need PostgreSQL: set DATABASE_URL=postgres://…")


def test_twenty_concurrent_compute_and_approve_make_one_payout_and_one_accrual(
    alice, ada, grace
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000)  # 40 h, 8 streams, pro rata
    for day in range(1, 9):  # 8 sessions of 4 h = 32 h: 500,000 * 32/40 = 400,000 cents
        stream(alice.channel, at(3, day, 18), at(3, day, 18) + timedelta(hours=4))
    march = Period(2025, 3)
    start = threading.Barrier(ATTEMPTS)
    outcomes: list[str] = []
    unexpected: list[BaseException] = []

    def attempt(computer: Any, approver: Any) -> None:
        try:
            start.wait(timeout=30)
            try:
                payout = compute_payout(deal, march, actor=computer)
            except PayoutError:
                payout = Payout.objects.get(deal=deal)
            try:
                approve_payout(payout, actor=approver)
                outcomes.append("approved")
            except PayoutError as error:
                outcomes.append(f"refused: {error}")
        except BaseException as error:  # reported below, with the others
            unexpected.append(error)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=attempt, args=(ada, grace) if n % 2 else (grace, ada))
        for n in range(ATTEMPTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert unexpected == []
    assert len(outcomes) == ATTEMPTS
    assert "approved" in outcomes

    payout = Payout.objects.get()
    assert (payout.deal_id, payout.status) == (deal.pk, "approved")
    assert payout.amount_cents == 400_000
    assert payout.approved_by_id != payout.computed_by_id
    assert PayoutEvent.objects.filter(to_status="approved", refused=False).count() == 1
    assert PayoutEvent.objects.filter(from_status="", refused=False).count() == 1  # created once
    # Every refused approval is in the trail, written after its own transaction rolled back.
    refused = sum(outcome.startswith("refused") for outcome in outcomes)
    assert PayoutEvent.objects.filter(refused=True, to_status="approved").count() == refused
    entries = list(LedgerEntry.objects.all())
    assert len(entries) == 2
    assert {entry.transaction_id for entry in entries} == {entries[0].transaction_id}
    assert ledger.unbalanced_transactions() == []
    assert ledger.balances() == {
        ("deal_expense", "USD"): 400_000,
        ("streamer_payable", "USD"): -400_000,
    }
