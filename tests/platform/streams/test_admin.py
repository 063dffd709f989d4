from __future__ import annotations

from streams.actions import find_channel_by_key


def test_admin_rotation_shows_the_new_key_once_and_the_old_one_stops_working(
    ada, alice, client
) -> None:
    client.force_login(ada)
    response = client.post(
        "/admin/streams/channel/",
        {"action": "rotate_key", "_selected_action": [alice.channel.pk]},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    new_key = page.split("<code>")[1].split("</code>")[0]
    assert find_channel_by_key(new_key) == alice.channel
    assert find_channel_by_key(alice.key) is None
    # Nothing stored the key for later display: the list page never shows it.
    assert new_key not in client.get("/admin/streams/channel/").content.decode()
    assert new_key not in client.get("/admin/streams/streamkey/").content.decode()


def test_admin_ban_refuses_the_channel(ada, alice, client) -> None:
    client.force_login(ada)
    client.post(
        "/admin/streams/channel/", {"action": "ban", "_selected_action": [alice.channel.pk]}
    )
    alice.channel.refresh_from_db()
    assert alice.channel.is_banned


def test_admin_lists_live_sessions_with_their_health(ada, alice, client) -> None:
    alice.channel.sessions.create(
        ingest_node="node-a",
        video_codec="avc1.64001f",
        width=1280,
        height=720,
        health={"bitrate_kbps": 2990.8},
    )
    client.force_login(ada)
    page = client.get("/admin/streams/livesession/").content.decode()
    assert "2991 kb/s" in page
    assert "1280x720" in page
    assert client.get("/admin/streams/channel/?live=yes").status_code == 200
