"""A transcode session on generated media: the ladder comes out cut as the source was.

The source is a 320x180 30 fps H.264 + AAC clip (the ffmpeg CLI) pushed the way the
ingest pushes it (views of one reused buffer) into the source's packager and, beside it,
into a `TranscodeSession`; the source packager's cuts go to the session as its output
sees them. Every rung must come out with the source's (msn, part index) for every part,
durations within one of the rung's frames, segments that start with an IDR, its own
size, and all of the source's audio."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.transcoder.cmaf.media import (
    Clip,
    Collector,
    decode,
    demux_flv,
    encode_flv_cli,
    feed,
)
from transcoder.cmaf import Packager, PackagerSettings
from transcoder.cmaf.packager import InitInfo, PartInfo, SegmentInfo
from transcoder.engine import SegmentStarts
from transcoder.ladder import parse_ladder
from transcoder.packets import MediaPacket
from transcoder.session import SessionStats, TranscodeSession

SETTINGS = PackagerSettings(part_target=0.334)  # as delivery packages the source
SECONDS = 6
LADDER = parse_ladder("120p30:214x120@30:250k, 90p15:160x90@15:120k, 180p30:320x180@30:400k")


@pytest.fixture(scope="module")
def source() -> Clip:
    return demux_flv(encode_flv_cli(SECONDS, width=320, height=180, rate=30))


class SourceOutput(Collector):
    """The source's output: keeps everything and hands each part's cut to the session
    (once there is one)."""

    session: TranscodeSession | None = None

    def part(self, info: PartInfo, data: bytes) -> None:
        super().part(info, data)
        assert info.cut is not None
        if self.session is not None:
            self.session.cut(info.cut)


class RungOutput(Collector):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def init(self, info: InitInfo, data: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        super().init(info, data)

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        super().segment(info, data)


class Tee:
    """What the ingest's packager sink does with a tap: the packager first, then the tap."""

    def __init__(self, packager: Packager, session: TranscodeSession) -> None:
        self.packager, self.session = packager, session

    def push(self, packet: MediaPacket) -> None:
        self.packager.push(packet)
        self.session.media(packet)

    def end(self) -> None:
        self.packager.end()


def transcode(source: Clip) -> tuple[SourceOutput, dict[str, RungOutput], SessionStats]:
    leader = SourceOutput()
    rungs: dict[str, RungOutput] = {}
    ended: list[SessionStats] = []

    def make_output(name: str) -> RungOutput:
        rungs[name] = RungOutput()
        return rungs[name]

    # Pushed far faster than real time: the rungs wait instead of shedding frames.
    session = TranscodeSession(LADDER, make_output, SETTINGS, name="test",
                               on_end=ended.append, shed=False)
    leader.session = session
    feed(Tee(Packager(leader, SETTINGS), session), source)  # type: ignore[arg-type]
    session.end()
    assert session.join(timeout=60), "the session did not finish"
    assert len(ended) == 1
    return leader, rungs, ended[0]


def test_every_rung_has_the_sources_parts_and_segments(source: Clip) -> None:
    leader, rungs, stats = transcode(source)

    # 180p is not below a 180p source: the source itself is that rendition.
    assert list(rungs) == ["120p30", "90p15"]
    assert stats.error is None
    assert stats.dropped == 0
    assert stats.skipped_cuts == {"120p30": 0, "90p15": 0}
    assert stats.cuts == len(leader.parts)
    assert len(leader.segments) == SECONDS // 2
    _, source_audio = decode(leader.inits[0][1] + b"".join(d for _, d in leader.segments))
    for name, rung in rungs.items():
        frame = 1 / (30 if name == "120p30" else 15)
        assert rung.ended
        assert [(p.msn, p.index) for p, _ in rung.parts] == [
            (p.msn, p.index) for p, _ in leader.parts], name
        for (mine, _), (theirs, _) in zip(rung.parts, leader.parts, strict=True):
            assert abs(mine.duration - theirs.duration) < frame + 0.001, (name, mine, theirs)
        assert [s.msn for s, _ in rung.segments] == [s.msn for s, _ in leader.segments]
        init = rung.inits[0][1]
        for segment, data in rung.segments:
            assert segment.parts[0].independent, f"{name} segment {segment.msn}: no IDR first"
            video, _ = decode(init + data)
            assert video[0].key_frame, f"{name} segment {segment.msn} does not decode alone"
            assert (video[0].width, video[0].height) == (
                (214, 120) if name == "120p30" else (160, 90))
        video, audio = decode(init + b"".join(d for _, d in rung.segments))
        assert len(video) == SECONDS * (30 if name == "120p30" else 15)
        assert sum(a.samples for a in audio) == sum(a.samples for a in source_audio)
        info = rung.inits[0][0]
        assert info.codecs.startswith("avc1.4d")
        assert info.codecs.endswith("mp4a.40.2")
        assert info.frame_rate == (30 if name == "120p30" else 15)
        # Packaged off the caller's thread: the session's and the encoders' threads.
        assert all(t.startswith("transcode-") for t in rung.threads), rung.threads


