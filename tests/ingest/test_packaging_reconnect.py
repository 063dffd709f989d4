"""A streamer who drops and reconnects within the grace period continues the same
publish: the packager is parked, then resumed by the reconnect or ended when time is up."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from ingest.gatekeeper import EndReason, Grant
from ingest.packaging import ReconnectGrace, packager_sink_factory
from ingest.sink import SinkFactory
from tests.support.publishing import publish
from tests.transcoder.cmaf.media import Clip, Collector, decode, feed
from transcoder.cmaf import Packager, PackagerError
from transcoder.cmaf.packager import PART_TARGET

GRANT = Grant(session_id=7, channel="alice")


def played(output: Collector) -> list[float]:
    video, _audio = decode(output.inits[0][1] + b"".join(d for _, d in output.segments))
    return [float(f.pts * f.time_base) for f in video]


@pytest.mark.parametrize("first_leg_ms", [2500, 400])
def test_a_resumed_publish_carries_on_one_timeline_and_one_media_sequence(
    clip: Clip, first_leg_ms: int
) -> None:
    """The reconnecting encoder's clock starts again at zero and it sends its sequence
    headers again; a first leg shorter than a second is the case a jump detector misses."""
    first, second = clip.until(first_leg_ms), clip.until(2000).shifted(0, seconds=6.0)
    output = Collector()
    packager = Packager(output)
    feed(packager, first, end=False)
    packager.pause()
    dropped_at = len(output.segments)
    assert sum(len(info.parts) for info, _ in output.segments) == len(output.parts)
    packager.resume()
    feed(packager, second)
    assert len(output.inits) == 1, "the same headers again are not a new init segment"
    resumed = output.segments[dropped_at][0]
    assert resumed.parts[0].independent, "the reconnect starts a segment on its key frame"
    for info, _ in output.segments:  # parts as LL-HLS wants them, a segment's last aside
        assert all(0.85 * PART_TARGET - 1e-3 <= p.duration <= PART_TARGET for p in info.parts[:-1])
    assert not any(info.discontinuity for info, _ in output.segments)
    msns = [info.msn for info, _ in output.segments]
    assert msns == list(range(len(msns)))
    pts = played(output)
    assert len(pts) == len(first.video) + len(second.video)
    assert pts == sorted(pts)
    steps = [b - a for a, b in itertools.pairwise(pts)]
    # B-frames: the reconnect's frames start after the last connection's largest
    # composition offset, a few frames at most; anything more is a hole.
    assert min(steps) > 0, "no two frames at the same time"
    assert max(steps) < 0.15, "no hole where the publisher came back"
    expected = (len(first.video) + len(second.video)) / 30
    assert pts[-1] - pts[0] == pytest.approx(expected, abs=0.15)


def test_the_reconnected_leg_is_dated_by_its_own_arrival(clip: Clip) -> None:
    output = Collector()
    packager = Packager(output)
    feed(packager, clip.until(2000), end=False)
    packager.pause()
    packager.resume()
    feed(packager, clip.until(2000).shifted(0, seconds=30.0))
    first_received = clip.frames[0].received_at
    dates = [info.program_date_time - first_received for info, _ in output.segments]
    assert dates[0] == pytest.approx(0, abs=0.05)
    assert dates[-1] >= 30.0, "the second leg's segments carry the wall clock it came in at"


def test_pause_emits_the_last_part_and_segment_without_ending(clip: Clip) -> None:
    """A publisher that drops mid-segment: what it sent is listed complete at once."""
    leg = clip.until(2700)  # 0.7 s into the second segment
    output = Collector()
    packager = Packager(output)
    feed(packager, leg, end=False)
    packager.pause()
    packager.pause()
    assert not output.ended
    assert output.calls[-1] == "segment"
    assert len(played(output)) == len(leg.video)
    packager.end()
    assert output.ended
    assert len(output.segments) == 2


def test_resume_and_pause_after_end_are_refused(clip: Clip) -> None:
    packager = Packager(Collector())
    feed(packager, clip.until(1000))
    with pytest.raises(PackagerError):
        packager.resume()
    with pytest.raises(PackagerError):
        packager.pause()


def sink_for(factory: SinkFactory, clip: Clip, reason: EndReason) -> None:
    """One connection's publish through the factory's sink, ending with ``reason``."""
    publish(factory(GRANT), clip, reason)


class Platform:
    """The conclude callback: says whether the session is over, and counts the asks."""

    def __init__(self, answers: list[bool | Exception]) -> None:
        self.answers = answers
        self.asked: list[int] = []

    async def conclude(self, grant: Grant) -> bool:
        self.asked.append(grant.session_id)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_reconnect_within_the_grace_continues_the_same_output(clip: Clip) -> None:
    async def scenario() -> None:
        outputs: list[Collector] = []
        platform = Platform([True])
        grace = ReconnectGrace(0.3, platform.conclude)
        factory = packager_sink_factory(
            lambda grant: outputs.append(Collector()) or outputs[-1], grace=grace
        )
        sink_for(factory, clip.until(2000), EndReason.CONNECTION_LOST)
        assert len(grace) == 1
        assert not outputs[0].ended
        sink_for(factory, clip.until(2000), EndReason.PUBLISHER_STOPPED)
        assert len(outputs) == 1, "the reconnect got the parked packager, not a new one"
        await asyncio.sleep(0.5)
        assert outputs[0].ended
        assert platform.asked == [GRANT.session_id]
        assert len(played(outputs[0])) == 2 * len(clip.until(2000).video)

    asyncio.run(scenario())


def test_without_a_reconnect_the_publish_ends_when_the_grace_is_over(clip: Clip) -> None:
    async def scenario() -> None:
        output = Collector()
        platform = Platform([True])
        factory = packager_sink_factory(
            lambda grant: output, grace=ReconnectGrace(0.2, platform.conclude)
        )
        sink_for(factory, clip.until(2500), EndReason.NO_MEDIA)
        await asyncio.sleep(0.1)
        assert not output.ended
        await asyncio.sleep(0.3)
        assert output.ended
        assert len(played(output)) == len(clip.until(2500).video), "the last part was flushed"

    asyncio.run(scenario())


def test_a_resume_the_platform_granted_keeps_the_packager_for_its_reconnect(
    clip: Clip,
) -> None:
    async def scenario() -> None:
        output = Collector()
        platform = Platform([False, RuntimeError("database down")])
        grace = ReconnectGrace(0.15, platform.conclude)
        factory = packager_sink_factory(lambda grant: output, grace=grace)
        sink_for(factory, clip.until(1000), EndReason.CONNECTION_LOST)
        await asyncio.sleep(0.25)
        # resumed: waiting for the reconnect
        assert len(grace) == 1
        assert not output.ended
        await asyncio.sleep(0.2)
        assert output.ended, "when the platform cannot answer, the memory is freed"
        assert platform.asked == [7, 7]

    asyncio.run(scenario())


@pytest.mark.parametrize("reason", [EndReason.FORCE_STOPPED, EndReason.SERVER_SHUTDOWN])
def test_a_publish_we_ended_gets_no_grace(clip: Clip, reason: EndReason) -> None:
    async def scenario() -> None:
        output = Collector()
        grace = ReconnectGrace(10, Platform([]).conclude)
        sink_for(packager_sink_factory(lambda grant: output, grace=grace), clip.until(1000), reason)
        assert output.ended
        assert len(grace) == 0

    asyncio.run(scenario())


def test_end_all_ends_every_parked_publish(clip: Clip) -> None:
    async def scenario() -> None:
        output = Collector()
        grace = ReconnectGrace(10, Platform([]).conclude)
        sink_for(
            packager_sink_factory(lambda grant: output, grace=grace),
            clip.until(1000),
            EndReason.CONNECTION_LOST,
        )
        grace.end_all()
        assert output.ended
        assert len(grace) == 0

    asyncio.run(scenario())
