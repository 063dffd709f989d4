"""A transcode session fed from the live index, as a cluster worker runs it: the source is
packaged into the index part by part (as its delivery publishes it), the follower reads
the parts back and the rungs come out cut exactly as the source was. Where a session
starts: at the live edge, or after the segment a dead session's rungs stopped in."""

from __future__ import annotations

import asyncio

import pytest

from tests.transcoder.cmaf.media import Clip, Collector, decode, demux_flv, encode_flv_cli, feed
from transcoder.cmaf import Packager, PackagerSettings
from transcoder.follower import SourceFollower, plan_start
from transcoder.ladder import parse_ladder
from transcoder.live_index import MemoryLiveIndex, PartRef, SegmentRef
from transcoder.renditions import SOURCE
from transcoder.session import SessionStats, TranscodeSession

SETTINGS = PackagerSettings(part_target=0.334, max_segment_duration=2)
SECONDS = 6
LADDER = parse_ladder("120p30:214x120@30:250k, 90p15:160x90@15:120k")
STREAM = "s1"


@pytest.fixture(scope="module")
def source() -> Clip:
    return demux_flv(encode_flv_cli(SECONDS, width=320, height=180, rate=30))


@pytest.fixture(scope="module")
def packaged(source: Clip) -> Collector:
    output = Collector()
    feed(Packager(output, SETTINGS), source)
    return output


async def publish(index: MemoryLiveIndex, source: Collector, *, parts: int | None = None,
                  pace: float = 0.0) -> None:
    """The source's delivery: init, then each part, each segment completed after its last
    part; ``parts`` stops after that many parts."""
    await index.set_init(STREAM, SOURCE, source.inits[0][1], 0.334, target_duration=2)
    segments = {s.msn: s for s, _ in source.segments}
    for count, (info, data) in enumerate(source.parts):
        if parts is not None and count >= parts:
            return
        await index.add_part(STREAM, SOURCE, PartRef(info.msn, info.index, info.duration,
                                                     info.independent), data,
                             program_date_time=info.program_date_time if info.index == 0 else None)
        segment = segments.get(info.msn)
        if segment is not None and segment.parts[-1].index == info.index:
            await index.complete_segment(STREAM, SOURCE, SegmentRef(
                info.msn, segment.duration, segment.program_date_time))
        await asyncio.sleep(pace)


def test_a_session_following_the_index_cuts_its_rungs_as_the_source(
    source: Clip, packaged: Collector
) -> None:
    rungs: dict[str, Collector] = {}
    ended: list[SessionStats] = []

    async def scenario() -> str:
        index = MemoryLiveIndex()
        writer = asyncio.ensure_future(publish(index, packaged, pace=0.002))
        assert await index.wait_for_part(STREAM, SOURCE, 0, 0, 10)
        plan = await plan_start(index, STREAM, LADDER)
        assert plan is not None
        assert plan.msn == 0
        assert not plan.gaps
        assert not plan.restart
        assert [r.name for r in plan.rungs] == ["120p30", "90p15"]
        session = TranscodeSession(LADDER, lambda n: rungs.setdefault(n, Collector()), SETTINGS,
                                   on_end=ended.append, shed=False)
        last = packaged.parts[-1][0]

        async def source_end() -> tuple[int, int] | None:
            return (last.msn, last.index) if writer.done() else None

        follower = SourceFollower(index, STREAM, session, start_msn=plan.msn,
                                  source_end=source_end, wait=0.1)
        reason = await follower.run(asyncio.Event())
        session.end()
        assert await asyncio.to_thread(session.join, 60)
        assert follower.parts == len(packaged.parts)
        return reason

    assert asyncio.run(scenario()) == "ended"
    (stats,) = ended
    assert stats.error is None
    assert stats.dropped == 0
    assert stats.skipped_cuts == {"120p30": 0, "90p15": 0}
    for name, rung in rungs.items():
        frame = 1 / (30 if name == "120p30" else 15)
        assert rung.ended
        assert [(p.msn, p.index) for p, _ in rung.parts] == [
            (p.msn, p.index) for p, _ in packaged.parts], name
        for (mine, _), (theirs, _) in zip(rung.parts, packaged.parts, strict=True):
            assert abs(mine.duration - theirs.duration) < frame + 0.001, (name, mine, theirs)
            assert mine.independent == theirs.independent
        for (mine, _), (theirs, _) in zip(rung.segments, packaged.segments, strict=True):
            assert mine.msn == theirs.msn
            # The rung's dates are the source's: read back from the index, by media time.
            assert mine.program_date_time == pytest.approx(theirs.program_date_time, abs=0.002)
        init = rung.inits[0][1]
        for _segment, data in rung.segments:
            video, _ = decode(init + data)
            assert video[0].key_frame
        video, audio = decode(init + b"".join(d for _, d in rung.segments))
        assert len(video) == SECONDS * (30 if name == "120p30" else 15)
        _, source_audio = decode(packaged.inits[0][1] + b"".join(d for _, d in packaged.segments))
        assert sum(a.samples for a in audio) == sum(a.samples for a in source_audio)


