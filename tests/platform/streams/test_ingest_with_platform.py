"""The ingest with the platform's gatekeeper: sessions recorded, every refusal, by real clients.

The ingest runs on its own event loop thread in this process, against the test database.
"""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command

from ingest.server import IngestConfig
from quotas.actions import set_quota
from quotas.models import QuotaChange
from streams import actions
from streams.gatekeeper import PlatformGatekeeper
from streams.models import LiveSession
from tests.ingest.clients import RawPublisher, ffmpeg_publish, gstreamer_publish, pyav_publish
from tests.support.personas import make_streamer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ingest(start_ingest):
    return start_ingest(
        PlatformGatekeeper(), IngestConfig(node="test-node", heartbeat_interval=0.5)
    )


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def ended_session(channel) -> LiveSession:
    """The channel's session once the ingest has released it (the client may exit first)."""
    assert wait_for(
        lambda: LiveSession.objects.filter(channel=channel, ended_at__isnull=False).exists()
    ), "the session was never ended"
    return LiveSession.objects.get(channel=channel)


def test_a_30_second_720p30_publish_is_recorded_exactly(ingest) -> None:
    alice = make_streamer("alice")
    result = ffmpeg_publish(ingest.url(alice.key), frames=900, size="1280x720", timeout=300)
    assert result.returncode == 0, result.stderr
    session = ended_session(alice.channel)
    assert session.end_reason == "publisher_stopped"
    assert session.ended_at is not None
    assert session.video_frames == 900
    assert abs(session.media_duration_ms - 30_000) <= 500
    assert session.video_codec.startswith("avc1.64")
    assert session.audio_codec == "mp4a.40.2"
    assert (session.width, session.height) == (1280, 720)
    assert float(session.frame_rate) == 30.0
    assert session.ingest_node == "test-node"
    assert session.bytes_in > 1_000_000
    assert session.health["keyframe_interval_ms"] == 2000


@pytest.mark.parametrize(
    ("client", "codec_prefix", "size"),
    [
        ("gstreamer", "avc1.", (640, 360)),
        ("pyav-hevc", "hvc1.", (854, 480)),
        ("pyav-av1", "av01.", (854, 480)),
    ],
)
def test_other_real_clients_are_recorded_exactly(ingest, client, codec_prefix, size) -> None:
    erin = make_streamer("erin")
    if client == "gstreamer":
        result = gstreamer_publish(ingest.url(erin.key), frames=150)
        assert result.returncode == 0, result.stderr + result.stdout
        frames = 150
    else:
        # FFmpeg's RTMP client writes HEVC and AV1 as Enhanced RTMP (FourCC headers).
        encoder = {"pyav-hevc": "libx265", "pyav-av1": "libsvtav1"}[client]
        frames = 90
        pyav_publish(ingest.url(erin.key), encoder, frames=frames, width=854, height=480)
    session = ended_session(erin.channel)
    assert session.end_reason == "publisher_stopped"
    assert session.video_frames == frames
    assert abs(session.media_duration_ms - frames * 1000 / 30) <= 500
    assert session.video_codec.startswith(codec_prefix)
    assert (session.width, session.height) == size
    assert float(session.frame_rate) == 30.0
    sink = ingest.sink_for("erin")  # and every frame went on to the media sink
    assert sink.video_frames == frames


def refused(result) -> str:
    assert result.returncode != 0, "the client should have been refused"
    return result.stderr


def test_every_refusal_reaches_a_real_client_while_another_stream_keeps_flowing(ingest) -> None:
    alice, bob, carol = make_streamer("alice"), make_streamer("bob"), make_streamer("carol")
    # alice streams in real time for the whole test: 14 s.
    running = ffmpeg_publish(ingest.url(alice.key), frames=420, realtime=True, background=True)
    assert wait_for(lambda: LiveSession.objects.filter(channel=alice.channel).exists())

    assert "Unknown or revoked stream key" in refused(
        ffmpeg_publish(ingest.url("gl_aaaaaaaa_" + "b" * 32), frames=10)
    )
    old_key = bob.key
    actions.rotate_stream_key(bob.channel)
    assert "Unknown or revoked stream key" in refused(
        ffmpeg_publish(ingest.url(old_key), frames=10)
    )

    actions.set_banned(carol.channel, True, reason="terms of service")
    assert "This channel is banned: terms of service" in refused(
        ffmpeg_publish(ingest.url(carol.key), frames=10)
    )

    assert "already live" in refused(ffmpeg_publish(ingest.url(alice.key), frames=10))

    dave = make_streamer("dave")
    set_quota(
        actor=None,
        source=QuotaChange.Source.COMMAND,
        reason="test",
        max_streams=1,
        partner_reserve=0,
    )
    assert "golive is at capacity (1 stream live). No stream has ended in the last" in (
        refused(ffmpeg_publish(ingest.url(dave.key), frames=10))
    )

    # None of the refused attempts opened a session; alice's stream kept flowing.
    assert LiveSession.objects.count() == 1
    frames_before = LiveSession.objects.get(channel=alice.channel).video_frames
    _stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 0, stderr
    session = ended_session(alice.channel)
    assert session.video_frames == 420
    assert session.video_frames > frames_before
    assert session.end_reason == "publisher_stopped"


