"""The Redis slot ledger (quotas.slots): exact counts under concurrency, the partner
reserve, transcode slots, release, reconciliation with the database, and admission
through it, falling back to the quota row lock when Redis is away."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth
from quotas import slots
from quotas.actions import set_quota
from quotas.models import QuotaChange, SlotLease
from streams import broadcasts
from streams.models import LiveSession
from tests.support.personas import make_streamer
from tests.support.services import REQUIRE_SERVICES

REDIS = "redis://127.0.0.1:6379/11"  # not the live stack's (13): a bench may be running
PREFIX = "golive-test:slots:"


@pytest.fixture
def ledger(db: None) -> Any:
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if REQUIRE_SERVICES:
            raise
        pytest.skip(f"Redis is needed: {error}")
    ledger = slots.SlotLedger(REDIS, prefix=PREFIX)
    ledger.clear()
    ledger.reconcile()
    yield ledger
    ledger.clear()


def claim(ledger: slots.SlotLedger, channel: int, *, max_streams: int = 10, reserve: int = 0,
          partner: bool = False, transcodes: int = 0) -> slots.Claim:
    return ledger.claim(channel, max_streams=max_streams, open_to_all=max_streams - reserve,
                        partner=partner, max_transcodes=transcodes)


def test_two_hundred_concurrent_claims_admit_exactly_the_quota(ledger) -> None:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(channels: range) -> None:
        for channel in channels:
            result = claim(ledger, channel, max_streams=50)
            with lock:
                outcomes[result.outcome] += 1

    threads = [threading.Thread(target=worker, args=(range(i, 200, 20),)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {"admitted": 50, "capacity": 150}
    assert ledger.counts() == (50, 0)


def test_partners_may_use_the_reserve_and_others_stop_before_it(ledger) -> None:
    assert [claim(ledger, c, reserve=2).outcome for c in range(9)] == ["admitted"] * 8 + [
        "partner_reserve"
    ]
    assert claim(ledger, 100, reserve=2, partner=True).outcome == "admitted"
    assert claim(ledger, 101, reserve=2, partner=True).outcome == "admitted"
    refused = claim(ledger, 102, reserve=2, partner=True)
    assert (refused.outcome, refused.held) == ("capacity", 10)


def test_the_first_claims_get_transcode_slots_and_a_live_channel_is_not_claimed_twice(
    ledger,
) -> None:
    assert [claim(ledger, c, transcodes=2).transcoded for c in range(4)] == [
        True, True, False, False
    ]
    assert claim(ledger, 0, transcodes=2).outcome == "exists"
    ledger.release([0])
    assert ledger.counts() == (3, 1)
    assert claim(ledger, 0, transcodes=2).transcoded


def test_claims_decided_together_are_decided_in_order_each_after_the_ones_before(
    ledger,
) -> None:
    """One script for a batch: the same answers as one claim after another."""
    asked = [slots.ClaimRequest(1, False, 2), slots.ClaimRequest(2, False, 2),
             slots.ClaimRequest(1, False, 2),  # the same channel again, in the same call
             slots.ClaimRequest(3, False, 0),  # no ladder: no transcode slot
             slots.ClaimRequest(4, False, 2), slots.ClaimRequest(5, False, 2),
             slots.ClaimRequest(6, True, 2), slots.ClaimRequest(7, True, 2)]
    claims = ledger.claim_many(asked, max_streams=5, open_to_all=4)
    assert [(c.outcome, c.held, c.transcoded) for c in claims] == [
        ("admitted", 1, True), ("admitted", 2, True), ("exists", 2, False),
        ("admitted", 3, False), ("admitted", 4, False), ("partner_reserve", 4, False),
        ("admitted", 5, False), ("capacity", 5, False),
    ]
    assert ledger.counts() == (5, 2)
    assert ledger.claim_many([], max_streams=5, open_to_all=4) == []


def test_reconciling_adds_every_lease_and_drops_claims_no_lease_confirmed(
    ledger, monkeypatch, alice
) -> None:
    grant = broadcasts.start_broadcast(PublishRequest("live", alice.key, "198.51.100.7", "a"))
    assert isinstance(grant, Grant)  # through the lock: no ledger configured
    assert claim(ledger, 999_999).outcome == "admitted"  # its node dies before the lease
    assert ledger.reconcile() == 0  # recent: it may still be being written
    assert ledger.counts() == (2, 1)  # alice's stream is transcoded
    time.sleep(0.01)
    monkeypatch.setattr(slots, "MARGIN", 0.0)
    assert ledger.reconcile() == 1
    assert ledger.counts() == (1, 1)  # alice's lease is what is left
    assert claim(ledger, alice.channel.pk).outcome == "exists"


def test_a_ledger_that_redis_lost_is_rebuilt_from_the_leases_before_deciding(
    ledger, alice
) -> None:
    grant = broadcasts.start_broadcast(PublishRequest("live", alice.key, "198.51.100.7", "a"))
    assert isinstance(grant, Grant)
    ledger.clear()  # a Redis restart
    assert claim(ledger, 12345, max_streams=1).outcome == "capacity"
    assert ledger.counts()[0] == 1


# -- admission through the ledger ------------------------------------------------------

NOTHING, HEALTH = StreamDescription(), StreamHealth()


@pytest.fixture
def cluster(transactional_db: None, settings: Any) -> Any:
    """start_broadcast with the ledger (REDIS_URL set), as an ingest node runs it."""
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if REQUIRE_SERVICES:
            raise
        pytest.skip(f"Redis is needed: {error}")
    settings.REDIS_URL = REDIS
    settings.GOLIVE_SLOT_LEDGER = True
    slots._ledger.cache_clear()
    ledger = slots.ledger()
    assert ledger is not None
    ledger.clear()
    yield ledger
    ledger.clear()
    slots._ledger.cache_clear()


def publish(key: str) -> Grant | Refusal:
    return broadcasts.start_broadcast(PublishRequest("live", key, "198.51.100.7", "ingest-a"))


def test_admission_through_the_ledger_stops_at_the_quota_and_an_end_frees_a_slot(
    cluster,
) -> None:
    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", max_streams=3,
              max_transcodes=1)
    keys = [make_streamer(f"racer{i}").key for i in range(5)]
    results = [publish(key) for key in keys]
    grants = [r for r in results if isinstance(r, Grant)]
    refusals = [r for r in results if isinstance(r, Refusal)]
    assert len(grants) == 3
    assert [g.transcode for g in grants] == [True, False, False]
    assert {r.reason for r in refusals} == {"capacity"}
    assert all(r.retry_after and "golive is at capacity (3 streams live)" in r.description
               for r in refusals)
    assert SlotLease.objects.count() == 3 == cluster.counts()[0]
    # A refused channel goes live once a stream ends (the release follows the commit).
    broadcasts.end_broadcast(grants[0].session_id, EndReason.PUBLISHER_STOPPED, NOTHING, HEALTH)
    assert cluster.counts()[0] == 2
    assert isinstance(publish(keys[3]), Grant)
    assert LiveSession.objects.filter(ended_at__isnull=True).count() == 3


def test_a_second_encoder_on_a_live_channel_is_refused_through_the_ledger(cluster) -> None:
    key = make_streamer("alice").key
    assert isinstance(publish(key), Grant)
    refusal = publish(key)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "already_live"


def test_with_redis_away_admission_takes_the_quota_lock_and_stays_exact(
    transactional_db: None, settings: Any
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there
    settings.GOLIVE_SLOT_LEDGER = True
    slots._ledger.cache_clear()
    try:
        set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", max_streams=2)
        results = [publish(make_streamer(f"racer{i}").key) for i in range(3)]
        assert [isinstance(r, Grant) for r in results] == [True, True, False]
        assert SlotLease.objects.count() == 2
    finally:
        slots._ledger.cache_clear()


def test_lapsed_leases_reaped_free_their_ledger_slots(cluster, settings) -> None:
    grant = publish(make_streamer("alice").key)
    assert isinstance(grant, Grant)
    SlotLease.objects.update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
    assert broadcasts.reap_expired_leases() == 1
    assert cluster.counts() == (0, 0)


def test_concurrent_admissions_on_many_threads_admit_exactly_the_quota_each_with_its_lease(
    cluster,
) -> None:
    """As an ingest node decides a burst: many database workers at once, each publish
    decided in Redis and recorded (session and lease in one statement) without a lock."""
    from django.db import connections

    from golive.db import database_call

    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", max_streams=15,
              max_transcodes=4)
    keys = [make_streamer(f"burst{i}").key for i in range(40)]
    results: list[Grant | Refusal] = []
    lock = threading.Lock()
    decide = database_call(broadcasts.start_broadcast, trust_for=1.0)

    def worker(mine: list[str]) -> None:
        try:
            for key in mine:
                result = decide(PublishRequest("live", key, "198.51.100.7", "ingest-a"))
                with lock:
                    results.append(result)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(keys[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    grants = [r for r in results if isinstance(r, Grant)]
    refusals = [r for r in results if isinstance(r, Refusal)]
    assert len(grants) == 15
    assert len(refusals) == 25
    assert sum(g.transcode for g in grants) == 4
    assert {r.reason for r in refusals} == {"capacity"}
    assert all(r.retry_after for r in refusals)
    live = LiveSession.objects.filter(ended_at__isnull=True)
    assert sorted(live.values_list("pk", flat=True)) == sorted(g.session_id for g in grants)
    assert sorted(SlotLease.objects.values_list("session_id", flat=True)) == sorted(
        g.session_id for g in grants)
    assert cluster.counts() == (15, 4)


def _outcome(answer: Grant | Refusal) -> tuple[str, bool]:
    if isinstance(answer, Grant):
        return "granted", answer.transcode
    return answer.reason, False


BATCH_EXPECTED = [
    ("granted", True), ("unknown_key", False), ("already_live", False), ("banned", False),
    ("granted", True), ("granted", False), ("granted", False), ("partner_reserve", False),
    ("granted", False), ("capacity", False),
]


def _batch_of_publishes() -> list[PublishRequest]:
    """Ten publishes against a quota of 5 (1 kept for partners, 2 transcode slots): a
    stranger's key, one channel twice, a banned one, a non-partner past the reserve."""
    from streams.actions import set_banned

    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", max_streams=5,
              max_transcodes=2, partner_reserve=1)
    ann, ben, cat, dan, eve, fay = (make_streamer(n).key for n in
                                    ("ann", "ben", "cat", "dan", "eve", "fay"))
    pat, pia = (make_streamer(n, partner=True).key for n in ("pat", "pia"))
    banned = make_streamer("mallory")
    set_banned(banned.channel, True, reason="spam")
    keys = [ann, "gl_aaaaaaaa_" + "0" * 32, ann, banned.key, ben, cat, dan, eve, pat, pia]
    del fay
    return [PublishRequest("live", key, "198.51.100.7", "ingest-a") for key in keys]


