"""The streamer side: the earnings page and `/api/v1/earnings/…`. Each streamer sees only
their own deals and payouts (someone else's is a 404); staff with deal permissions see all.

alice and bob each have a deal; their February 2025 payouts are computed by ada and
approved by grace. Where "this period" matters, the clock is 20 March 2025 12:00 UTC.
"""

from __future__ import annotations

from unittest import mock

import pytest

from deals.actions import approve_payout, compute_payout, void_payout
from deals.calculation import Period
from tests.support.deals import at, draft_deal, make_deal, stream

FEBRUARY = Period(2025, 2)
MID_MARCH = at(3, 20, 12)


@pytest.fixture
def deals(alice, bob, ada, grace):
    """alice: $5,000/month, 40 h, 8 streams. bob: $7,777.77/month, no minimums."""
    alice_deal = make_deal(alice.streamer, ada, amount_cents=500_000)
    bob_deal = make_deal(bob.streamer, ada, amount_cents=777_777, min_hours=0, min_streams=0)
    for day in range(1, 11):  # alice in February: 10 sessions of 4 h = 40 h, 10 streams
        stream(alice.channel, at(2, day, 18), at(2, day, 22), peak=50)
    for day in range(1, 4):  # alice in March until the 20th: 3 sessions of 4 h = 12 h
        stream(alice.channel, at(3, day, 18), at(3, day, 22))
    payouts = {}
    for name, deal in [("alice", alice_deal), ("bob", bob_deal)]:
        payouts[name] = approve_payout(compute_payout(deal, FEBRUARY, actor=ada), actor=grace)
    return {"alice": alice_deal, "bob": bob_deal, "payouts": payouts}


def page(client, user, path: str = "/earnings"):
    client.force_login(user)
    with mock.patch("django.utils.timezone.now", return_value=MID_MARCH):
        return client.get(path)


def test_the_earnings_page_needs_a_login(client) -> None:
    response = client.get("/earnings")
    assert response.status_code == 302
    assert response.url == "/accounts/login/?next=/earnings"


def test_a_streamer_logs_in_with_their_password_and_opens_their_earnings(alice, client) -> None:
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": "alice-pw-1234", "next": "/earnings"},
    )
    assert (response.status_code, response.url) == (302, "/earnings")
    assert client.get("/earnings").status_code == 200


def test_a_streamer_sees_their_terms_progress_and_payouts_and_nobody_elses(
    deals, alice, client
) -> None:
    text = page(client, alice.user).content.decode()
    assert "$5,000.00" in text  # alice's terms and her February payout
    assert "2025-01-01 to 2025-12-31" in text
    assert "2025-03 so far" in text
    assert "12.00 of 40.00 hours" in text  # 3 sessions of 4 h
    assert "3 of 8 streams" in text
    assert "width: 30%" in text  # 12 h of 40 h
    assert "2025-02" in text
    assert "$7,777.77" not in text  # bob's deal and payout
    assert "bob" not in text


def test_another_streamers_payout_page_is_not_found(deals, alice, bob, client) -> None:
    bobs = deals["payouts"]["bob"]
    assert page(client, alice.user, f"/earnings/payouts/{bobs.pk}").status_code == 404
    own = page(client, bob.user, f"/earnings/payouts/{bobs.pk}")
    assert own.status_code == 200
    assert "flat monthly guarantee $7,777.77 for the whole month" in own.content.decode()


def test_drafts_and_void_payouts_are_not_shown_to_the_streamer(
    deals, alice, ada, client
) -> None:
    alice_deal = deals["alice"]
    draft = compute_payout(alice_deal, Period(2025, 1), actor=ada)
    voided = compute_payout(alice_deal, Period(2025, 3), actor=ada)
    void_payout(voided, actor=ada, reason="test")
    assert page(client, alice.user, f"/earnings/payouts/{draft.pk}").status_code == 404
    text = page(client, alice.user).content.decode()
    assert "2025-01" not in text.split("Payouts", 1)[1]


def test_a_user_without_a_deal_sees_an_empty_page(deals, charlie, client) -> None:
    response = page(client, charlie)
    assert response.status_code == 200
    assert "You have no signed deal yet" in response.content.decode()


def test_a_draft_deal_is_not_shown_to_its_streamer(alice, ada, client) -> None:
    draft_deal(alice.streamer, ada, amount_cents=900_000)
    assert "$9,000.00" not in page(client, alice.user).content.decode()


# --- API -----------------------------------------------------------------------------------


def token_for(api, username: str) -> None:
    response = api.post("/api/v1/token/", {"username": username, "password": f"{username}-pw-1234"})
    api.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")


def get(api, path: str):
    with mock.patch("django.utils.timezone.now", return_value=MID_MARCH):
        return api.get(path)


def test_a_streamer_lists_their_own_deals_with_this_periods_progress(deals, alice, api) -> None:
    token_for(api, "alice")
    body = get(api, "/api/v1/earnings/deals/").json()
    [deal] = body["results"]
    assert (deal["id"], deal["amount_cents"], deal["amount"]) == (
        deals["alice"].pk, 500_000, "$5,000.00"
    )
    assert deal["this_period"] == {
        "period": "2025-03",
        "streamed_seconds": 43_200,  # 12 h
        "required_seconds": 144_000,  # 40 h
        "streams": 3,
        "required_streams": 8,
        "peak_viewers": None,
        "hours_percent": 30,
        "met": False,
    }


