"""A key's last use: stamped to the minute, and in the ingest (deferred) written by its
housekeeping instead of on the way to the publisher's answer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from streams import actions
from streams.ingest_runtime import defer_admission_writes, write_deferred
from streams.models import StreamKey
from tests.support.personas import make_streamer


def last_used(channel) -> object:
    return StreamKey.objects.get(channel=channel).last_used_at


@pytest.fixture
def deferred():
    defer_admission_writes()
    yield
    actions.defer_key_uses(False)
    from quotas import tally

    tally.defer(False)
    write_deferred()


def test_a_use_within_the_minute_writes_nothing(alice, django_assert_num_queries) -> None:
    with django_assert_num_queries(2):  # the lookup and the first stamp
        assert actions.find_channel_by_key(alice.key) == alice.channel
    first = last_used(alice.channel)
    assert first is not None
    with django_assert_num_queries(1):  # the lookup only
        assert actions.find_channel_by_key(alice.key) == alice.channel
    StreamKey.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    with django_assert_num_queries(2):
        actions.find_channel_by_key(alice.key)
    assert (timezone.now() - last_used(alice.channel)).total_seconds() < 5


def test_in_the_ingest_a_use_waits_for_the_housekeeping_and_a_wrong_key_is_never_stamped(
    db, deferred, django_assert_num_queries
) -> None:
    streamers = [make_streamer(f"pub{i}") for i in range(5)]
    for streamer in streamers:
        with django_assert_num_queries(1):  # the lookup: no write on the way to the answer
            assert actions.find_channel_by_key(streamer.key) == streamer.channel
    wrong = streamers[0].key[:-1] + ("a" if streamers[0].key[-1] != "a" else "b")
    assert actions.find_channel_by_key(wrong) is None
    assert StreamKey.objects.filter(last_used_at__isnull=False).count() == 0
    before = timezone.now()
    with django_assert_num_queries(1):  # one statement for every key
        write_deferred()
    stamped = StreamKey.objects.filter(last_used_at__isnull=False)
    assert stamped.count() == 5
    assert all((before - k.last_used_at).total_seconds() < 5 for k in stamped)
    with django_assert_num_queries(0):
        write_deferred()


@pytest.mark.django_db(transaction=True)
def test_an_ingest_that_stopped_leaves_its_process_writing_at_once(settings) -> None:
    from ingest.server import IngestConfig
    from ingest.sink import NullSink
    from quotas import tally
    from quotas.models import AdmissionTally
    from streams.gatekeeper import PlatformGatekeeper
    from streams.ingest_runtime import PlatformIngest
    from tests.ingest.harness import LoopThread

    settings.GOLIVE_DEFER_ADMISSION_WRITES = True
    gatekeeper = PlatformGatekeeper()
    server = PlatformIngest(gatekeeper, lambda grant: NullSink(), IngestConfig(node="node-a"))
    server.platform = gatekeeper
    loop = LoopThread()
    try:
        loop.call(server.start("127.0.0.1", 0))
        tally.count("refused", "capacity")
        assert not AdmissionTally.objects.exists()  # left for the housekeeping
        loop.call(server.stop(1))
    finally:
        loop.close()
    assert AdmissionTally.objects.get().count == 1  # the stop's last write
    tally.count("refused", "capacity")
    StreamKey.objects.update(last_used_at=None)
    alice = make_streamer("alice")
    assert actions.find_channel_by_key(alice.key) == alice.channel
    # Written at once, as in any other process: nothing is left in memory.
    assert AdmissionTally.objects.get().count == 2
    assert last_used(alice.channel) is not None