def test_a_restarted_session_lists_the_segment_its_rungs_were_in_as_a_gap(
    packaged: Collector,
) -> None:
    async def scenario() -> None:
        index = MemoryLiveIndex()
        # The source is in segment 2; a dead session left 120p30 in the middle of
        # segment 1 and 90p15 with segment 1 complete (and, for later, 60p15 with only
        # segment 0).
        in_segment_2 = next(n for n, (i, _) in enumerate(packaged.parts) if i.msn == 2) + 2
        await publish(index, packaged, parts=in_segment_2)
        for name, (msn, parts) in {"120p30": (1, 2), "90p15": (1, None),
                                   "60p15": (0, None)}.items():
            await index.set_init(STREAM, name, b"init", 0.334, target_duration=2)
            for info, _ in packaged.parts:
                if info.msn > msn or (parts is not None and info.msn == msn
                                      and info.index >= parts):
                    break
                await index.add_part(STREAM, name, PartRef(info.msn, info.index, info.duration,
                                                           info.independent), b"x",
                                     program_date_time=info.program_date_time)
                segment = packaged.segments[info.msn][0]
                if segment.parts[-1].index == info.index:
                    await index.complete_segment(STREAM, name, SegmentRef(
                        info.msn, segment.duration, segment.program_date_time))
        plan = await plan_start(index, STREAM, LADDER)
        assert plan is not None
        assert plan.restart
        assert plan.msn == 2
        segment_1 = packaged.segments[1][0]
        assert [(g.rendition, g.msn, g.duration, g.program_date_time) for g in plan.gaps] == [
            ("120p30", 1, segment_1.duration, segment_1.program_date_time)]

        # Behind by a segment: re-encoded from the source's window, no gap ...
        behind = parse_ladder("60p15:106x60@15:80k")
        plan = await plan_start(index, STREAM, behind)
        assert plan is not None
        assert (plan.msn, plan.gaps) == (1, ())
        # ... unless that is more than the catch-up allows: then the rest are gaps too.
        plan = await plan_start(index, STREAM, behind, catch_up=0)
        assert plan is not None
        assert plan.msn == 2
        assert [(g.rendition, g.msn) for g in plan.gaps] == [("60p15", 1)]

    asyncio.run(scenario())


def test_nothing_to_start_from_before_the_sources_first_part(packaged: Collector) -> None:
    async def scenario() -> None:
        index = MemoryLiveIndex()
        assert await plan_start(index, STREAM, LADDER) is None
        await index.set_init(STREAM, SOURCE, packaged.inits[0][1], 0.334, target_duration=2)
        assert await plan_start(index, STREAM, LADDER) is None
        await publish(index, packaged, parts=1)
        plan = await plan_start(index, STREAM, LADDER)
        assert plan is not None
        assert plan.msn == 0

    asyncio.run(scenario())
