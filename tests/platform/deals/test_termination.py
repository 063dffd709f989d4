"""A deal earns nothing unless signed, and a termination never extends or restarts a term.

A draft that is terminated (or ended) is cancelled. Whatever path closes a month (the
`payouts close` command, the admin's compute page or deal action, Celery beat), a deal never
signed gets no payout; a terminated deal stores the last day its audit note states and owes
nothing after it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from django.core.management import call_command

from deals.actions import (
    DealError,
    PayoutError,
    approve_payout,
    close_period,
    compute_payout,
    set_deal_status,
)
from deals.calculation import Period
from deals.models import Deal, DealEvent, Payout
from deals.tasks import close_payout_period
from tests.support.deals import at, draft_deal, make_deal, stream

MARCH = Period(2025, 3)
NO_MINIMUMS = {"min_hours": 0, "min_streams": 0}


def stated_end(deal: Deal) -> date:
    """The last day the deal's latest status note says it ends on."""
    note = DealEvent.objects.filter(deal=deal, action="status", refused=False).last().note
    return date.fromisoformat(re.search(r"ends (\d{4}-\d{2}-\d{2})", note)[1])


def close_by(path: str, client, admin, deal: Deal) -> None:
    if path == "command":
        call_command("payouts", "close", "--period", "2025-03")
    elif path == "beat":
        close_payout_period.apply(args=["2025-03"]).get()
    elif path == "admin compute page":
        client.force_login(admin)
        client.post("/admin/deals/payout/compute/", {"period": "2025-03"})
    else:  # the deals list's action
        client.force_login(admin)
        client.post("/admin/deals/deal/", {
            "action": "compute_for_period", "_selected_action": [deal.pk], "apply": "1",
            "period": "2025-03",
        })


@pytest.mark.parametrize("path", ["command", "beat", "admin compute page", "admin action"])
@pytest.mark.parametrize("terminated", [True, False], ids=["terminated draft", "never signed"])
def test_a_deal_never_signed_gets_no_payout_whatever_closes_the_month(
    alice, ada, grace, client, path, terminated
) -> None:
    deal = draft_deal(alice.streamer, ada, amount_cents=300_000, ends_on=date(2026, 12, 31),
                      **NO_MINIMUMS)
    stream(alice.channel, at(3, 2, 18), at(3, 2, 20))
    if terminated:
        deal = set_deal_status(deal, "terminated", actor=ada, note="no agreement")
        assert deal.status == "cancelled"
        assert "never owed anything" in DealEvent.objects.filter(deal=deal).last().note
    close_by(path, client, grace, deal)
    assert not Payout.objects.exists()


def test_the_command_does_not_even_list_a_cancelled_draft(alice, ada, capsys) -> None:
    deal = draft_deal(alice.streamer, ada, amount_cents=300_000, **NO_MINIMUMS)
    set_deal_status(deal, "terminated", actor=ada)
    call_command("payouts", "close", "--period", "2025-03", "--dry-run")
    out = capsys.readouterr().out
    assert "2025-03: 0 deal(s)" in out
    assert "$3,000.00" not in out


def test_terminating_before_the_start_stores_the_stated_day_and_nothing_is_ever_owed(
    alice, ada, grace
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=1_000_000_000, **NO_MINIMUMS,
                     starts_on=date(2027, 6, 1), ends_on=date(2027, 12, 31))
    deal = set_deal_status(deal, "terminated", actor=grace, effective_on=date(2026, 12, 5))
    note = DealEvent.objects.filter(deal=deal).last().note
    assert "ends 2026-12-05 instead of 2027-12-31" in note
    assert "before its start on 2027-06-01" in note
    assert deal.ends_on == stated_end(deal) == date(2026, 12, 5)
    stream(alice.channel, datetime(2027, 6, 3, 18, tzinfo=UTC),
           datetime(2027, 6, 3, 20, tzinfo=UTC))  # a single 2 h stream
    later = datetime(2028, 1, 2, tzinfo=UTC)
    month = Period(2026, 12)
    for _ in range(13):  # December 2026 to December 2027
        assert close_period(month, now=later) == []
        with pytest.raises(PayoutError, match="does not cover"):
            compute_payout(deal, month, actor=ada, now=later)
        month = month.next()
    assert not Payout.objects.exists()


def test_terminating_mid_term_stores_the_stated_day_and_the_following_months_owe_nothing(
    alice, ada, grace
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=300_000, **NO_MINIMUMS)  # all of 2025
    for month in range(1, 13):
        stream(alice.channel, at(month, 2, 18), at(month, 2, 20))
    terminated_at = datetime(2025, 4, 10, 9, tzinfo=UTC)
    deal = set_deal_status(deal, "terminated", actor=grace, note="breach of exclusivity",
                           now=terminated_at)
    assert deal.ends_on == stated_end(deal) == date(2025, 4, 10)
    assert "ends 2025-04-10 instead of 2025-12-31" in DealEvent.objects.get(action="status").note
    owed = {}
    for month in range(1, 13):
        for closing in close_period(Period(2025, month)):
            owed[month] = closing.amount_cents
    # January to March in full, April 1-10 = 10/30 of $3,000, nothing from May on.
    assert owed == {1: 300_000, 2: 300_000, 3: 300_000, 4: 100_000}
    for month in range(5, 13):
        with pytest.raises(PayoutError, match="does not cover"):
            compute_payout(deal, Period(2025, month), actor=ada)
    assert Payout.objects.count() == 4


def test_a_last_day_after_the_end_never_extends_the_term(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, ends_on=date(2025, 6, 30))
    deal = set_deal_status(deal, "terminated", actor=ada, effective_on=date(2025, 9, 1))
    assert deal.ends_on == date(2025, 6, 30)
    assert "its end is unchanged" in DealEvent.objects.last().note


def test_ending_a_deal_that_has_not_started_is_refused_terminate_it_instead(alice, ada) -> None:
    deal = make_deal(alice.streamer, ada, starts_on=date(2027, 6, 1), ends_on=date(2027, 12, 31))
    with pytest.raises(DealError, match="terminate it instead"):
        set_deal_status(deal, "ended", actor=ada, effective_on=date(2026, 12, 5))
    assert Deal.objects.get().ends_on == date(2027, 12, 31)


def test_a_termination_cannot_reach_back_into_a_month_already_approved(
    alice, ada, grace
) -> None:
    deal = make_deal(alice.streamer, ada, **NO_MINIMUMS)
    approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)
    with pytest.raises(DealError, match="2025-03 is already approved or paid"):
        set_deal_status(deal, "terminated", actor=ada, effective_on=date(2025, 3, 15))
    deal.refresh_from_db()
    assert (deal.status, deal.ends_on) == ("active", date(2025, 12, 31))
    refused = DealEvent.objects.get(refused=True)
    assert (refused.actor_name, refused.to_status) == ("ada", "terminated")
    ended = set_deal_status(deal, "terminated", actor=ada, effective_on=date(2025, 3, 31))
    assert ended.ends_on == date(2025, 3, 31)


def test_a_terminated_deals_pending_change_is_withdrawn(alice, ada, grace) -> None:
    from deals.actions import save_deal
    from tests.support.deals import terms

    deal = make_deal(alice.streamer, ada)
    save_deal(deal, terms(amount_cents=900_000), actor=ada, effective_from=date(2025, 6, 1))
    set_deal_status(deal, "terminated", actor=grace, effective_on=date(2025, 5, 31))
    assert list(deal.versions.values_list("status", flat=True)) == ["signed", "withdrawn"]
