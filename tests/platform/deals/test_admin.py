"""Deals and payouts in Django admin: the list, the actions, the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from unittest import mock

from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deals.actions import approve_payout, compute_payout, mark_paid
from deals.calculation import Period
from deals.models import Deal, DealEvent, Payout
from tests.support.deals import ResultTable, act, at, deal_form, draft_deal, make_deal, stream
from tests.support.personas import make_streamer

MARCH = Period(2025, 3)
PAYOUTS = "/admin/deals/payout/"


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_deals_list_shows_this_periods_hours_against_the_minimum(alice, ada, client) -> None:
    make_deal(alice.streamer, ada, amount_cents=500_000)  # 40 h and 8 streams in 2025
    for day in range(1, 10):  # 9 sessions of 2 h = 18 h, 9 streams in March
        stream(alice.channel, at(3, day, 18), at(3, day, 20))
    client.force_login(ada)
    with mock.patch("django.utils.timezone.now", return_value=at(3, 20, 12)):
        page = client.get("/admin/deals/deal/").content.decode()
    assert "$5,000.00 / month" in page
    assert "width:45%" in page  # 18 h of 40 h
    assert "18.00 / 40.00 h · 9 / 8 streams" in page


def test_a_deal_above_10000_is_saved_only_once_its_figure_is_confirmed(bob, ada, client) -> None:
    client.force_login(ada)
    form = deal_form(bob.streamer, amount="25000.00")
    response = client.post("/admin/deals/deal/add/", form)
    assert response.status_code == 200  # the form again, with the warning
    assert "above the usual $10,000.00" in response.content.decode()
    assert not Deal.objects.exists()
    response = client.post("/admin/deals/deal/add/", form | {"confirm": "on"}, follow=True)
    assert response.status_code == 200
    deal = Deal.objects.get()
    version = deal.versions.get()
    assert (version.amount_cents, deal.status, deal.created_by) == (2_500_000, "draft", ada)
    event = DealEvent.objects.get()
    assert event.to_status == "draft"
    assert "confirmed despite: $25,000.00 a month is above the usual $10,000.00" in event.note


def test_the_add_form_refuses_a_term_ending_before_it_starts(bob, ada, client) -> None:
    client.force_login(ada)
    response = client.post(
        "/admin/deals/deal/add/",
        deal_form(bob.streamer, starts_on="2025-06-01", ends_on="2025-05-01"),
    )
    assert response.status_code == 200
    assert "cannot end" in response.content.decode()
    assert not Deal.objects.exists()


def test_signing_from_the_list_activates_the_deal(alice, ada, grace, client) -> None:
    deal = draft_deal(alice.streamer, ada)
    client.force_login(grace)
    act(client, "sign", [deal])
    deal.refresh_from_db()
    assert (deal.status, deal.signed_by) == ("active", grace)


def test_computing_a_period_in_admin_makes_drafts_only_another_admin_may_approve(
    alice, ada, grace, client
) -> None:
    make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    client.force_login(ada)
    assert client.get(f"{PAYOUTS}compute/").status_code == 200
    response = client.post(f"{PAYOUTS}compute/", {"period": "2025-03"})
    assert (response.status_code, response.url) == (302, f"{PAYOUTS}?period=2025-03")
    assert "alice" in client.get(response.url).content.decode()
    assert "alice" not in client.get(f"{PAYOUTS}?period=2025-02").content.decode()
    payout = Payout.objects.get()
    assert (payout.status, payout.computed_by, payout.amount_cents) == ("draft", ada, 500_000)

    response = act(client, "approve", [payout], follow=True)
    assert any("cannot approve it too" in m for m in said(response))
    assert Payout.objects.get().status == "draft"

    client.force_login(grace)
    act(client, "approve", [payout])
    assert Payout.objects.get().status == "approved"


def test_marking_paid_asks_for_the_reference_first_and_shows_the_amount(
    alice, ada, grace, client
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)
    client.force_login(ada)
    form = act(client, "mark_paid", [payout])
    assert form.status_code == 200
    page = form.content.decode()
    assert 'name="reference"' in page
    assert "$5,000.00" in page
    assert Payout.objects.get().status == "approved"
    act(client, "mark_paid", [payout], apply="1", reference="WIRE-7", follow=True)
    payout.refresh_from_db()
    assert (payout.status, payout.payment_reference, payout.paid_by) == ("paid", "WIRE-7", ada)
    again = act(client, "mark_paid", [payout], apply="1", reference="WIRE-7", follow=True)
    assert said(again) == ["Nothing changed for 1: already paid with that reference."]


def test_voiding_asks_for_a_reason_and_a_paid_payout_stays_paid(alice, ada, grace, client) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)
    mark_paid(payout, actor=ada, reference="WIRE-8")
    client.force_login(ada)
    page = act(client, "void", [payout]).content.decode()
    assert 'name="reason"' in page
    assert "$5,000.00" in page
    response = act(client, "void", [payout], apply="1", reason="oops", follow=True)
    assert any("paid payout cannot be voided" in m for m in said(response))
    assert Payout.objects.get().status == "paid"


def test_a_payout_page_shows_its_calculation_and_history_read_only(alice, ada, client) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000)
    payout = compute_payout(deal, MARCH, actor=ada)
    client.force_login(ada)
    page = client.get(f"{PAYOUTS}{payout.pk}/change/").content.decode()
    assert "calculation, line by line" in page.lower()
    assert "flat monthly guarantee $5,000.00 for the whole month" in page
    assert "40.00 h; streamed 0.00 h: missed" in page
    assert 'name="_save"' not in page


def test_the_csv_export_matches_the_admin_list(alice, bob, ada, grace, client) -> None:
    for persona, amount in [(alice, 500_000), (bob, 1_234_567)]:
        deal = make_deal(persona.streamer, ada, amount_cents=amount, min_hours=0, min_streams=0)
        stream(persona.channel, at(3, 5, 20), at(3, 5, 22, 30))
        compute_payout(deal, MARCH, actor=ada)
        april = compute_payout(deal, Period(2025, 4), actor=ada)
    mark_paid(approve_payout(april, actor=grace), actor=ada, reference="WIRE-9")
    client.force_login(ada)
    table = ResultTable()
    table.feed(client.get(PAYOUTS).content.decode())
    response = act(client, "export_csv", list(Payout.objects.all()))
    assert response["Content-Type"].startswith("text/csv")
    exported = list(csv.reader(io.StringIO(response.content.decode())))
    assert len(exported) == 5  # the header and four payouts
    assert exported == table.rows
    assert exported[0][:5] == ["Streamer", "Period", "Kind", "Status", "Amount"]
    # Newest period first, then by deal: alice's April, bob's April, alice's March, bob's March.
    assert exported[2][:7] == ["bob", "2025-04", "monthly", "paid", "$12,345.67", "0.00", "0"]
    assert exported[3][:7] == ["alice", "2025-03", "monthly", "draft", "$5,000.00", "2.50", "1"]


def test_staff_without_deal_permissions_cannot_open_deals_admin(olga, client) -> None:
    client.force_login(olga)
    assert client.get("/admin/deals/deal/").status_code == 403
    assert client.get(PAYOUTS).status_code == 403
    assert client.get(f"{PAYOUTS}compute/").status_code == 403


def test_the_list_progress_is_outside_the_term_when_the_deal_has_ended(alice, ada, client) -> None:
    make_deal(alice.streamer, ada)  # 2025 only
    client.force_login(ada)
    now = datetime(2026, 2, 1, tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=now):
        assert "outside the term" in client.get("/admin/deals/deal/").content.decode()


def test_the_csv_export_defuses_a_reference_that_looks_like_a_formula(
    alice, ada, grace, client
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)
    mark_paid(payout, actor=ada, reference='=HYPERLINK("http://evil")')
    client.force_login(ada)
    [_, row] = list(csv.reader(io.StringIO(act(client, "export_csv", [payout]).content.decode())))
    assert row[-1] == '\'=HYPERLINK("http://evil")'


def test_lists_read_this_periods_sessions_once_however_many_deals(alice, ada, client, api) -> None:
    def queries(path: str, user) -> int:
        for caller in (client, api):
            caller.force_login(user)
        with CaptureQueriesContext(connection) as captured:
            assert (api if path.startswith("/api/") else client).get(path).status_code == 200
        return len(captured)

    running = {"ends_on": date(2099, 12, 31)}  # covers today, so progress reads sessions
    make_deal(alice.streamer, ada, **running)
    one = [queries(path, ada) for path in ("/admin/deals/deal/", "/api/v1/earnings/deals/")]
    for name in ("erin", "frank", "gus"):
        make_deal(make_streamer(name).streamer, ada, **running)
    assert [queries(p, ada) for p in ("/admin/deals/deal/", "/api/v1/earnings/deals/")] == one


def test_the_ledger_is_listed_read_only_in_dollars(alice, ada, grace, client) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace)
    client.force_login(ada)
    table = ResultTable()
    page = client.get("/admin/deals/ledgerentry/").content.decode()
    table.feed(page)
    header, *rows = table.rows
    debit, credit = header.index("Debit"), header.index("Credit")
    assert sorted((row[debit], row[credit]) for row in rows) == [
        ("$5,000.00", "-"), ("-", "$5,000.00")  # one debit, one credit
    ]
    assert "500000" not in page
    assert "/admin/deals/ledgerentry/add/" not in page


def test_the_earnings_page_reads_this_periods_sessions_once_however_many_deals(
    alice, ada, client
) -> None:
    def queries() -> int:
        client.force_login(alice.user)
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/earnings").status_code == 200
        return len(captured)

    # One streamer has one deal at a time: a past one, today's, and one signed for later.
    make_deal(alice.streamer, ada, starts_on=date(2025, 1, 1), ends_on=date(2025, 12, 31))
    one = queries()
    make_deal(alice.streamer, ada, kind="per_hour", amount_cents=5_000,
              starts_on=date(2026, 1, 1), ends_on=date(2098, 12, 31))
    make_deal(alice.streamer, ada, starts_on=date(2099, 1, 1), ends_on=date(2099, 12, 31))
    assert queries() == one
