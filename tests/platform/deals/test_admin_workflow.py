"""The admin a finance team uses: money typed and shown in dollars on every page, the
workflow as buttons that show the amount, refusals kept and shown, the ledger's balances."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from unittest import mock

from django.contrib import messages as levels
from django.contrib.messages import get_messages

from deals.actions import approve_payout, compute_payout, correct_payout, mark_paid
from deals.calculation import Period
from deals.models import Deal, DealVersion, Payout, PayoutEvent
from tests.support.deals import ResultTable, act, at, deal_form, make_deal, stream

MARCH = Period(2025, 3)
PAYOUTS = "/admin/deals/payout/"


def said(response) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def page(client, user, path: str) -> str:
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 200, path
    return response.content.decode()


def test_5000_00_in_the_guarantee_field_is_5000_dollars_on_every_page(
    alice, ada, grace, client
) -> None:
    client.force_login(ada)
    client.post("/admin/deals/deal/add/", deal_form(alice.streamer, amount="5000.00",
                                                    min_hours="0", min_streams="0",
                                                    confirm="on"))
    deal = Deal.objects.get()
    assert deal.versions.get().amount_cents == 500_000
    client.force_login(grace)
    client.post(f"/admin/deals/deal/{deal.pk}/sign/")
    client.post(f"{PAYOUTS}compute/", {"period": "2025-03"})
    payout = Payout.objects.get()
    client.force_login(ada)
    client.post(f"{PAYOUTS}{payout.pk}/approve/")
    client.force_login(grace)
    client.post(f"{PAYOUTS}{payout.pk}/pay/", {"reference": "WIRE-1"})
    assert Payout.objects.get().status == "paid"
    pages = {
        "deal list": page(client, ada, "/admin/deals/deal/"),
        "deal page": page(client, ada, f"/admin/deals/deal/{deal.pk}/change/"),
        "deal history": page(client, ada, f"/admin/deals/deal/{deal.pk}/history/"),
        "payout list": page(client, ada, PAYOUTS),
        "payout page": page(client, ada, f"{PAYOUTS}{payout.pk}/change/"),
        "payout history": page(client, ada, f"{PAYOUTS}{payout.pk}/history/"),
        "ledger": page(client, ada, "/admin/deals/ledgerentry/"),
        "earnings": page(client, alice.user, "/earnings"),
        "payout for the streamer": page(client, alice.user, f"/earnings/payouts/{payout.pk}"),
    }
    for name, text in pages.items():
        assert "$5,000.00" in text, name
        assert "500000" not in text, name
        assert "500,000" not in text, name
    assert 'value="5000.00"' in pages["deal page"]  # the form shows units, not cents


def test_an_amount_with_three_decimals_is_refused_and_nothing_is_saved(alice, ada, client) -> None:
    client.force_login(ada)
    response = client.post("/admin/deals/deal/add/", deal_form(alice.streamer,
                                                               amount="5000.005"))
    assert response.status_code == 200
    assert "5000.005 has 3 decimals" in response.content.decode()
    assert not Deal.objects.exists()


def test_a_per_hour_rate_is_typed_in_dollars_and_checked_against_the_usual_range(
    alice, ada, client
) -> None:
    client.force_login(ada)
    hourly = {"kind": "per_hour", "min_hours": "0", "min_streams": "0"}
    huge = client.post("/admin/deals/deal/add/",
                       deal_form(alice.streamer, amount="10000000.00", **hourly))
    assert "$10,000,000.00 an hour is above the usual $250.00" in huge.content.decode()
    assert not Deal.objects.exists()
    client.post("/admin/deals/deal/add/", deal_form(alice.streamer, amount="50.00", **hourly))
    version = DealVersion.objects.get()
    assert (version.kind, version.amount_cents) == ("per_hour", 5_000)
    assert "$50.00 / hour" in page(client, ada, "/admin/deals/deal/")


def test_the_form_refuses_impossible_hours_an_unknown_currency_and_an_overlap(
    alice, ada, client
) -> None:
    make_deal(alice.streamer, ada)
    client.force_login(ada)
    text = client.post("/admin/deals/deal/add/", deal_form(
        alice.streamer, min_hours="800", currency="XYZ", starts_on="2025-06-01",
        ends_on="2026-05-31",
    )).content.decode()
    assert "Select a valid choice. XYZ is not one of the available choices." in text
    text = client.post("/admin/deals/deal/add/", deal_form(
        alice.streamer, min_hours="800", starts_on="2025-06-01", ends_on="2026-05-31",
    )).content.decode()
    assert "800 hours a month cannot be streamed: 2026-02 has 672 hours." in text
    assert "a streamer has one deal at a time" in text
    assert Deal.objects.count() == 1


def test_zero_committed_hours_are_saved_only_once_confirmed(alice, ada, client) -> None:
    client.force_login(ada)
    form = deal_form(alice.streamer, min_hours="0", min_streams="0")
    text = client.post("/admin/deals/deal/add/", form).content.decode()
    assert "0 committed hours and 0 streams" in text
    assert "I have checked the figures" in text
    assert not Deal.objects.exists()
    client.post("/admin/deals/deal/add/", form | {"confirm": "on"})
    assert Deal.objects.count() == 1


def test_changing_a_signed_deal_in_the_form_proposes_a_version_another_admin_signs(
    alice, ada, grace, client
) -> None:
    deal = make_deal(alice.streamer, ada)
    client.force_login(ada)
    form = deal_form(alice.streamer, amount="6000.00", effective_from="2025-06-01")
    del form["streamer"], form["starts_on"]  # read-only once signed
    response = client.post(f"/admin/deals/deal/{deal.pk}/change/", form, follow=True)
    assert response.status_code == 200
    assert ("Proposed v2, applying from 2025-06-01 once another admin signs it; until then "
            "the signed terms apply.") in [text for _, text in said(response)]
    text = page(client, ada, f"/admin/deals/deal/{deal.pk}/change/")
    assert "You wrote these terms: another admin must sign them." in text
    sign_page = page(client, grace, f"/admin/deals/deal/{deal.pk}/sign/")
    assert "amount $5,000.00 → $6,000.00" in sign_page
    assert "Sign v2: $6,000.00 / month" in sign_page
    client.post(f"/admin/deals/deal/{deal.pk}/sign/")
    assert deal.versions.get(number=2).status == "signed"


def test_the_payout_page_has_the_workflow_as_buttons_showing_the_amount(
    alice, ada, grace, client
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = compute_payout(deal, MARCH, actor=ada)
    mine = page(client, ada, f"{PAYOUTS}{payout.pk}/change/")
    assert "Approve $5,000.00</button>" in mine
    assert 'id="payout-approve" disabled' in mine
    assert "You computed this payout: another admin must approve it." in mine
    theirs = page(client, grace, f"{PAYOUTS}{payout.pk}/change/")
    assert 'id="payout-approve" >' in theirs
    assert "Void $5,000.00</button>" in theirs

    approved = client.post(f"{PAYOUTS}{payout.pk}/approve/", follow=True)
    assert (levels.SUCCESS, "Approved: $5,000.00 for alice · 2025-03 · $5,000.00 (approved).") \
        in said(approved)
    again = client.post(f"{PAYOUTS}{payout.pk}/approve/", follow=True)
    assert said(again) == [(levels.INFO, "Nothing changed: the payout was already approved.")]
    text = again.content.decode()
    assert "Mark paid $5,000.00</button>" in text
    assert "You approved this payout: another admin must mark it paid." in text

    client.force_login(ada)
    client.post(f"{PAYOUTS}{payout.pk}/pay/", {"reference": "WIRE-9"}, follow=True)
    repeat = client.post(f"{PAYOUTS}{payout.pk}/pay/", {"reference": "WIRE-9"}, follow=True)
    assert said(repeat) == [
        (levels.INFO, "Nothing changed: the payout was already marked paid with that reference.")
    ]
    assert "Correct this paid payout" in repeat.content.decode()
    assert client.get(f"{PAYOUTS}{payout.pk}/approve/").status_code == 404  # buttons post


def test_refused_attempts_are_kept_in_the_audit_trail_and_shown(alice, ada, grace, client) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    payout = compute_payout(deal, MARCH, actor=ada)
    client.force_login(ada)
    response = act(client, "approve", [payout], follow=True)
    assert (levels.ERROR, f"Refused for {payout}: ada computed this payout and cannot approve "
                          "it too: another admin must.") in said(response)
    refusal = PayoutEvent.objects.get(refused=True)
    assert (refusal.actor_name, refusal.from_status, refusal.to_status) == (
        "ada", "draft", "approved"
    )
    change = page(client, grace, f"{PAYOUTS}{payout.pk}/change/")
    assert '<strong class="deals-refused">refused</strong>' in change
    history = page(client, grace, f"{PAYOUTS}{payout.pk}/history/")
    assert "refused: draft → approved" in history
    assert "ada computed this payout and cannot approve it too" in history
    assert "computed with terms v1: $5,000.00" in history  # the trail, not an empty page


def test_a_deals_history_page_is_its_trail(alice, ada, grace, client) -> None:
    from deals.actions import sign_deal

    deal = make_deal(alice.streamer, ada)
    try:
        sign_deal(deal, actor=grace)  # nothing waiting: changes nothing, refuses nothing
    finally:
        history = page(client, grace, f"/admin/deals/deal/{deal.pk}/history/")
    assert "Audit trail" in history
    assert "created with terms v1: flat monthly guarantee $5,000.00 a month" in history
    assert "draft → active" in history


def test_a_missed_minimum_is_never_shown_in_green(alice, bob, ada, client) -> None:
    make_deal(alice.streamer, ada, amount_cents=500_000)  # 40 h: missed, nothing streamed
    make_deal(bob.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)  # met
    client.force_login(ada)
    response = client.post(f"{PAYOUTS}compute/", {"period": "2025-03"}, follow=True)
    shown = dict((text.split(":")[0], level) for level, text in said(response))
    assert shown == {"alice": levels.WARNING, "bob": levels.SUCCESS}
    text = response.content.decode()
    assert 'class="warning">Alice: computed $0.00 (a minimum was missed)' in text
    assert '<span class="deals-missed">missed</span>' in text
    # Django admin draws "info" like "success" (green, a tick): the page loads a style that
    # gives information its own look.
    assert "deals/admin.css" in text
    from django.contrib.staticfiles import finders

    css = Path(finders.find("deals/admin.css")).read_text()
    assert "ul.messagelist li.info" in css


def test_the_ledger_page_starts_with_every_accounts_balance(
    alice, ada, grace, client
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    paid = mark_paid(approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace),
                     actor=ada, reference="WIRE-1")
    approve_payout(correct_payout(paid, kind="clawback", amount_cents=10_000, actor=ada,
                                  reason="rerun"), actor=grace)
    text = page(client, ada, "/admin/deals/ledgerentry/")
    balances = text.split('id="ledger-balances"', 1)[1].split("</table>", 1)[0]
    table = ResultTable()
    table.feed('<table id="result_list">' + balances.split("<table>", 1)[1] + "</table>")
    assert [row for row in table.rows if row] == [
        ["Account", "Currency", "Balance"],
        ["asset: cash cash", "USD", "-$5,000.00"],
        ["expense: streamer deals deal_expense", "USD", "$4,900.00"],
        ["liability: owed to streamers streamer_payable", "USD", "$0.00"],
        ["asset: owed back by streamers streamer_receivable", "USD", "$100.00"],
    ]
    assert "Every transaction balances" in text


def test_a_correction_is_drafted_from_the_paid_payouts_page(
    alice, ada, grace, client
) -> None:
    deal = make_deal(alice.streamer, ada, amount_cents=500_000, min_hours=0, min_streams=0)
    paid = mark_paid(approve_payout(compute_payout(deal, MARCH, actor=ada), actor=grace),
                     actor=ada, reference="WIRE-1")
    stream(alice.channel, at(3, 30, 20), at(3, 30, 22))  # recorded after the payment
    form = page(client, grace, f"{PAYOUTS}{paid.pk}/correct/")
    assert "Settled for the month so far: <strong>$5,000.00</strong>" in form
    refused = client.post(f"{PAYOUTS}{paid.pk}/correct/",
                          {"kind": "clawback", "amount": "6000.00", "reason": "x"})
    assert "cannot claw back $6,000.00" in refused.content.decode()
    response = client.post(f"{PAYOUTS}{paid.pk}/correct/",
                           {"kind": "adjustment", "amount": "250.00", "reason": "late session"})
    correction = Payout.objects.get(kind="adjustment")
    assert response.url == f"{PAYOUTS}{correction.pk}/change/"
    assert (correction.amount_cents, correction.computed_by, correction.status) == (
        25_000, grace, "draft"
    )
    with mock.patch("django.utils.timezone.now", return_value=at(4, 2)):
        text = page(client, ada, f"{PAYOUTS}{correction.pk}/change/")
    assert "Approve +$250.00</button>" in text
    assert Payout.objects.get(pk=paid.pk).amount_cents == 500_000
    assert date(2025, 3, 1) == correction.period_start
