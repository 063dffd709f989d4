"""A reconnecting encoder takes over its own stream, with the platform deciding: only the
channel's current key names the live session; the broadcast goes on as the same session
(same row, packager, playlist) when the old publish was on the same node."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ingest.gatekeeper import Grant, PublishRequest
from ingest.packaging import ReconnectGrace, packager_sink_factory
from ingest.server import IngestConfig
from ingest.sink import NullSink
from quotas.models import SlotLease
from streams import actions, broadcasts, takeovers
from streams.gatekeeper import PlatformGatekeeper
from streams.ingest_runtime import PlatformIngest
from streams.models import LiveSession
from tests.ingest.clients import RawPublisher, ffmpeg_publish
from tests.ingest.harness import LoopThread
from tests.support.personas import make_streamer
from tests.support.publishing import publish_start
from tests.transcoder.cmaf.media import Collector


def publish(key: str, node: str = "node-a") -> Grant:
    grant = broadcasts.start_broadcast(PublishRequest("live", key, "203.0.113.9", node))
    assert isinstance(grant, Grant), grant
    return grant


def test_only_the_channels_current_key_finds_its_live_publish(db) -> None:
    alice, bob = make_streamer("alice"), make_streamer("bob")
    grant = publish(alice.key)
    assert broadcasts.find_live_publish(alice.key) == (grant.session_id, "node-a")
    assert broadcasts.find_live_publish(bob.key) is None, "bob is not live"
    assert broadcasts.find_live_publish("gl_aaaaaaaa_" + "0" * 32) is None
    new_key = actions.rotate_stream_key(alice.channel)
    assert broadcasts.find_live_publish(alice.key) is None, "a rotated key finds nothing"
    assert broadcasts.find_live_publish(new_key) == (grant.session_id, "node-a")


def test_a_publish_waiting_for_its_reconnect_is_no_takeover_target(db, settings) -> None:
    settings.GOLIVE_RECONNECT_GRACE = 10.0
    alice = make_streamer("alice")
    grant = publish(alice.key)
    broadcasts.end_broadcast(
        grant.session_id, broadcasts.EndReason.CONNECTION_LOST,
        broadcasts.StreamDescription(), broadcasts.StreamHealth(),
    )
    assert broadcasts.find_live_publish(alice.key) is None


def test_takeover_requests_reach_their_node_once_and_keep_it_alive(settings) -> None:
    if not settings.REDIS_URL:
        pytest.skip("requests go through Redis (the cluster mode)")
    assert not takeovers.is_alive("node-x"), "a node never heard of is not alive"
    assert takeovers.request("node-x", 7)
    assert takeovers.request("node-x", 8)
    assert sorted(takeovers.take_requests("node-x")) == [7, 8]
    assert takeovers.take_requests("node-x") == [], "each request is taken once"
    assert takeovers.is_alive("node-x"), "taking requests marks the node alive"
    takeovers.forget("node-x")
    assert not takeovers.is_alive("node-x")


def test_without_redis_there_is_no_other_node_to_ask(settings) -> None:
    settings.REDIS_URL = ""
    assert takeovers.request("node-x", 7) is False
    assert takeovers.take_requests("node-x") == []
    assert takeovers.is_alive("node-x"), "never declared dead on a doubt"


# -- with the ingest and real encoders ----------------------------------------------------


def wait_for(predicate: Any, timeout: float) -> float:
    """Seconds until ``predicate()`` held; fails past ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def frozen_ffmpeg() -> Iterator[Any]:
    """Starts ffmpeg publishers that the test may freeze (SIGSTOP: no FIN, no RST)."""
    started: list[Any] = []

    def start(url: str) -> Any:
        started.append(ffmpeg_publish(url, frames=3000, realtime=True, background=True))
        return started[-1]

    yield start
    for process in started:
        process.kill()  # a stopped process dies of SIGKILL too
        process.communicate()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_frozen_encoder_reconnecting_with_its_key_is_live_again_within_two_seconds(
    start_ingest, settings, frozen_ffmpeg
) -> None:
    settings.GOLIVE_RECONNECT_GRACE = 10.0
    gatekeeper = PlatformGatekeeper()
    outputs: list[Collector] = []
    factory = packager_sink_factory(
        lambda grant: outputs.append(Collector()) or outputs[-1],
        grace=ReconnectGrace(10.0, gatekeeper.conclude),
    )
    ingest = start_ingest(gatekeeper, IngestConfig(node="test-node"), sink_factory=factory)
    alice = make_streamer("alice")
    first = frozen_ffmpeg(ingest.url(alice.key))
    wait_for(lambda: LiveSession.objects.filter(video_frames__gt=0).exists(), 15)
    os.kill(first.pid, signal.SIGSTOP)
    started = time.monotonic()
    second = ffmpeg_publish(ingest.url(alice.key), frames=60, background=True)
    live_after = wait_for(lambda: LiveSession.objects.filter(reconnects=1).exists(), 2.0)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
    session = LiveSession.objects.get()
    assert session.channel_id == alice.channel.pk, "the same session, not a new one"
    assert len(outputs) == 1, "one packager: the same playlist and VOD go on"
    print(f"\nlive again {live_after:.2f} s after the reconnect began "
          f"({time.monotonic() - started:.1f} s to the end of the second publish)")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_rotated_or_other_key_cannot_take_over_a_silent_publish(start_ingest, settings) -> None:
    settings.GOLIVE_RECONNECT_GRACE = 10.0
    ingest = start_ingest(PlatformGatekeeper(), IngestConfig(node="test-node"))
    alice, bob = make_streamer("alice"), make_streamer("bob")
    frozen = RawPublisher(ingest.host, ingest.port)
    clients = [frozen]
    try:
        assert publish_start(frozen, alice.key)["code"] == "NetStream.Publish.Start"
        new_key = actions.rotate_stream_key(alice.channel)
        time.sleep(1.2)  # silent for longer than the takeover silence
        old = RawPublisher(ingest.host, ingest.port)
        clients.append(old)
        assert publish_start(old, alice.key)["code"] == "NetStream.Publish.BadName"
        other = RawPublisher(ingest.host, ingest.port)
        clients.append(other)
        assert publish_start(other, bob.key)["code"] == "NetStream.Publish.Start"
        assert not frozen.closed_by_server(limit=0.3)
        session = LiveSession.objects.get(channel=alice.channel)
        assert (session.ended_at, session.disconnected_at, session.reconnects) == (None, None, 0)
        # The channel's new key is its current one: it may replace the silent publish.
        current = RawPublisher(ingest.host, ingest.port)
        clients.append(current)
        assert publish_start(current, new_key)["code"] == "NetStream.Publish.Start"
        assert frozen.closed_by_server()
    finally:
        for client in clients:
            client.close()
    session.refresh_from_db()
    assert (session.ended_at, session.disconnected_at, session.reconnects) == (None, None, 1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_reconnect_to_another_node_takes_over_from_the_node_holding_the_silent_publish(
    settings, frozen_ffmpeg
) -> None:
    if not settings.REDIS_URL:
        pytest.skip("nodes ask each other through Redis (the cluster mode)")
    loop = LoopThread()
    nodes: list[PlatformIngest] = []

    async def start(node: str) -> PlatformIngest:
        gatekeeper = PlatformGatekeeper()
        server = PlatformIngest(
            gatekeeper, lambda grant: NullSink(), IngestConfig(node=node, heartbeat_interval=1)
        )
        server.platform = gatekeeper
        await server.start("127.0.0.1", 0)
        return server

    try:
        nodes = [loop.call(start("node-a")), loop.call(start("node-b"))]
        alice = make_streamer("alice")
        port_a, port_b = (node.address[1] for node in nodes)
        first = frozen_ffmpeg(f"rtmp://127.0.0.1:{port_a}/live/{alice.key}")
        wait_for(lambda: LiveSession.objects.filter(last_heartbeat_at__isnull=False).exists(), 15)
        os.kill(first.pid, signal.SIGSTOP)
        second = ffmpeg_publish(
            f"rtmp://127.0.0.1:{port_b}/live/{alice.key}", frames=60, background=True
        )
        live_after = wait_for(
            lambda: LiveSession.objects.filter(ingest_node="node-b").exists(),
            PlatformGatekeeper.TAKEOVER_WAIT,
        )
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == 0, stderr
        old = LiveSession.objects.get(ingest_node="node-a")
        assert old.ended_at is not None, "the old node's session ended (its packager is there)"
        assert old.end_reason == "connection_lost"
        print(f"\nlive on node-b {live_after:.2f} s after the reconnect began")
    finally:
        for node in nodes:
            loop.call(node.stop(grace=5))
        loop.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_reconnect_after_its_node_died_does_not_wait_for_the_lease(
    settings, frozen_ffmpeg
) -> None:
    """The node holding the session stops renewing its alive mark (its process died):
    the next node ends that session at once instead of refusing until the lease lapses."""
    if not settings.REDIS_URL:
        pytest.skip("nodes know each other through Redis (the cluster mode)")
    import redis

    loop = LoopThread()
    nodes: list[PlatformIngest] = []

    async def start(node: str) -> PlatformIngest:
        gatekeeper = PlatformGatekeeper()
        server = PlatformIngest(
            gatekeeper, lambda grant: NullSink(), IngestConfig(node=node, heartbeat_interval=1)
        )
        server.platform = gatekeeper
        await server.start("127.0.0.1", 0)
        return server

    async def die(server: PlatformIngest) -> None:
        assert server._housekeeping is not None
        server._housekeeping.cancel()

    try:
        nodes = [loop.call(start("node-a")), loop.call(start("node-b"))]
        alice = make_streamer("alice")
        port_a, port_b = (node.address[1] for node in nodes)
        first = frozen_ffmpeg(f"rtmp://127.0.0.1:{port_a}/live/{alice.key}")
        wait_for(lambda: LiveSession.objects.filter(last_heartbeat_at__isnull=False).exists(), 15)
        os.kill(first.pid, signal.SIGSTOP)
        loop.call(die(nodes[0]))
        client = redis.Redis.from_url(settings.REDIS_URL)
        alive = f"{settings.GOLIVE_REDIS_PREFIX}:node-alive:node-a"
        wait_for(lambda: not client.exists(alive), takeovers.ALIVE_TTL + 1)
        second = ffmpeg_publish(
            f"rtmp://127.0.0.1:{port_b}/live/{alice.key}", frames=60, background=True
        )
        live_after = wait_for(
            lambda: LiveSession.objects.filter(ingest_node="node-b").exists(), 2.0
        )
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == 0, stderr
        old = LiveSession.objects.get(ingest_node="node-a")
        assert old.end_reason == "ingest_lost"
        assert not SlotLease.objects.filter(session=old).exists()
        print(f"\nlive on node-b {live_after:.2f} s after the reconnect began")
    finally:
        for node in nodes:
            loop.call(node.stop(grace=5))
        loop.close()