@pytest.mark.parametrize("case", ["unknown", "banned", "already_live", "capacity"])
def test_a_refusal_is_an_error_status_and_publish_start_is_never_sent(ingest, case) -> None:
    alice = make_streamer("alice")
    key = alice.key
    if case == "unknown":
        key = "gl_cccccccc_" + "d" * 32
    elif case == "banned":
        actions.set_banned(alice.channel, True)
    elif case == "already_live":
        alice.channel.sessions.create(ingest_node="elsewhere")
    elif case == "capacity":
        set_quota(
            actor=None,
            source=QuotaChange.Source.COMMAND,
            reason="t",
            max_streams=0,
            partner_reserve=0,
        )
    client = RawPublisher(ingest.host, ingest.port)
    try:
        client.connect_and_publish(key)
        assert client.read_until(lambda cmds: any(c.name == "onStatus" for c in cmds))
        status = next(c for c in client.commands() if c.name == "onStatus").args[0]
        assert status["level"] == "error"
        assert status["code"] in ("NetStream.Publish.BadName", "NetStream.Publish.Rejected")
        assert len(status["description"]) > 10
        assert client.closed_by_server()
        assert b"NetStream.Publish.Start" not in client.raw
        assert key.encode() not in client.raw  # the key is never echoed back
    finally:
        client.close()
    assert not LiveSession.objects.filter(ended_at__isnull=True, ingest_node="test-node").exists()


def test_repeated_wrong_keys_from_one_address_are_blocked(start_ingest) -> None:
    from ingest.throttle import ThrottlePolicy

    ingest = start_ingest(
        PlatformGatekeeper(),
        IngestConfig(
            node="t", throttle=ThrottlePolicy(max_failures=3, block_seconds=60, delay_step=0.05)
        ),
    )
    alice = make_streamer("alice")
    for attempt in range(3):
        assert "Unknown or revoked" in refused(
            ffmpeg_publish(ingest.url(f"gl_aaaaaaaa_{attempt:032d}"), frames=5)
        )
    # Blocked now: a right key never admitted from this address waits like the guesses
    # (README, security), and is told why.
    assert "Too many wrong stream keys" in refused(ffmpeg_publish(ingest.url(alice.key), frames=5))
    assert not LiveSession.objects.exists()


def test_stopping_the_ingest_ends_live_sessions_as_server_shutdown(ingest) -> None:
    alice = make_streamer("alice")
    running = ffmpeg_publish(ingest.url(alice.key), frames=600, realtime=True, background=True)
    try:
        assert wait_for(lambda: LiveSession.objects.filter(channel=alice.channel).exists())
        ingest.loop.call(ingest.server.stop(grace=5))
        session = LiveSession.objects.get(channel=alice.channel)
        assert session.end_reason == "server_shutdown"
        assert session.ended_at is not None
    finally:
        running.kill()
        running.communicate()


def test_a_heartbeat_records_health_while_live(ingest) -> None:
    alice = make_streamer("alice")
    running = ffmpeg_publish(ingest.url(alice.key), frames=120, realtime=True, background=True)
    try:
        assert wait_for(
            lambda: LiveSession.objects.filter(
                channel=alice.channel,
                last_heartbeat_at__isnull=False,
                video_frames__gt=0,
                ended_at__isnull=True,
            ).exists()
        )
        session = LiveSession.objects.get(channel=alice.channel)
        assert session.width == 640
        assert session.health["bitrate_kbps"] > 0
    finally:
        running.communicate(timeout=30)


def test_quota_command_sees_the_live_stream(ingest, capsys) -> None:
    alice = make_streamer("alice")
    running = ffmpeg_publish(ingest.url(alice.key), frames=90, realtime=True, background=True)
    try:
        assert wait_for(lambda: LiveSession.objects.filter(ended_at__isnull=True).exists())
        call_command("quota", "show", "--json")
        assert '"live_streams": 1' in capsys.readouterr().out
    finally:
        running.communicate(timeout=30)
