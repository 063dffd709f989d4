"""The streamer dashboard: sign-in required, key never in a page until it is asked for,
rotation with confirmation, health with warnings that say what to change."""

from __future__ import annotations

import pytest

from dashboard.health import warnings
from streams.actions import find_channel_by_key
from streams.models import LiveSession

pytestmark = pytest.mark.django_db


def test_the_dashboard_needs_a_signed_in_user(client) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_streamer_sees_obs_setup_without_the_key(client, alice) -> None:
    client.force_login(alice.user)
    page = client.get("/dashboard").content.decode()
    assert alice.key not in page
    assert alice.key.split("_")[2] not in page  # not even the secret part
    assert f"gl_{alice.key.split('_')[1]}_" in page  # the public prefix, to recognise it
    assert "rtmp://" in page
    assert "Keyframe interval" in page
    assert "CBR" in page
    assert "6000 Kbps" in page
    assert 'href="/earnings"' in page


def test_rotation_asks_first_then_shows_the_new_key_hidden(client, alice) -> None:
    client.force_login(alice.user)
    confirm = client.get("/dashboard/key")
    assert "Reset the key" in confirm.content.decode()
    assert find_channel_by_key(alice.key) == alice.channel  # asking changed nothing
    client.post("/dashboard/key", {})  # no confirmation: nothing either
    assert find_channel_by_key(alice.key) == alice.channel
    response = client.post("/dashboard/key", {"confirm": "yes"})
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert find_channel_by_key(alice.key) is None  # the old key is dead
    new_key = page.split('id="stream-key" class="mono wide" value="')[1].split('"')[0]
    assert find_channel_by_key(new_key) == alice.channel
    assert '<input type="password" id="stream-key"' in page  # hidden until "Show"


def test_a_viewer_opens_a_channel_from_the_dashboard(client, charlie) -> None:
    client.force_login(charlie)
    assert "Create my channel" in client.get("/dashboard").content.decode()
    page = client.post("/dashboard/start", {"slug": "charlie-plays"}).content.decode()
    key = page.split('id="stream-key" class="mono wide" value="')[1].split('"')[0]
    assert find_channel_by_key(key).slug == "charlie-plays"
    again = client.post("/dashboard/start", {"slug": "x"})
    assert again.status_code == 400
    assert "already has a channel" in again.content.decode()


def test_title_and_category_are_edited_from_the_dashboard(client, alice) -> None:
    client.force_login(alice.user)
    client.post("/dashboard/channel", {"title": "  Ranked grind ", "category": "Chess  960"})
    alice.channel.refresh_from_db()
    assert alice.channel.title == "Ranked grind"
    assert alice.channel.category == "Chess 960"


def test_health_reports_figures_and_the_keyframe_warning(client, alice) -> None:
    client.force_login(alice.user)
    assert client.get("/dashboard/health").json() == {"live": False}
    LiveSession.objects.create(channel=alice.channel, health={
        "bitrate_kbps": 2500.0, "frame_rate": 30.0, "keyframe_interval_ms": 5000,
        "lag_ms": 40, "timestamp_regressions": 0, "media_duration_ms": 12000,
    })
    data = client.get("/dashboard/health").json()
    assert data["live"] is True
    assert data["health"]["bitrate_kbps"] == 2500.0
    assert [w["code"] for w in data["warnings"]] == ["keyframe_interval"]
    assert "every 5.0 s" in data["warnings"][0]["text"]
    assert "2 s" in data["warnings"][0]["text"]


def test_another_streamers_health_is_not_visible(client, alice, bob) -> None:
    LiveSession.objects.create(channel=bob.channel, health={"bitrate_kbps": 1.0})
    client.force_login(alice.user)
    assert client.get("/dashboard/health").json() == {"live": False}


@pytest.mark.parametrize(("health", "codes"), [
    ({"keyframe_interval_ms": 2000, "bitrate_kbps": 5000}, []),
    ({"keyframe_interval_ms": 2033}, []),
    ({"keyframe_interval_ms": 4000}, ["keyframe_interval"]),
    ({"bitrate_kbps": 8000}, ["bitrate"]),
    ({"lag_ms": 5000, "timestamp_regressions": 3}, ["lag", "late_frames"]),
    ({}, []),
])
def test_warnings_say_what_to_change(health, codes) -> None:
    found = warnings(health, target_keyframe_s=2, max_kbps=6000)
    assert [w.code for w in found] == codes


def test_moderators_are_named_from_the_dashboard(client, alice, charlie) -> None:
    from chat.models import Moderator

    client.force_login(alice.user)
    client.post("/dashboard/moderators", {"username": "charlie"})
    assert Moderator.objects.filter(channel=alice.channel, user=charlie).exists()
    client.post("/dashboard/moderators", {"username": "charlie", "remove": "1"})
    assert not Moderator.objects.exists()
    assert client.post("/dashboard/moderators", {"username": "nobody"}).status_code == 400
