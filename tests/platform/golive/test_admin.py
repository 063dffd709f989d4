"""Append-only admins (the quota audit trail, the payout ledger): listed and viewable by
staff, never added, edited or deleted through the admin, even by a superuser."""

from __future__ import annotations

import pytest

from quotas.actions import get_quota, set_quota
from quotas.models import QuotaChange


@pytest.mark.parametrize("model", ["quotas/quotachange", "deals/ledgerentry"])
def test_nothing_is_added_through_an_append_only_admin(ada, client, model: str) -> None:
    client.force_login(ada)
    assert client.get(f"/admin/{model}/").status_code == 200
    assert client.get(f"/admin/{model}/add/").status_code == 403
    assert client.post(f"/admin/{model}/add/", {}).status_code == 403


def test_an_audit_row_is_viewed_but_neither_edited_nor_deleted(ada, client) -> None:
    set_quota(actor=ada, source=QuotaChange.Source.COMMAND, reason="launch day",
              max_streams=get_quota().max_streams + 10)
    change = QuotaChange.objects.get()
    client.force_login(ada)
    url = f"/admin/quotas/quotachange/{change.pk}"

    page = client.get(f"{url}/change/")
    assert page.status_code == 200
    assert "launch day" in page.content.decode()
    assert client.post(f"{url}/change/", {"reason": "edited"}).status_code == 403
    assert client.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
    change.refresh_from_db()
    assert change.reason == "launch day"