def test_publishes_decided_together_through_the_ledger_are_answered_as_one_by_one_in_four_queries(
    cluster, django_assert_num_queries,
) -> None:
    from quotas import tally
    from streams.ingest_runtime import defer_admission_writes

    requests = _batch_of_publishes()
    cluster.reconcile()
    # As the ingest does: the tally and key uses wait, the pace of ends is kept a while.
    defer_admission_writes()
    broadcasts.keep_pace_for(60)
    try:
        # The keys, the quota row, the ends that pace the refusals' wait estimates, the
        # sessions with their leases. SQLite (the embedded defaults) has no data-modifying
        # WITH: there the sessions and their leases are saved one by one in a transaction
        # (its BEGIN and COMMIT counted too).
        granted = sum(reason == "granted" for reason, _ in BATCH_EXPECTED)
        expected = 4 if connection.vendor == "postgresql" else 3 + 2 * granted + 2
        with django_assert_num_queries(expected):
            answers = broadcasts.start_broadcasts(requests)
    finally:
        broadcasts.keep_pace_for(0)
        defer_admission_writes(False)
        tally.flush()
    assert [_outcome(a) for a in answers] == BATCH_EXPECTED
    grants = [a for a in answers if isinstance(a, Grant)]
    assert sorted(SlotLease.objects.values_list("session_id", flat=True)) == sorted(
        g.session_id for g in grants)
    live = LiveSession.objects.filter(ended_at__isnull=True)
    assert {(s.pk, s.channel.slug, s.transcoded) for s in live} == {
        (g.session_id, g.channel, g.transcode) for g in grants}
    assert cluster.counts() == (5, 2)