class Upgrade:
    """What the delivery does for a source-only publish that gets its ladder while live:
    the packager takes every packet; the cutting rule follows them from the start, with
    the publish's sequence headers kept; at ``join_at`` (the publisher's own ms) a session
    starts with that rule and those headers, and takes every packet from there on."""

    def __init__(self, packager: Packager, leader: SourceOutput, join_at: int,
                 make_output: Callable[[str], Collector]) -> None:
        self.packager, self.leader, self.join_at = packager, leader, join_at
        self.make_output = make_output
        self.starts = SegmentStarts(SETTINGS)
        self.headers: dict[str, MediaPacket] = {}
        self.ended: list[SessionStats] = []

    def push(self, packet: MediaPacket) -> None:
        self.packager.push(packet)
        session = self.leader.session
        if session is None and not packet.sequence_header and packet.timestamp >= self.join_at:
            session = self.leader.session = TranscodeSession(
                LADDER[:1], self.make_output, SETTINGS, name="upgraded",
                on_end=self.ended.append, shed=False, starts=self.starts,
            )
            for kind in ("AUDIO", "VIDEO"):
                session.media(self.headers[kind])
        if session is not None:
            session.media(packet)
            return
        self.starts(packet)
        if packet.sequence_header:
            self.headers[packet.kind.name] = MediaPacket(
                packet.kind, packet.codec, packet.timestamp, bytes(packet.data),
                sequence_header=True,
            )

    def end(self) -> None:
        self.packager.end()


def test_a_session_joining_a_publish_under_way_lines_up_from_its_next_segment(
    source: Clip,
) -> None:
    """An upgrade: the session starts 1.7 s into the publish, 0.2 s after the publisher's
    clock jumped 20 s ahead (the packager carries its timeline on where it was). The rung
    starts at the next source segment (msn 1, at the 2 s key frame) and from there has
    the source's every part, as if it had been there from the start."""
    jumped = Clip(source.video_codec, source.video_config, source.audio_codec,
                  source.audio_config,
                  source.until(1500).frames + source.since(1500).shifted(20_000).frames)
    rungs: dict[str, Collector] = {}
    leader = SourceOutput()
    upgrade = Upgrade(Packager(leader, SETTINGS), leader, 21_700,
                      lambda name: rungs.setdefault(name, Collector()))
    feed(upgrade, jumped)  # type: ignore[arg-type]
    assert leader.session is not None
    leader.session.end()
    assert leader.session.join(timeout=60), "the session did not finish"
    stats = upgrade.ended[0]
    assert stats.error is None
    assert stats.skipped_cuts == {"120p30": 0}

    rung = rungs["120p30"]
    assert rung.ended
    expected = [(p.msn, p.index) for p, _ in leader.parts if p.msn >= 1]
    assert [(p.msn, p.index) for p, _ in rung.parts] == expected
    by_key = {(p.msn, p.index): p for p, _ in leader.parts}
    for mine, _ in rung.parts:
        theirs = by_key[(mine.msn, mine.index)]
        assert abs(mine.duration - theirs.duration) < 1 / 30 + 0.001, (mine, theirs)
    assert [s.msn for s, _ in rung.segments] == [s.msn for s, _ in leader.segments if s.msn >= 1]
    init = rung.inits[0][1]
    for segment, data in rung.segments:
        video, audio = decode(init + data)
        assert video[0].key_frame, f"segment {segment.msn} does not start with an IDR"
        assert audio


def test_a_source_no_taller_than_every_rung_gets_no_ladder(source: Clip) -> None:
    rungs: dict[str, Collector] = {}
    ended: list[SessionStats] = []
    session = TranscodeSession(parse_ladder("360p30:640x360@30:630k"),
                               lambda name: rungs.setdefault(name, Collector()), SETTINGS,
                               on_end=ended.append)
    leader = SourceOutput()
    leader.session = session
    feed(Tee(Packager(leader, SETTINGS), session), source)  # type: ignore[arg-type]
    session.end()
    assert session.join(timeout=30)
    assert rungs == {}
    assert ended[0].rungs == ()
    assert ended[0].error is None


def test_a_session_that_cannot_keep_up_drops_from_its_bounded_inbox(source: Clip) -> None:
    """Nothing is taken from the inbox while the feeder is held: the ingest's side never
    waits, drops what does not fit (video until a key frame) and counts it."""
    gate = threading.Event()
    rungs: dict[str, Collector] = {}

    def make_output(name: str) -> Collector:
        gate.wait(30)  # the feeder is stuck here, at the first video sequence header
        return rungs.setdefault(name, Collector())

    session = TranscodeSession(LADDER[:1], make_output, SETTINGS, inbox_items=20)
    leader = SourceOutput()
    leader.session = session
    feed(Tee(Packager(leader, SETTINGS), session), source, end=False)  # type: ignore[arg-type]
    assert session.dropped > 0
    assert session.packets_in == len(source.frames) + 2  # + the two sequence headers
    gate.set()
    session.end()
    assert session.join(timeout=30)
    assert rungs["120p30"].ended
    assert session.stats().error is None


def test_garbage_video_stops_the_session_and_ends_its_rungs(source: Clip) -> None:
    rungs: dict[str, Collector] = {}
    session = TranscodeSession(LADDER[:1], lambda n: rungs.setdefault(n, Collector()),
                               SETTINGS)
    header, *_ = [p for p in source.headers(0) if p.kind.name == "VIDEO"]
    session.media(header)
    for index in range(40):
        session.media(MediaPacket(header.kind, "avc", index * 33, b"\x00\x00\x00\x02\x09\xff",
                                  keyframe=True))
    session.end()
    assert session.join(timeout=30)
    stats = session.stats()
    assert stats.error is not None
    assert "does not decode" in stats.error
    assert rungs["120p30"].ended
