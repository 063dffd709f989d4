"""The reconnect grace: a streamer whose connection drops may come back into the same
broadcast (same session row, slot, playlist and VOD) for GOLIVE_RECONNECT_GRACE seconds."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal, StreamDescription
from ingest.health import StreamHealth
from ingest.packaging import ReconnectGrace, packager_sink_factory
from ingest.server import IngestConfig
from quotas.actions import set_quota
from quotas.models import QuotaChange
from streams import broadcasts
from streams.gatekeeper import PlatformGatekeeper
from streams.models import LiveSession
from tests.ingest.clients import ffmpeg_publish
from tests.support.personas import make_streamer
from tests.transcoder.cmaf.media import Collector

DESCRIPTION = StreamDescription("avc1.64001f", "mp4a.40.2", 1280, 720, 30.0)


def health(frames: int) -> StreamHealth:
    return StreamHealth(
        bytes_in=frames * 1000,
        video_frames=frames,
        audio_frames=frames * 2,
        media_duration_ms=frames * 33,
    )


def publish(key: str, node: str = "node-a") -> Grant:
    grant = broadcasts.start_broadcast(PublishRequest("live", key, "203.0.113.9", node))
    assert isinstance(grant, Grant), grant
    return grant


@pytest.fixture
def grace(settings):
    settings.GOLIVE_RECONNECT_GRACE = 10.0
    return timedelta(seconds=10)


def test_a_dropped_publisher_keeps_its_session_and_slot_for_the_grace(db, grace) -> None:
    alice = make_streamer("alice")
    grant = publish(alice.key)
    assert broadcasts.end_broadcast(
        grant.session_id, EndReason.CONNECTION_LOST, DESCRIPTION, health(300)
    )
    session = LiveSession.objects.get()
    assert session.ended_at is None
    assert session.disconnected_at is not None
    assert session.end_reason == "connection_lost"
    assert session.video_frames == 300
    # Still live as far as the quota goes: its slot waits for the streamer.
    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="one slot", max_streams=1)
    refused = broadcasts.start_broadcast(
        PublishRequest("live", make_streamer("bob").key, "203.0.113.10", "node-a")
    )
    assert isinstance(refused, Refusal)
    assert refused.reason == "capacity"

    again = publish(alice.key)
    assert again.resumed
    assert again.session_id == grant.session_id
    session.refresh_from_db()
    assert (session.disconnected_at, session.end_reason, session.reconnects) == (None, "", 1)
    assert session.earlier["video_frames"] == 300
    # The figures of the session are both connections' together.
    earlier = broadcasts.earlier_figures(grant.session_id)
    assert broadcasts.record_heartbeat(grant.session_id, DESCRIPTION, health(90), earlier)
    session.refresh_from_db()
    assert (session.video_frames, session.bytes_in) == (390, 390_000)


def test_when_the_grace_is_over_the_session_ends_when_the_publisher_left(db, grace) -> None:
    alice = make_streamer("alice")
    grant = publish(alice.key)
    broadcasts.end_broadcast(grant.session_id, EndReason.NO_MEDIA, DESCRIPTION, health(10))
    assert broadcasts.conclude_grace(grant.session_id) is True
    session = LiveSession.objects.get()
    assert session.ended_at == session.disconnected_at
    assert session.end_reason == "no_media"
    assert broadcasts.conclude_grace(grant.session_id) is True  # idempotent
    assert not publish(alice.key).resumed


def test_conclude_leaves_a_resumed_session_alone(db, grace) -> None:
    alice = make_streamer("alice")
    grant = publish(alice.key)
    broadcasts.end_broadcast(grant.session_id, EndReason.CONNECTION_LOST, DESCRIPTION, health(1))
    publish(alice.key)
    assert broadcasts.conclude_grace(grant.session_id) is False
    assert LiveSession.objects.get().ended_at is None


def test_a_reconnect_after_the_grace_starts_a_new_session(db, grace) -> None:
    alice = make_streamer("alice")
    grant = publish(alice.key)
    broadcasts.end_broadcast(grant.session_id, EndReason.CONNECTION_LOST, DESCRIPTION, health(1))
    LiveSession.objects.update(disconnected_at=timezone.now() - grace - timedelta(seconds=1))
    again = publish(alice.key)
    assert not again.resumed
    assert again.session_id != grant.session_id
    old = LiveSession.objects.get(pk=grant.session_id)
    assert old.ended_at == old.disconnected_at


def test_a_reconnect_to_another_ingest_node_starts_a_new_session(db, grace) -> None:
    """The packager (playlist, VOD so far) lives on the node the streamer left."""
    alice = make_streamer("alice")
    grant = publish(alice.key, node="node-a")
    broadcasts.end_broadcast(grant.session_id, EndReason.CONNECTION_LOST, DESCRIPTION, health(1))
    again = publish(alice.key, node="node-b")
    assert not again.resumed
    assert LiveSession.objects.get(pk=grant.session_id).ended_at is not None
    assert broadcasts.conclude_grace(grant.session_id) is True  # node-a then ends its copy


@pytest.mark.parametrize("reason", [EndReason.FORCE_STOPPED, EndReason.SERVER_SHUTDOWN])
def test_a_broadcast_we_ended_has_no_grace(db, grace, reason) -> None:
    alice = make_streamer("alice")
    grant = publish(alice.key)
    assert not broadcasts.end_broadcast(grant.session_id, reason, DESCRIPTION, health(1))
    assert LiveSession.objects.get().ended_at is not None
    assert not publish(alice.key).resumed


def test_no_grace_configured_ends_at_once(db, settings) -> None:
    settings.GOLIVE_RECONNECT_GRACE = 0
    alice = make_streamer("alice")
    grant = publish(alice.key)
    broadcasts.end_broadcast(grant.session_id, EndReason.CONNECTION_LOST, DESCRIPTION, health(1))
    assert LiveSession.objects.get().ended_at is not None


def test_a_restarted_node_closes_its_sessions_waiting_for_a_reconnect(db, grace) -> None:
    alice, bob = make_streamer("alice"), make_streamer("bob")
    waiting = publish(alice.key)
    broadcasts.end_broadcast(waiting.session_id, EndReason.CONNECTION_LOST, DESCRIPTION, health(1))
    publish(bob.key)
    assert broadcasts.end_orphaned_sessions("node-a") == 2
    left = LiveSession.objects.get(pk=waiting.session_id)
    assert (left.end_reason, left.ended_at) == ("connection_lost", left.disconnected_at)
    lost = LiveSession.objects.exclude(pk=waiting.session_id).get()
    assert lost.end_reason == "ingest_lost"


# -- with the ingest and real encoders ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_encoder_that_reconnects_within_the_grace_continues_its_broadcast(
    start_ingest, loop_thread, settings
) -> None:
    settings.GOLIVE_RECONNECT_GRACE = 3.0
    gatekeeper = PlatformGatekeeper()
    outputs: list[Collector] = []
    factory = packager_sink_factory(
        lambda grant: outputs.append(Collector()) or outputs[-1],
        grace=ReconnectGrace(3.0, gatekeeper.conclude),
    )
    ingest = start_ingest(gatekeeper, IngestConfig(node="test-node"), sink_factory=factory)
    alice = make_streamer("alice")
    first = ffmpeg_publish(ingest.url(alice.key), frames=60)
    # The encoder comes back once the ingest has seen it go (one that reconnects before
    # that takes over its silent publish: test_takeover).
    deadline = time.monotonic() + 10
    while not LiveSession.objects.filter(disconnected_at__isnull=False).exists():
        assert time.monotonic() < deadline, "the drop was never noticed"
        time.sleep(0.05)
    second = ffmpeg_publish(ingest.url(alice.key), frames=90)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    session = LiveSession.objects.get()
    assert session.ended_at is None, "still within the grace after the second publish"
    deadline = time.monotonic() + 10
    while not outputs[0].ended and time.monotonic() < deadline:
        time.sleep(0.1)
    session.refresh_from_db()
    assert session.end_reason == "publisher_stopped"
    assert session.ended_at == session.disconnected_at
    assert session.reconnects == 1
    assert session.video_frames == 150, "both connections' frames, counted exactly"
    assert len(outputs) == 1, "one packager output: one playlist, one VOD"
    assert outputs[0].ended
    assert [info.msn for info, _ in outputs[0].segments] == list(
        range(len(outputs[0].segments))
    )



def test_the_key_lookup_says_whether_the_broadcast_awaits_its_publisher(db, grace) -> None:
    """Admission reads this with the key (no query of its own) to resume the session."""
    from streams.actions import find_channel_by_key

    alice = make_streamer("alice")
    channel = find_channel_by_key(alice.key)
    assert channel is not None
    assert channel.awaiting_reconnect is False
    grant = publish(alice.key)
    assert find_channel_by_key(alice.key).awaiting_reconnect is False  # live, connected
    broadcasts.end_broadcast(grant.session_id, EndReason.CONNECTION_LOST, DESCRIPTION,
                             health(1))
    assert find_channel_by_key(alice.key).awaiting_reconnect is True
    assert publish(alice.key).resumed
    assert find_channel_by_key(alice.key).awaiting_reconnect is False
