"""A reconnecting encoder takes over its own stream.

When an encoder's network blips it reconnects with the same key before the server has
seen the old connection drop. The platform answers "already live" naming the live
session (`Refusal.takeover`); the ingest ends that session's publish if it has sent
nothing for `takeover_silence`, and the new publish resumes the session. A publisher
still sending keeps its stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from ingest.gatekeeper import (
    EndReason,
    Grant,
    PublishRequest,
    Refusal,
    RefusalCode,
    StreamDescription,
)
from ingest.health import StreamHealth
from ingest.server import IngestConfig
from tests.ingest.clients import RawPublisher, ffmpeg_publish
from tests.ingest.harness import FakeGatekeeper
from tests.support.publishing import publish_start

KEY = "alice-key"


@dataclass
class OneSessionPerChannel(FakeGatekeeper):
    """As the platform: one connected publish per channel; a second one is refused
    "already live", naming the session it may take over; a publisher that dropped leaves
    its session waiting, and the next publish of the channel resumes it."""

    live: dict[str, Grant] = field(default_factory=dict)
    waiting: dict[str, Grant] = field(default_factory=dict)

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        channel = self.keys.get(request.key)
        if channel in self.live:
            return Refusal(
                RefusalCode.REJECTED, "already_live", "Already live.",
                takeover=self.live[channel].session_id,
            )
        left = self.waiting.pop(channel, None) if channel else None
        outcome = replace(left, resumed=True) if left else await super().admit(request)
        if isinstance(outcome, Grant):
            self.live[outcome.channel] = outcome
        return outcome

    async def release(
        self, grant: Grant, reason: EndReason, description: StreamDescription, health: StreamHealth
    ) -> None:
        await super().release(grant, reason, description, health)
        if self.live.get(grant.channel) is grant:
            del self.live[grant.channel]
            if reason.resumable:
                self.waiting[grant.channel] = grant


def test_a_frozen_publisher_is_replaced_by_its_own_key_within_two_seconds(start_ingest) -> None:
    gatekeeper = OneSessionPerChannel(keys={KEY: "alice"})
    ingest = start_ingest(gatekeeper, IngestConfig(node="test", takeover_silence=1.0))
    frozen = RawPublisher(ingest.host, ingest.port)
    try:
        assert publish_start(frozen, KEY)["code"] == "NetStream.Publish.Start"
        # From here the old encoder neither sends nor reads, and never closes: no FIN.
        started = time.monotonic()
        again = ffmpeg_publish(ingest.url(KEY), frames=30, background=True)
        while len(ingest.sinks) < 2:
            assert time.monotonic() - started < 2.0, "the reconnect is not live within 2 s"
            assert again.poll() is None, again.communicate()[1]
            time.sleep(0.02)
        live_after = time.monotonic() - started
        _, stderr = again.communicate(timeout=60)
        assert again.returncode == 0, stderr
        assert frozen.closed_by_server(), "the frozen connection is closed"
    finally:
        frozen.close()
    first, second = gatekeeper.admitted[0], ingest.sinks[1].grant
    assert second.resumed
    assert second.session_id == first.session_id, "the broadcast goes on as the same session"
    assert gatekeeper.released[0][:2] == (first, EndReason.CONNECTION_LOST)
    assert ingest.sinks[0].ended is EndReason.CONNECTION_LOST
    assert ingest.sinks[1].video_frames == 30
    print(f"\nlive again {live_after:.2f} s after the reconnect started")


def test_a_publisher_still_sending_keeps_its_stream(start_ingest) -> None:
    gatekeeper = OneSessionPerChannel(keys={KEY: "alice"})
    ingest = start_ingest(gatekeeper, IngestConfig(node="test", takeover_silence=1.0))
    running = ffmpeg_publish(ingest.url(KEY), frames=90, realtime=True, background=True)
    try:
        deadline = time.monotonic() + 10
        while not (ingest.sinks and ingest.sinks[0].video_frames > 10):
            assert time.monotonic() < deadline, "the first publish never went live"
            time.sleep(0.05)
        second = RawPublisher(ingest.host, ingest.port)
        try:
            asked = time.monotonic()
            status = publish_start(second, KEY)
            waited = time.monotonic() - asked
        finally:
            second.close()
        assert status["code"] == "NetStream.Publish.Rejected"
        assert waited >= 1.0, "it waited out the silence window before deciding"
        _, stderr = running.communicate(timeout=30)
        assert running.returncode == 0, stderr
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert len(ingest.sinks) == 1
    assert ingest.sinks[0].video_frames == 90, "the running stream lost nothing"
    assert [reason for _, reason, _, _ in gatekeeper.released] == [EndReason.PUBLISHER_STOPPED]


def test_a_refusal_without_a_takeover_is_not_retried(start_ingest) -> None:
    """Another channel's publish, or "already live" without a session named (a key that
    is not the channel's current one): refused at once, nothing replaced."""
    gatekeeper = OneSessionPerChannel(keys={KEY: "alice", "bob-key": "bob"})
    gatekeeper.refusals["old-alice-key"] = Refusal(
        RefusalCode.REJECTED, "already_live", "Already live."
    )
    ingest = start_ingest(gatekeeper, IngestConfig(node="test", takeover_silence=0.2))
    frozen = RawPublisher(ingest.host, ingest.port)
    try:
        assert publish_start(frozen, KEY)["code"] == "NetStream.Publish.Start"
        time.sleep(0.3)  # silent for longer than takeover_silence
        for key in ("old-alice-key", "nobody"):
            other = RawPublisher(ingest.host, ingest.port)
            try:
                assert publish_start(other, key)["level"] == "error"
            finally:
                other.close()
        bob = RawPublisher(ingest.host, ingest.port)
        try:
            assert publish_start(bob, "bob-key")["code"] == "NetStream.Publish.Start"
        finally:
            bob.close()
        assert not frozen.closed_by_server(limit=0.5), "alice's publish was left alone"
        # Checked while alice is still connected: closing her below releases her session.
        assert gatekeeper.live.get("alice") is gatekeeper.admitted[0]
    finally:
        frozen.close()