def test_a_streamer_lists_their_own_payouts_with_exact_cents(deals, alice, api) -> None:
    token_for(api, "alice")
    [payout] = get(api, "/api/v1/earnings/payouts/").json()["results"]
    assert (payout["period"], payout["amount_cents"], payout["status"]) == (
        "2025-02", 500_000, "approved"
    )
    assert (payout["streamed_seconds"], payout["streams"], payout["peak_viewers"]) == (
        144_000, 10, 50
    )
    detail = get(api, f"/api/v1/earnings/payouts/{payout['id']}/").json()
    assert detail["lines"][-1]["amount_cents"] == 500_000
    assert [line["position"] for line in detail["lines"]] == list(
        range(1, len(detail["lines"]) + 1)
    )


@pytest.mark.parametrize("kind", ["deals", "payouts"])
def test_another_streamers_deal_or_payout_is_404_in_the_api(deals, alice, api, kind) -> None:
    token_for(api, "alice")
    bobs = deals["bob"] if kind == "deals" else deals["payouts"]["bob"]
    assert get(api, f"/api/v1/earnings/{kind}/{bobs.pk}/").status_code == 404
    listed = get(api, f"/api/v1/earnings/{kind}/").json()["results"]
    assert bobs.pk not in [item["id"] for item in listed]


def test_admins_see_every_deal_and_payout_drafts_included(deals, ada, api) -> None:
    compute_payout(deals["alice"], Period(2025, 1), actor=ada)  # a draft
    api.force_authenticate(ada)
    assert len(get(api, "/api/v1/earnings/deals/").json()["results"]) == 2
    payouts = get(api, "/api/v1/earnings/payouts/").json()["results"]
    assert sorted((p["streamer"], p["period"], p["status"]) for p in payouts) == [
        ("alice", "2025-01", "draft"), ("alice", "2025-02", "approved"),
        ("bob", "2025-02", "approved"),
    ]
    only_bob = get(api, f"/api/v1/earnings/payouts/?deal={deals['bob'].pk}").json()
    assert [p["streamer"] for p in only_bob["results"]] == ["bob"]
    january = get(api, "/api/v1/earnings/payouts/?period=2025-01").json()
    assert [p["period"] for p in january["results"]] == ["2025-01"]


def test_staff_without_deal_permissions_see_nothing_but_their_own(deals, olga, api) -> None:
    api.force_authenticate(olga)  # ops, not an admin of deals
    assert get(api, "/api/v1/earnings/deals/").json()["results"] == []
    assert get(api, "/api/v1/earnings/payouts/").json()["results"] == []
    bobs = deals["payouts"]["bob"]
    assert get(api, f"/api/v1/earnings/payouts/{bobs.pk}/").status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/v1/earnings/deals/", "/api/v1/earnings/payouts/", "/api/v1/earnings/payouts/1/"]
)
def test_anonymous_earnings_requests_are_refused(deals, api, path) -> None:
    assert api.get(path).status_code in (401, 403)


@pytest.mark.parametrize("query", ["period=2025-13", "period=soon", "deal=abc"])
def test_bad_filters_are_400(deals, ada, api, query) -> None:
    api.force_authenticate(ada)
    assert api.get(f"/api/v1/earnings/payouts/?{query}").status_code == 400


def test_the_earnings_endpoints_are_in_the_openapi_schema(api) -> None:
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = response.json()["paths"]
    assert "/api/v1/earnings/payouts/{id}/" in paths
    assert "/api/v1/earnings/deals/" in paths


def test_staff_see_a_cancelled_draft_without_terms_and_streamers_do_not(alice, ada, api) -> None:
    from deals.actions import set_deal_status

    cancelled = set_deal_status(draft_deal(alice.streamer, ada), "terminated", actor=ada)
    api.force_authenticate(ada)
    [deal] = get(api, "/api/v1/earnings/deals/").json()["results"]
    assert (deal["id"], deal["status"], deal["amount_cents"], deal["versions"]) == (
        cancelled.pk, "cancelled", None, []
    )
    api.force_authenticate(alice.user)
    assert get(api, "/api/v1/earnings/deals/").json()["results"] == []


def test_a_streamer_sees_the_terms_in_force_and_every_signed_version(
    alice, ada, grace, api, client
) -> None:
    from datetime import date

    from deals.actions import save_deal, sign_deal
    from tests.support.deals import terms

    deal = make_deal(alice.streamer, ada, amount_cents=500_000)
    save_deal(deal, terms(amount_cents=600_000), actor=ada, effective_from=date(2025, 4, 1))
    sign_deal(deal, actor=grace)
    save_deal(deal, terms(amount_cents=700_000), actor=ada, effective_from=date(2025, 7, 1))
    api.force_authenticate(alice.user)
    [shown] = get(api, "/api/v1/earnings/deals/").json()["results"]  # 20 March 2025
    assert (shown["version"], shown["amount"]) == (1, "$5,000.00")
    assert [(v["number"], v["amount"], v["effective_from"]) for v in shown["versions"]] == [
        (1, "$5,000.00", "2025-01-01"), (2, "$6,000.00", "2025-04-01")
    ]  # v3 is not signed: not shown
    text = page(client, alice.user).content.decode()
    assert "version 1, signed" in text
    assert "From 2025-04-01</dt><dd>$6,000.00 a month (version 2, signed)" in text
    assert "$7,000.00" not in text
