"""Placing cluster transcode sessions (PostgreSQL or SQLite, and the real Redis): every live
transcoded broadcast whose lease nobody holds is asked for once, until a worker takes it;
a task for a broadcast that is over, or that another worker holds, does nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
from ingest.gatekeeper import Grant, PublishRequest
from quotas.actions import get_quota
from streams.broadcasts import start_broadcast
from streams.models import Channel, LiveSession
from tests.support.personas import make_streamer
from transcoder.follower import StartPlan
from transcoder.ladder import Rung, parse_ladder
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


@pytest.mark.django_db(transaction=True)  # the task closes its database connection
def test_a_session_task_transcodes_with_the_ladder_its_broadcast_started_with(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel's ladder, copied onto the session row at admission, is what the
    worker plans with and starts its `TranscodeSession` with, even when the channel's
    was edited since; a broadcast of the platform's ladder gets GOLIVE_TRANSCODE_LADDER."""
    from transcoder import follower, session

    ladders: list[tuple[str, tuple[Rung, ...]]] = []

    async def plan_start(index: object, stream: str, ladder: Sequence[Rung]) -> StartPlan:
        ladders.append(("plan", tuple(ladder)))
        return StartPlan(0, tuple(ladder), (), restart=False)

    class Session:
        def __init__(self, ladder: Sequence[Rung], make_output: object, settings: object,
                     *, on_end: Callable[[object], None], **_: object) -> None:
            ladders.append(("session", tuple(ladder)))
            self.on_end = on_end

        def end(self) -> None:
            self.on_end(None)

    class Follower:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        async def run(self, stop: object) -> str:
            return "ended"

    monkeypatch.setattr(follower, "plan_start", plan_start)
    monkeypatch.setattr(follower, "SourceFollower", Follower)
    monkeypatch.setattr(session, "TranscodeSession", Session)
    get_quota()
    own = "360p30:640x360@30:630k"
    ann = make_streamer("ann")
    Channel.objects.filter(pk=ann.channel.pk).update(transcode_ladder=own)
    grant = start_broadcast(PublishRequest("live", ann.key, "198.51.100.7", "node-a"))
    assert isinstance(grant, Grant)
    assert grant.transcode
    Channel.objects.filter(pk=ann.channel.pk).update(transcode_ladder="")  # edited meanwhile

    assert run_session(grant.session_id) == "ended"
    assert ladders == [("plan", parse_ladder(own)), ("session", parse_ladder(own))]

    ladders.clear()
    ben = make_streamer("ben")
    grant = start_broadcast(PublishRequest("live", ben.key, "198.51.100.7", "node-a"))
    assert isinstance(grant, Grant)
    assert grant.transcode
    assert run_session(grant.session_id) == "ended"
    default = tuple(settings.GOLIVE_TRANSCODE_LADDER)
    assert ladders == [("plan", default), ("session", default)]


def test_a_session_task_leaves_a_broadcast_whose_ladder_has_no_rungs(
    client: redis.Redis,
) -> None:
    channel = make_streamer("gus").channel
    live = LiveSession.objects.create(channel=channel, transcoded=True, transcode_ladder="none")
    assert run_session(live.pk) == "source only: its ladder has no rungs"
    assert client.get(session_lease_key(live.pk)) is None
