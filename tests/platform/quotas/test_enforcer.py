"""The concurrent-stream quota enforcer, through its write path (`streams.broadcasts`):
what is checked in which order, slot leases, live quota changes, the partner reserve,
refusal estimates, transcode slots, force stops and their cool-down."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth
from quotas.actions import set_quota
from quotas.models import AdmissionTally, QuotaChange, SlotLease
from streams import broadcasts
from streams.models import LiveSession
from tests.support.personas import make_streamer

pytestmark = pytest.mark.django_db

NOTHING = StreamDescription()
HEALTH = StreamHealth()


def publish(key: str, node: str = "ingest-a") -> Grant | Refusal:
    return broadcasts.start_broadcast(PublishRequest("live", key, "198.51.100.7", node))


def quota(**limits: int) -> None:
    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", **limits)


def streamers(prefix: str, n: int, *, partner: bool = False) -> list[str]:
    return [make_streamer(f"{prefix}{i}", partner=partner).key for i in range(n)]


def tallied(result: str, reason: str = "") -> int:
    rows = AdmissionTally.objects.filter(result=result, reason=reason)
    return sum(row.count for row in rows)


def end(grant: Grant, reason: EndReason = EndReason.PUBLISHER_STOPPED) -> None:
    broadcasts.end_broadcast(grant.session_id, reason, NOTHING, HEALTH)


def test_an_admitted_stream_holds_a_lease_the_heartbeat_renews_and_the_end_frees(
    settings,
) -> None:
    settings.GOLIVE_LEASE_TTL = 15
    grant = publish(make_streamer("alice").key)
    assert isinstance(grant, Grant)
    lease = SlotLease.objects.get()
    assert lease.session_id == grant.session_id
    assert lease.node == "ingest-a"
    assert 14 < (lease.expires_at - timezone.now()).total_seconds() <= 15
    SlotLease.objects.update(expires_at=timezone.now() + timedelta(seconds=1))
    assert broadcasts.record_heartbeat(grant.session_id, NOTHING, HEALTH)
    assert (SlotLease.objects.get().expires_at - timezone.now()).total_seconds() > 14
    end(grant)
    assert not SlotLease.objects.exists()
    assert tallied("admitted") == 1


def test_checks_run_in_order_each_with_its_own_reason(settings) -> None:
    quota(max_streams=2, partner_reserve=1)
    alice, bob = make_streamer("alice"), make_streamer("bob", partner=True)
    assert isinstance(publish(alice.key), Grant)
    # One live session per channel comes before capacity.
    refused = publish(alice.key)
    assert isinstance(refused, Refusal)
    assert refused.reason == "already_live"
    # A non-partner stops at quota minus reserve; a partner gets the reserved slot.
    refused = publish(make_streamer("carol").key)
    assert isinstance(refused, Refusal)
    assert refused.reason == "partner_reserve"
    assert "the last 1 slots are kept for partner channels" in refused.description
    assert isinstance(publish(bob.key), Grant)
    # Full: everyone is refused for capacity, partners too.
    for key in (make_streamer("dan").key, make_streamer("erin", partner=True).key):
        refused = publish(key)
        assert isinstance(refused, Refusal)
        assert refused.reason == "capacity"
        assert refused.description.startswith("golive is at capacity (2 streams live).")
    assert tallied("refused", "capacity") == 2
    assert tallied("refused", "partner_reserve") == 1
    assert tallied("refused", "already_live") == 1


def test_raising_the_quota_admits_the_next_publishes_and_lowering_kicks_no_one(
    capsys,
) -> None:
    quota(max_streams=100)
    keys = streamers("s", 151)
    grants = [publish(key) for key in keys[:100]]
    assert all(isinstance(g, Grant) for g in grants)
    assert isinstance(publish(keys[100]), Refusal)

    call_command("quota", "set", "--streams", "150", "--reason", "launch day")
    more = [publish(key) for key in keys[100:150]]
    assert all(isinstance(g, Grant) for g in more), "raised: no restart needed"
    refused = publish(keys[150])
    assert isinstance(refused, Refusal)
    assert refused.reason == "capacity"

    call_command("quota", "set", "--streams", "80", "--reason", "shrink")
    assert LiveSession.objects.filter(ended_at__isnull=True).count() == 150
    assert SlotLease.objects.count() == 150, "lowering kicks no running stream"
    live = [g for g in grants + more if isinstance(g, Grant)]
    for grant in live[:70]:
        end(grant)
    assert isinstance(publish(keys[150]), Refusal), "80 live: still at the lowered quota"
    end(live[70])
    assert isinstance(publish(keys[150]), Grant), "79 live: below it again"


def test_with_a_reserve_of_10_non_partners_stop_at_90_partners_go_on() -> None:
    quota(max_streams=100, partner_reserve=10)
    for key in streamers("n", 90):
        assert isinstance(publish(key), Grant)
    refused = publish(make_streamer("late").key)
    assert isinstance(refused, Refusal)
    assert refused.reason == "partner_reserve"
    partners = streamers("p", 11, partner=True)
    assert all(isinstance(publish(key), Grant) for key in partners[:10])
    last = publish(partners[10])
    assert isinstance(last, Refusal)
    assert last.reason == "capacity"


def test_the_wait_estimate_follows_how_fast_slots_have_been_freeing() -> None:
    quota(max_streams=2)
    first, second = (publish(key) for key in streamers("a", 2))
    refused = publish(make_streamer("waiting").key)
    assert isinstance(refused, Refusal)
    assert "No stream has ended in the last 30 minutes" in refused.description
    # Six streams ended over the last half hour: one slot frees every ~5 minutes.
    channel = make_streamer("history").channel
    now = timezone.now()
    for minutes in (2, 6, 11, 16, 21, 26):
        LiveSession.objects.create(
            channel=channel, started_at=now - timedelta(hours=1),
            ended_at=now - timedelta(minutes=minutes),
        )
    refused = publish(make_streamer("waiting2").key)
    assert isinstance(refused, Refusal)
    assert refused.retry_after == 300
    assert "Try again in about 5 minutes." in refused.description
    # Twice as many needed (the partner reserve): twice the wait.
    quota(max_streams=3, partner_reserve=2)
    refused = publish(make_streamer("waiting3").key)
    assert isinstance(refused, Refusal)
    assert refused.retry_after == 600
    assert isinstance(first, Grant)
    assert isinstance(second, Grant)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(30, "about a minute"), (299, "about 5 minutes"), (3000, "about 50 minutes"),
     (3700, "about an hour"), (9000, "about 2 hours")],
)
def test_waits_read_like_a_person_wrote_them(seconds: int, words: str) -> None:
    assert broadcasts.in_about(seconds) == words


def test_over_the_transcode_quota_a_stream_goes_source_only_then_is_upgraded() -> None:
    quota(max_streams=10, max_transcodes=1)
    first, second = (publish(key) for key in streamers("t", 2))
    assert isinstance(first, Grant)
    assert isinstance(second, Grant)
    assert (first.transcode, second.transcode) == (True, False)
    assert tallied("admitted", "source_only") == 1
    assert broadcasts.rebalance_transcodes() == 0, "no transcode slot free"
    end(first)
    assert broadcasts.rebalance_transcodes() == 1
    assert LiveSession.objects.get(pk=second.session_id).transcoded


def test_a_lapsed_lease_frees_the_slot_and_closes_the_session_as_ingest_lost(settings) -> None:
    settings.GOLIVE_RECONNECT_GRACE = 10
    quota(max_streams=2)
    lost, waiting = (publish(key, node="dead-node") for key in streamers("d", 2))
    assert isinstance(lost, Grant)
    assert isinstance(waiting, Grant)
    end(waiting, EndReason.CONNECTION_LOST)  # in its reconnect grace when the node died
    assert broadcasts.reap_expired_leases() == 0, "nothing has lapsed yet"
    later = timezone.now() + timedelta(seconds=26)
    assert broadcasts.reap_expired_leases(now=later) == 2
    closed = LiveSession.objects.get(pk=lost.session_id)
    assert closed.end_reason == "ingest_lost"
    assert closed.ended_at is not None
    left = LiveSession.objects.get(pk=waiting.session_id)
    assert (left.end_reason, left.ended_at) == ("connection_lost", left.disconnected_at)
    assert not SlotLease.objects.exists()
    assert tallied("lease_expired") == 2
    assert not broadcasts.record_heartbeat(lost.session_id, NOTHING, HEALTH), "it must stop"


def test_a_force_stop_ends_the_session_and_refuses_the_channel_for_the_cool_down(
    settings,
) -> None:
    settings.GOLIVE_FORCE_STOP_COOLDOWN = 600
    alice = make_streamer("alice")
    grant = publish(alice.key)
    assert isinstance(grant, Grant)
    assert broadcasts.force_stop(grant.session_id, by="ada", reason="terms of service")
    assert not broadcasts.force_stop(grant.session_id, by="ada"), "idempotent"
    session = LiveSession.objects.get()
    assert session.end_reason == "force_stopped"
    assert not SlotLease.objects.exists()
    assert broadcasts.ended_among([grant.session_id, 999]) == {grant.session_id}
    assert not broadcasts.record_heartbeat(grant.session_id, NOTHING, HEALTH)
    refused = publish(alice.key)
    assert isinstance(refused, Refusal)
    assert refused.reason == "cooldown"
    assert refused.description == (
        "This stream was stopped by golive staff (terms of service). You can go live again"
        " in about 10 minutes."
    )
    alice.channel.refresh_from_db()
    alice.channel.stopped_until = timezone.now() - timedelta(seconds=1)
    alice.channel.save()
    assert isinstance(publish(alice.key), Grant), "after the cool-down"
    assert tallied("force_stopped") == 1
    assert tallied("refused", "cooldown") == 1


def test_the_admin_action_force_stops_live_sessions(client, ada, settings) -> None:
    settings.GOLIVE_FORCE_STOP_COOLDOWN = 300
    grant = publish(make_streamer("alice").key)
    assert isinstance(grant, Grant)
    client.force_login(ada)
    response = client.post(
        "/admin/streams/livesession/",
        {"action": "force_stop", "_selected_action": [grant.session_id]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Stopped 1 live session(s)" in response.content.decode()
    assert LiveSession.objects.get().end_reason == "force_stopped"
