"""Placing cluster transcode sessions (PostgreSQL or SQLite, and the real Redis): every live
transcoded broadcast whose lease nobody holds is asked for once, until a worker takes it;
a task for a broadcast that is over, or that another worker holds, does nothing."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from delivery.transcode_cluster import (
    HOLDER,
    _start_mark_key,
    run_session,
    session_lease_key,
    supervise_transcodes,
)
from streams.models import LiveSession
from tests.support.personas import make_streamer
from transcoder.lease import Lease

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> redis.Redis:
    if not settings.REDIS_URL:
        pytest.skip("cluster transcoding needs Redis (REDIS_URL)")
    return redis.Redis.from_url(settings.REDIS_URL)


def test_each_unheld_live_transcoded_broadcast_is_asked_for_once(client: redis.Redis) -> None:
    channels = [make_streamer(name).channel for name in ("ann", "ben", "cat", "dan")]
    unheld = LiveSession.objects.create(channel=channels[0], transcoded=True)
    held = LiveSession.objects.create(channel=channels[1], transcoded=True)
    LiveSession.objects.create(channel=channels[2], transcoded=False)  # source only
    LiveSession.objects.create(channel=channels[3], transcoded=True, ended_at=timezone.now())
    lease = Lease(client, session_lease_key(held.pk), 5.0)
    assert lease.acquire()
    asked: list[int] = []

    assert supervise_transcodes(asked.append) == 1
    assert asked == [unheld.pk]
    # The task is on its way: the next checks (every second) do not ask again ...
    assert supervise_transcodes(asked.append) == 0
    # ... until a worker took it (and dropped the mark), but holds no lease: it died.
    client.delete(_start_mark_key(unheld.pk))
    assert supervise_transcodes(asked.append) == 1
    assert asked == [unheld.pk, unheld.pk]
    # A worker that lost the held one (its lease lapsed): that one is asked for too.
    client.delete(_start_mark_key(unheld.pk))
    Lease(client, session_lease_key(unheld.pk), 5.0).acquire()
    lease.release()
    assert supervise_transcodes(asked.append) == 1
    assert asked[-1] == held.pk
    assert HOLDER in session_lease_key(held.pk)


def test_a_session_task_leaves_a_broadcast_that_is_over_or_held(client: redis.Redis) -> None:
    channel = make_streamer("eve").channel
    over = LiveSession.objects.create(channel=channel, transcoded=True, ended_at=timezone.now())
    client.set(_start_mark_key(over.pk), "1")
    assert run_session(over.pk) == "not a live transcoded broadcast"
    assert client.get(_start_mark_key(over.pk)) is None
    assert client.get(session_lease_key(over.pk)) is None

    live = LiveSession.objects.create(channel=make_streamer("fay").channel, transcoded=True)
    other = Lease(client, session_lease_key(live.pk), 5.0)
    assert other.acquire()
    assert run_session(live.pk) == f"already transcoded by {other.token}"
    assert other.holder() == other.token  # untouched