def test_publishes_one_by_one_through_the_ledger_give_the_same_answers(cluster) -> None:
    requests = _batch_of_publishes()
    assert [_outcome(broadcasts.start_broadcast(r)) for r in requests] == BATCH_EXPECTED


def test_publishes_decided_together_under_the_quota_lock_give_the_same_answers(
    transactional_db: None, settings: Any,
) -> None:
    settings.REDIS_URL = ""
    requests = _batch_of_publishes()
    assert [_outcome(a) for a in broadcasts.start_broadcasts(requests)] == BATCH_EXPECTED
    assert SlotLease.objects.count() == 5


def test_a_channel_live_without_the_ledger_knowing_is_refused_and_its_batch_admitted(
    cluster,
) -> None:
    """The batch's one statement fails on the live channel's session: the others are
    written one by one, and the ledger lets the refused claim go."""
    ann, ben, cat = (make_streamer(n) for n in ("ann", "ben", "cat"))
    cluster.reconcile()
    broadcasts.open_session(ben.channel, "ingest-b", transcoded=False)  # not claimed
    answers = broadcasts.start_broadcasts(
        [PublishRequest("live", p.key, "198.51.100.7", "ingest-a") for p in (ann, ben, cat)])
    assert [_outcome(a)[0] for a in answers] == ["granted", "already_live", "granted"]
    assert LiveSession.objects.filter(ended_at__isnull=True).count() == 3
    assert cluster.counts()[0] == 2  # ann's and cat's claims; ben's was let go
