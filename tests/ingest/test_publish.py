"""A publish from grant to release, alone: no socket, no server (`ingest.publish`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from ingest.gatekeeper import EndReason, Grant, PublishRequest, Refusal
from ingest.health import StreamHealth
from ingest.media import AUDIO, DATA_AMF0, VIDEO
from ingest.protocol import Message, encode_data
from ingest.publish import BUSY, Publish, admit
from ingest.sink import RecordingSink
from tests.ingest.harness import FakeGatekeeper

REQUEST = PublishRequest(app="live", key="k", peer_ip="203.0.113.7", node="test")
KEYFRAME = bytes([0x17, 1, 0, 0, 0]) + b"\x00\x00\x00\x02\x65\x88"
FRAME = bytes([0x27, 1, 0, 0, 0]) + b"\x00\x00\x00\x02\x41\x9a"
AAC = bytes([0xAF, 1]) + b"\x21\x10"


@dataclass
class SlowGatekeeper(FakeGatekeeper):
    admit_seconds: float = 0.0

    async def admit(self, request: PublishRequest) -> Grant | Refusal:
        await asyncio.sleep(self.admit_seconds)
        return await super().admit(request)


def new_publish(
    gatekeeper: FakeGatekeeper, heartbeat_interval: float = 60.0
) -> tuple[Publish, RecordingSink, list[str]]:
    grant = Grant(7, "alice")
    sink = RecordingSink(grant)
    calls: list[str] = []
    publish = Publish(
        grant,
        sink,
        gatekeeper,
        heartbeat_interval=heartbeat_interval,
        label="rtmp 203.0.113.7 [alice]",
        on_force_stop=lambda: calls.append("force stop"),
        on_health=lambda health: calls.append(f"health {health.video_frames}"),
    )
    return publish, sink, calls


def test_media_goes_to_the_sink_and_is_counted() -> None:
    async def scenario() -> tuple[RecordingSink, StreamHealth, float]:
        publish, sink, _ = new_publish(FakeGatekeeper())
        publish.media(Message(6, VIDEO, 1, 0, KEYFRAME), now=100.0, received_at=1.5)
        publish.media(Message(6, VIDEO, 1, 33, FRAME), now=100.5, received_at=2.0)
        publish.media(Message(4, AUDIO, 1, 10, AAC), now=100.6, received_at=2.1)
        meta = encode_data("@setDataFrame", "onMetaData", {"width": 1280.0, "height": 720.0})
        publish.metadata(Message(5, DATA_AMF0, 1, 0, meta))
        return sink, publish.health.snapshot(101.0), publish.last_media

    sink, health, last_media = asyncio.run(scenario())

    assert (sink.video_frames, sink.keyframes, sink.audio_frames) == (2, 1, 1)
    assert (health.video_frames, health.keyframes, health.audio_frames) == (2, 1, 1)
    assert last_media == 100.6
    assert sink.metadata_values[0].size == (1280, 720)


def test_ending_twice_releases_once_with_the_first_reason() -> None:
    gatekeeper = FakeGatekeeper()

    async def scenario() -> RecordingSink:
        publish, sink, _ = new_publish(gatekeeper)
        publish.media(Message(6, VIDEO, 1, 0, KEYFRAME), now=1.0, received_at=1.0)
        await asyncio.gather(
            publish.end(EndReason.PUBLISHER_STOPPED), publish.end(EndReason.NO_MEDIA)
        )
        await publish.end(EndReason.SERVER_SHUTDOWN)
        return sink

    sink = asyncio.run(scenario())

    assert [(g.channel, reason) for g, reason, _, _ in gatekeeper.released] == [
        ("alice", EndReason.PUBLISHER_STOPPED)
    ]
    assert gatekeeper.released[0][3].video_frames == 1
    assert sink.ended is EndReason.PUBLISHER_STOPPED


def test_the_release_reaches_the_platform_even_when_the_ending_is_cancelled() -> None:
    @dataclass
    class SlowRelease(FakeGatekeeper):
        async def release(self, *args: object) -> None:
            await asyncio.sleep(0.2)
            await super().release(*args)  # type: ignore[arg-type]

    gatekeeper = SlowRelease()

    async def scenario() -> None:
        publish, _, _ = new_publish(gatekeeper)
        ending = asyncio.ensure_future(publish.end(EndReason.CONNECTION_LOST))
        await asyncio.sleep(0.05)
        ending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ending

    asyncio.run(scenario())

    assert [reason for _, reason, _, _ in gatekeeper.released] == [EndReason.CONNECTION_LOST]


def test_heartbeats_report_health_and_a_stop_answer_stops_the_publish() -> None:
    gatekeeper = FakeGatekeeper(stop_channels={"alice"})

    async def scenario() -> list[str]:
        publish, _, calls = new_publish(gatekeeper, heartbeat_interval=0.05)
        publish.media(Message(6, VIDEO, 1, 0, KEYFRAME), now=1.0, received_at=1.0)
        publish.start()
        for _ in range(100):
            if "force stop" in calls:
                break
            await asyncio.sleep(0.01)
        await publish.end(EndReason.FORCE_STOPPED)
        return calls

    calls = asyncio.run(scenario())

    assert calls == ["health 1", "force stop"]
    assert len(gatekeeper.heartbeats) == 1


def test_an_admission_past_its_limit_is_refused_as_busy_and_its_late_grant_released() -> None:
    gatekeeper = SlowGatekeeper(keys={"k": "alice"}, admit_seconds=0.3)

    async def scenario() -> Grant | Refusal:
        outcome = await admit(gatekeeper, REQUEST, limit=0.05)
        await asyncio.sleep(0.5)  # the platform answers meanwhile
        return outcome

    outcome = asyncio.run(scenario())

    assert isinstance(outcome, Refusal)
    assert outcome.reason == BUSY
    assert outcome.retry_after == 60
    assert [(g.channel, reason) for g, reason, _, _ in gatekeeper.released] == [
        ("alice", EndReason.CONNECTION_LOST)
    ]


def test_a_grant_that_comes_after_its_publisher_left_is_released() -> None:
    gatekeeper = SlowGatekeeper(keys={"k": "alice"}, admit_seconds=0.2)

    async def scenario() -> None:
        asking = asyncio.ensure_future(admit(gatekeeper, REQUEST, limit=10))
        await asyncio.sleep(0.05)
        asking.cancel()
        await asyncio.sleep(0.4)

    asyncio.run(scenario())

    assert len(gatekeeper.admitted) == 1
    assert [reason for _, reason, _, _ in gatekeeper.released] == [EndReason.CONNECTION_LOST]


def test_an_answer_in_time_is_the_answer() -> None:
    gatekeeper = SlowGatekeeper(keys={"k": "alice"}, admit_seconds=0.01)

    outcome = asyncio.run(admit(gatekeeper, REQUEST, limit=5))

    assert outcome == Grant(1, "alice")
    assert not gatekeeper.released
