"""Recordings stay watchable for GOLIVE_VOD_RETENTION_DAYS after the broadcast, then their
files go from the segment store (both backends) and the VOD leaves the channel page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from delivery.live import store_path
from delivery.retention import expire_recordings
from streams.models import LiveSession
from tests.support.personas import make_streamer

pytestmark = pytest.mark.django_db


def broadcast(store, channel, *, ended_days_ago: float | None) -> LiveSession:
    now = timezone.now()
    session = LiveSession.objects.create(
        channel=channel,
        started_at=now - timedelta(days=(ended_days_ago or 0) + 1),
        ended_at=None if ended_days_ago is None else now - timedelta(days=ended_days_ago),
    )
    for name in ("init-0.mp4", "seg-0.m4s", "seg-1.m4s", "vod.m3u8"):
        store.save(store_path(session.pk, "source", name), b"x")
    session.vod_path = store_path(session.pk, "source", "vod.m3u8")
    session.save()
    return session


def test_recordings_past_retention_are_deleted_and_only_those(store, settings) -> None:
    settings.GOLIVE_VOD_RETENTION_DAYS = 30
    channel = make_streamer("alice").channel
    old = broadcast(store, channel, ended_days_ago=31)
    recent = broadcast(store, channel, ended_days_ago=29)
    live = broadcast(store, make_streamer("bob").channel, ended_days_ago=None)

    expired = expire_recordings(store=store)

    assert (expired.sessions, expired.objects) == (1, 4)
    old.refresh_from_db()
    assert old.vod_path == ""
    assert old.recording_deleted_at is not None
    assert not store.exists(store_path(old.pk, "source", "seg-0.m4s"))
    for kept in (recent, live):
        kept.refresh_from_db()
        assert kept.vod_path
        assert store.exists(store_path(kept.pk, "source", "seg-1.m4s"))
    assert expire_recordings(store=store).sessions == 0, "a second run has nothing to do"


def test_zero_days_keeps_everything(store, settings) -> None:
    settings.GOLIVE_VOD_RETENTION_DAYS = 0
    session = broadcast(store, make_streamer("alice").channel, ended_days_ago=400)
    assert expire_recordings(store=store).sessions == 0
    assert store.exists(store_path(session.pk, "source", "vod.m3u8"))


def test_the_command_counts_deletes_and_refuses_nonsense(
    tmp_path, settings, capsys
) -> None:
    settings.GOLIVE_VOD_RETENTION_DAYS = 30
    settings.STORAGES = {
        **settings.STORAGES,
        "segments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path), "allow_overwrite": True},
        },
    }
    from delivery.segment_store import SegmentStore

    session = broadcast(SegmentStore(), make_streamer("alice").channel, ended_days_ago=10)
    call_command("expire_recordings", "--dry-run")
    assert "0 recording(s) past retention" in capsys.readouterr().out
    call_command("expire_recordings", "--days", "7", "--dry-run")
    assert "1 recording(s) past retention" in capsys.readouterr().out
    assert (tmp_path / store_path(session.pk, "source", "seg-0.m4s")).exists()
    call_command("expire_recordings", "--days", "7")
    assert "deleted 1 recording(s), 4 object(s)" in capsys.readouterr().out
    assert not (tmp_path / store_path(session.pk, "source", "seg-0.m4s")).exists()
    with pytest.raises(CommandError, match="at least 1"):
        call_command("expire_recordings", "--days", "0")


def test_the_channel_page_no_longer_offers_a_deleted_recording(client, store) -> None:
    alice = make_streamer("alice")
    session = broadcast(store, alice.channel, ended_days_ago=40)
    assert session.vod_path in client.get(f"/c/{alice.channel.slug}").content.decode()
    expire_recordings(store=store, days=30)
    assert session.vod_path not in client.get(f"/c/{alice.channel.slug}").content.decode()
