"""What an admission writes, on the way to the publisher's answer: the session and its
lease together (one statement on PostgreSQL), and the wait estimate's pace, which the
ingest keeps for a few seconds instead of counting it at every refusal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from quotas.models import SlotLease
from streams import broadcasts
from streams.models import LiveSession
from tests.support.personas import make_streamer


def test_a_session_and_its_lease_are_written_together_with_the_models_defaults(db) -> None:
    bob = make_streamer("bob", partner=True)
    before = timezone.now()
    session_id = broadcasts.open_session(bob.channel, "ingest-a", transcoded=True)
    session = LiveSession.objects.get(pk=session_id)
    assert (session.channel_id, session.ingest_node, session.transcoded) == (
        bob.channel.pk, "ingest-a", True)
    assert session.ended_at is None
    assert session.disconnected_at is None
    assert session.started_at >= before
    assert (session.health, session.earlier, session.bytes_in, session.reconnects) == (
        {}, {}, 0, 0)
    lease = SlotLease.objects.get(session_id=session_id)
    assert (lease.node, lease.partner) == ("ingest-a", True)
    assert lease.acquired_at >= before
    ttl = broadcasts.lease_ttl()
    assert before + ttl <= lease.expires_at <= timezone.now() + ttl


def test_a_channel_with_an_open_session_gets_neither_a_second_session_nor_a_lease(
    transactional_db,
) -> None:
    alice = make_streamer("alice")
    broadcasts.open_session(alice.channel, "ingest-a", transcoded=False)
    with pytest.raises(IntegrityError):
        broadcasts.open_session(alice.channel, "ingest-b", transcoded=False)
    assert LiveSession.objects.count() == 1
    assert SlotLease.objects.count() == 1


@pytest.fixture
def kept_pace():
    broadcasts.keep_pace_for(60)
    yield
    broadcasts.keep_pace_for(0)


def end_sessions(count: int, prefix: str) -> None:
    now = timezone.now()
    LiveSession.objects.bulk_create(
        LiveSession(channel=make_streamer(f"{prefix}{i}").channel,
                    started_at=now - timedelta(hours=1), ended_at=now - timedelta(minutes=1))
        for i in range(count)
    )


def test_the_pace_of_ends_is_counted_once_while_kept(
    db, kept_pace, django_assert_num_queries
) -> None:
    end_sessions(30, "early")  # 30 ends in 30 minutes: one slot a minute
    with django_assert_num_queries(1):
        assert broadcasts.estimate_wait(1) == 60
        assert broadcasts.estimate_wait(5) == 300
    end_sessions(30, "late")
    assert broadcasts.estimate_wait(1) == 60, "the count kept"
    broadcasts.keep_pace_for(60)  # kept again: counted anew
    assert broadcasts.estimate_wait(1) == 30


def test_without_keeping_every_estimate_counts(db, django_assert_num_queries) -> None:
    end_sessions(30, "early")
    with django_assert_num_queries(2):
        assert broadcasts.estimate_wait(1) == 60
        assert broadcasts.estimate_wait(1) == 60
