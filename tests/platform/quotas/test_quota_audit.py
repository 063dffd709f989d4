"""Every quota change, through any door, leaves exactly one audit row."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from quotas.actions import QuotaError, get_quota, set_quota
from quotas.models import QuotaChange


def test_a_change_by_command_leaves_one_audit_row(db, capsys) -> None:
    before = get_quota().max_streams
    call_command("quota", "set", "--streams", str(before + 50), "--reason", "launch day")
    change = QuotaChange.objects.get()
    assert change.source == "command"
    assert change.old["max_streams"] == before
    assert change.new["max_streams"] == before + 50
    assert change.reason == "launch day"
    assert change.changed_by_name.endswith("(shell)")
    assert get_quota().max_streams == before + 50


def test_quota_show_json_reports_limits_and_live_count(db, capsys) -> None:
    call_command("quota", "show", "--json")
    figures = json.loads(capsys.readouterr().out)
    assert figures["max_streams"] == get_quota().max_streams
    assert figures["live_streams"] == 0


def test_a_command_without_a_change_or_reason_is_refused(db) -> None:
    with pytest.raises(CommandError, match="nothing to change"):
        call_command("quota", "set", "--reason", "why not")
    with pytest.raises(CommandError):
        call_command("quota", "set", "--streams", "10", "--reason", "  ")
    assert not QuotaChange.objects.exists()


def test_a_change_by_api_leaves_one_audit_row(olga, api) -> None:
    api.force_authenticate(olga)
    response = api.patch(
        "/api/v1/quota/", {"max_streams": 150, "reason": "more capacity"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["max_streams"] == 150
    change = QuotaChange.objects.get()
    assert (change.source, change.changed_by, change.new["max_streams"]) == ("api", olga, 150)


def test_a_change_by_admin_leaves_one_audit_row(ada, client) -> None:
    client.force_login(ada)
    quota = get_quota()
    url = f"/admin/quotas/serverquota/{quota.pk}/change/"
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {"max_streams": 120, "max_transcodes": 6, "partner_reserve": 10, "reason": "partners"},
    )
    assert response.status_code == 302, response.content
    change = QuotaChange.objects.get()
    assert change.source == "admin"
    assert change.changed_by == ada
    assert change.new == {"max_streams": 120, "max_transcodes": 6, "partner_reserve": 10}
    assert get_quota().partner_reserve == 10


def test_admin_refuses_a_reserve_above_the_quota_and_writes_nothing(ada, client) -> None:
    client.force_login(ada)
    quota = get_quota()
    response = client.post(
        f"/admin/quotas/serverquota/{quota.pk}/change/",
        {"max_streams": 5, "max_transcodes": 1, "partner_reserve": 6, "reason": "oops"},
    )
    assert response.status_code == 200  # the form again, with the error
    assert not QuotaChange.objects.exists()
    assert get_quota().max_streams == quota.max_streams


def test_admin_requires_a_reason(ada, client) -> None:
    client.force_login(ada)
    quota = get_quota()
    response = client.post(
        f"/admin/quotas/serverquota/{quota.pk}/change/",
        {"max_streams": 7, "max_transcodes": 1, "partner_reserve": 0, "reason": ""},
    )
    assert response.status_code == 200
    assert not QuotaChange.objects.exists()


def test_a_change_that_changes_nothing_leaves_no_audit_row(db) -> None:
    current = get_quota().max_streams
    assert set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="noop",
                     max_streams=current) is None
    assert not QuotaChange.objects.exists()


@pytest.mark.parametrize(
    "values",
    [{"max_streams": -1}, {"max_streams": 10**9}, {"max_streams": 3, "partner_reserve": 4}],
)
def test_out_of_range_values_are_refused(db, values) -> None:
    with pytest.raises(QuotaError):
        set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="bad", **values)
    assert not QuotaChange.objects.exists()


def test_the_quota_list_in_admin_goes_to_the_one_row(ada, client) -> None:
    client.force_login(ada)
    response = client.get("/admin/quotas/serverquota/")
    assert response.status_code == 302
    assert response.url.endswith(f"/{get_quota().pk}/change/")
