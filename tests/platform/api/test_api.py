"""The REST API: what a streamer and ops may do, and every refusal."""

from __future__ import annotations

import pytest

from quotas.models import QuotaChange
from streams.actions import find_channel_by_key


def test_anyone_reads_a_channels_public_details(alice, api) -> None:
    response = api.get("/api/v1/channels/alice/")
    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == "alice"
    assert body["is_live"] is False
    assert "key" not in str(body).lower()


def test_a_streamer_updates_their_channel(alice, api) -> None:
    api.force_authenticate(alice.user)
    response = api.patch("/api/v1/channels/alice/", {"title": "Speedruns", "category": "Games"})
    assert response.status_code == 200, response.content
    alice.channel.refresh_from_db()
    assert (alice.channel.title, alice.channel.category) == ("Speedruns", "Games")


def test_a_streamer_cannot_change_the_slug_or_partner_flag(alice, api) -> None:
    api.force_authenticate(alice.user)
    api.patch("/api/v1/channels/alice/", {"slug": "stolen", "is_partner": True}, format="json")
    alice.channel.refresh_from_db()
    assert (alice.channel.slug, alice.channel.is_partner) == ("alice", False)


def test_rotating_returns_a_new_key_once_and_revokes_the_old(alice, api) -> None:
    api.force_authenticate(alice.user)
    response = api.post("/api/v1/channels/alice/key/")
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    new_key = response.json()["stream_key"]
    assert find_channel_by_key(new_key) == alice.channel
    assert find_channel_by_key(alice.key) is None


def test_a_streamer_lists_their_sessions(alice, api) -> None:
    alice.channel.sessions.create(ingest_node="node-1", video_codec="avc1.64001f")
    api.force_authenticate(alice.user)
    response = api.get("/api/v1/channels/alice/sessions/")
    assert response.status_code == 200
    assert [s["ingest_node"] for s in response.json()["results"]] == ["node-1"]


def test_token_authentication_works(alice, api) -> None:
    response = api.post("/api/v1/token/", {"username": "alice", "password": "alice-pw-1234"})
    assert response.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert api.get("/api/v1/channels/alice/sessions/").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", "/api/v1/channels/alice/"),
        ("post", "/api/v1/channels/alice/key/"),
        ("get", "/api/v1/channels/alice/sessions/"),
        ("get", "/api/v1/quota/"),
        ("patch", "/api/v1/quota/"),
    ],
)
def test_anonymous_requests_are_refused(alice, api, method, path) -> None:
    response = getattr(api, method)(path, {"title": "x", "reason": "x"}, format="json")
    assert response.status_code in (401, 403)
    alice.channel.refresh_from_db()
    assert alice.channel.title == ""
    assert find_channel_by_key(alice.key) == alice.channel


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", "/api/v1/channels/alice/"),
        ("post", "/api/v1/channels/alice/key/"),
        ("get", "/api/v1/channels/alice/sessions/"),
    ],
)
def test_another_streamer_is_refused(alice, bob, api, method, path) -> None:
    api.force_authenticate(bob.user)
    response = getattr(api, method)(path, {"title": "hijacked"}, format="json")
    assert response.status_code == 403
    alice.channel.refresh_from_db()
    assert alice.channel.title == ""
    assert find_channel_by_key(alice.key) == alice.channel


def test_a_missing_channel_is_404(alice, api) -> None:
    api.force_authenticate(alice.user)
    assert api.post("/api/v1/channels/nobody/key/").status_code == 404


@pytest.mark.parametrize("persona", ["alice", "charlie"])
def test_non_ops_users_cannot_see_or_set_the_quota(request, api, persona) -> None:
    user = request.getfixturevalue(persona)
    api.force_authenticate(getattr(user, "user", user))
    assert api.get("/api/v1/quota/").status_code == 403
    response = api.patch("/api/v1/quota/", {"max_streams": 1, "reason": "x"}, format="json")
    assert response.status_code == 403
    assert not QuotaChange.objects.exists()


def test_staff_outside_the_ops_group_cannot_set_the_quota(django_user_model, api) -> None:
    staff = django_user_model.objects.create_user("sam", password="sam-pw-1234", is_staff=True)
    api.force_authenticate(staff)
    response = api.patch("/api/v1/quota/", {"max_streams": 1, "reason": "x"}, format="json")
    assert response.status_code == 403
    assert not QuotaChange.objects.exists()


def test_ops_read_the_quota_with_the_live_count(olga, alice, api) -> None:
    alice.channel.sessions.create(ingest_node="n")
    api.force_authenticate(olga)
    body = api.get("/api/v1/quota/").json()
    assert body["live_streams"] == 1
    assert {"max_streams", "max_transcodes", "partner_reserve"} <= set(body)


@pytest.mark.parametrize(
    "payload",
    [
        {"max_streams": 10},  # no reason
        {"max_streams": -5, "reason": "x"},
        {"max_streams": "many", "reason": "x"},
        {"max_streams": 2, "partner_reserve": 3, "reason": "x"},
    ],
)
def test_bad_quota_requests_get_400_and_change_nothing(olga, api, payload) -> None:
    api.force_authenticate(olga)
    response = api.patch("/api/v1/quota/", payload, format="json")
    assert response.status_code == 400
    assert not QuotaChange.objects.exists()


def test_the_openapi_schema_is_served_and_names_the_endpoints(api) -> None:
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/quota/" in schema["paths"]
    assert "/api/v1/channels/{slug}/key/" in schema["paths"]
