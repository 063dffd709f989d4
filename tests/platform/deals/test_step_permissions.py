"""Separation of duties: signing, approving and paying are permissions of their own, beyond
changing a deal or a payout, and the groups finance hands out carry them. A refusal for a
missing permission is in the audit trail like any other."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Group

from deals.actions import (
    DealError,
    PayoutError,
    approve_payout,
    compute_payout,
    mark_paid,
    sign_deal,
    void_payout,
)
from deals.calculation import Period
from tests.support.deals import at, draft_deal, make_deal, stream
from tests.support.personas import make_staff

MARCH = Period(2025, 3)


@pytest.fixture
def carl(db: None) -> Any:
    """May change deals and payouts, holds none of the money steps."""
    return make_staff("carl", perms=("view_deal", "change_deal", "add_deal", "view_payout",
                                     "change_payout"))


def refused(obj: Any) -> list[str]:
    return [e.note for e in obj.events.filter(refused=True)]


def test_the_groups_exist_with_their_permissions_after_migrating(db: None) -> None:
    approvers = set(Group.objects.get(name="finance approvers")
                    .permissions.values_list("codename", flat=True))
    payers = set(Group.objects.get(name="finance payers")
                 .permissions.values_list("codename", flat=True))
    assert {"sign_deal", "approve_payout"} <= approvers
    assert "pay_payout" not in approvers
    assert "pay_payout" in payers
    assert not {"sign_deal", "approve_payout"} & payers


def test_changing_deals_is_not_enough_to_sign_one(alice, ada, carl, ivy) -> None:
    deal = draft_deal(alice.streamer, ada)
    with pytest.raises(DealError, match="carl may not sign deal terms"):
        sign_deal(deal, actor=carl)
    assert deal.events.filter(refused=True).count() == 1
    assert sign_deal(deal, actor=ivy).status == "active"


def test_approving_and_paying_each_need_their_own_permission(alice, ada, carl, ivy, pat) -> None:
    deal = make_deal(alice.streamer, ada, signer=ivy)
    stream(alice.channel, at(3, 2), at(3, 2, 3))
    payout = compute_payout(deal, MARCH, actor=ada)
    with pytest.raises(PayoutError, match="carl may not approve or void payouts"):
        approve_payout(payout, actor=carl)
    with pytest.raises(PayoutError, match="pat may not approve or void payouts"):
        approve_payout(payout, actor=pat)
    with pytest.raises(PayoutError, match="carl may not approve or void payouts"):
        void_payout(payout, actor=carl, reason="typo")
    approve_payout(payout, actor=ivy)
    with pytest.raises(PayoutError, match="carl may not mark payouts paid"):
        mark_paid(payout, actor=carl, reference="TR-1")
    assert mark_paid(payout, actor=pat, reference="TR-1").status == "paid"
    assert len(refused(payout)) == 4
    assert all("may not" in note for note in refused(payout))


def test_the_payout_page_offers_each_button_only_to_who_may_press_it(
    client, alice, ada, ivy, pat
) -> None:
    deal = make_deal(alice.streamer, ada, signer=ivy)
    stream(alice.channel, at(3, 2), at(3, 2, 3))
    payout = compute_payout(deal, MARCH, actor=ada)
    page = f"/admin/deals/payout/{payout.pk}/change/"
    client.force_login(pat)
    text = client.get(page).content.decode()
    assert "Approving needs the “approve or void payouts” permission." in text
    assert re.search(r'id="payout-approve" disabled', text)
    client.force_login(ivy)
    text = client.get(page).content.decode()
    assert "Approving needs" not in text
    assert re.search(r'id="payout-approve" >', text)
    approve_payout(payout, actor=ivy)
    client.force_login(ada)  # neither computed-and-... nor approver: may pay
    assert re.search(r'id="payout-pay" >', client.get(page).content.decode())
    client.force_login(ivy)
    text = client.get(page).content.decode()
    assert "Marking paid needs the “mark payouts paid” permission." in text
    client.force_login(pat)
    assert re.search(r'id="payout-pay" >', client.get(page).content.decode())
