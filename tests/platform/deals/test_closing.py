"""Closing a period: the function, `manage.py payouts close`, and the Celery task."""

from __future__ import annotations

import json
from datetime import date

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deals.actions import approve_payout, close_period, compute_payout, set_deal_status
from deals.calculation import Period
from deals.models import LedgerEntry, Payout
from deals.tasks import close_payout_period
from tests.support.deals import at, make_deal, stream
from tests.support.personas import make_streamer

MARCH = Period(2025, 3)


def test_closing_computes_every_deal_that_owes_and_leaves_decided_ones_alone(
    alice, bob, ada, grace
) -> None:
    carol = make_streamer("carol")
    dave = make_streamer("dave")
    flat = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    approved = make_deal(bob.streamer, ada, amount_cents=800_000, min_hours=0, min_streams=0)
    approve_payout(compute_payout(approved, MARCH, actor=ada), actor=grace)
    paused = make_deal(carol.streamer, ada)
    set_deal_status(paused, "paused", actor=ada)
    make_deal(dave.streamer, ada, starts_on=date(2025, 4, 1))  # starts after March
    results = close_period(MARCH, actor_name="test")
    outcomes = {result.deal.streamer.display_name: result.outcome for result in results}
    assert outcomes == {"alice": "computed", "bob": "skipped", "carol": "skipped"}
    payout = Payout.objects.get(deal=flat)
    assert (payout.status, payout.amount_cents, payout.computed_by_name) == (
        "draft", 500_000, "test"
    )
    assert payout.computed_by is None  # the system computed it: any admin may approve
    approve_payout(payout, actor=ada)
    # Again: the approved ones stay as they are; nothing new is written.
    assert {r.outcome for r in close_period(MARCH, actor_name="test")} == {"skipped"}
    assert Payout.objects.count() == 2
    assert LedgerEntry.objects.count() == 4


def test_a_dry_run_writes_nothing(alice, ada) -> None:
    make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    [result] = close_period(MARCH, dry_run=True)
    assert (result.outcome, result.amount_cents) == ("would compute", 500_000)
    assert not Payout.objects.exists()


def test_the_command_closes_a_period_and_prints_each_deal(alice, ada, capsys) -> None:
    make_deal(alice.streamer, ada, kind="per_hour", amount_cents=5_000, min_hours=0,
              min_streams=0)
    stream(alice.channel, at(3, 3, 18), at(3, 3, 20))  # 2 h at $50
    call_command("payouts", "close", "--period", "2025-03", "--dry-run")
    out = capsys.readouterr().out
    assert "2025-03: 1 deal(s) (dry run: nothing written)" in out
    assert "would compute" in out
    assert "$100.00" in out
    assert not Payout.objects.exists()
    call_command("payouts", "close", "--period", "2025-03", "--json")
    body = json.loads(capsys.readouterr().out)
    assert [(r["outcome"], r["amount_cents"]) for r in body["results"]] == [("computed", 10_000)]
    assert Payout.objects.get().computed_by_name.endswith("(payouts close)")


@pytest.mark.parametrize(
    ("period", "message"), [("2025-13", "usable month"), ("March", "YYYY-MM"),
                            ("2999-01", "has not ended")],
)
def test_the_command_refuses_a_bad_or_open_period(db, period, message) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("payouts", "close", "--period", period)


def test_the_ledger_command_prints_balances(alice, ada, grace, capsys) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)
    call_command("payouts", "ledger", "--json")
    body = json.loads(capsys.readouterr().out)
    assert body["unbalanced_transactions"] == []
    assert {(b["account"], b["debit_minus_credit"]) for b in body["balances"]} == {
        ("deal_expense", 500_000), ("streamer_payable", -500_000)
    }


def test_the_celery_task_closes_last_month(alice, ada) -> None:
    last_month = Period.containing(timezone.now()).previous()
    make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0,
              starts_on=last_month.first_day, ends_on=date(2099, 12, 31))
    # apply() runs the task body in this process whether or not a broker is configured (CI
    # points Celery at Redis, where no worker listens during the tests).
    result = close_payout_period.apply().get()
    assert result == {"period": last_month.label, "outcomes": {"computed": 1}}
    assert Payout.objects.get().period == last_month
