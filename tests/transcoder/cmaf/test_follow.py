"""A rendition packaged in step with the source: a follower packager fed the source's cuts.

The source is a 30 fps H.264 + AAC publish (the ffmpeg CLI, 2 s GOP, B-frames) packaged as
the ingest does. The follower is what a transcoder makes of it: the same picture encoded
again by libx264 through PyAV at another frame rate (25 and 60 fps), with an IDR forced on
the frame where each source segment starts, its Annex B output made packageable by
`AnnexBAdapter`, and the source's AAC copied. Whether the leader's cuts arrive ahead of
the follower's frames or behind them, the follower must come out with the same msn and
part indexes, part durations within one of its frames, and segments that start with key
frames and decode with every frame and every audio sample fed."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import pytest
from av.video.frame import PictureType

from tests.transcoder.cmaf.media import (
    WALL_CLOCK,
    Clip,
    Collector,
    decode,
    demux_flv,
    encode_flv_cli,
    feed,
)
from transcoder.cmaf import Packager, PackagerSettings
from transcoder.cmaf.packager import Cut, PackagerError
from transcoder.codecs import parse_avc_config, parse_hevc_config
from transcoder.codecs.annexb import AnnexBAdapter, split_annexb
from transcoder.codecs.config import CodecConfigError
from transcoder.packets import MediaPacket, TrackKind

SETTINGS = PackagerSettings(part_target=0.334)  # as delivery packages the source
SECONDS = 6
WIDTH, HEIGHT = 192, 108


@pytest.fixture(scope="module")
def source() -> Clip:
    return demux_flv(encode_flv_cli(SECONDS, width=WIDTH, height=HEIGHT, rate=30))


@pytest.fixture(scope="module")
def leader(source: Clip) -> Collector:
    collected = Collector()
    feed(Packager(collected, SETTINGS), source)
    return collected


def encode_annexb(
    codec: str, rate: int, key_times_ms: list[int], frames: int
) -> list[tuple[bytes, int, int]]:
    """``frames`` frames at ``rate`` fps on a millisecond timeline, an IDR forced on the
    first frame at or after each of ``key_times_ms`` and nowhere else (no scene cuts, no
    GOP of its own): the Annex B access units with their dts and pts (ms)."""
    context: Any = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    context.time_base = Fraction(1, 1000)
    context.framerate = Fraction(rate)
    context.gop_size = 100 * rate
    context.thread_count = 1
    if codec == "libx264":
        context.options = {"preset": "ultrafast", "tune": "zerolatency", "forced-idr": "1",
                           "x264-params": "scenecut=0"}
    else:
        context.options = {"preset": "ultrafast", "tune": "zerolatency",
                           "x265-params": "scenecut=0:log-level=error"}
    keys = sorted(key_times_ms)
    units = []
    for index in range(frames):
        pts = round(index * 1000 / rate)
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for number, plane in enumerate(frame.planes):
            plane.update(bytes([(index * 5 + number * 60) % 256]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        frame.pict_type = PictureType.NONE
        if keys and pts >= keys[0]:
            frame.pict_type = PictureType.I
            while keys and pts >= keys[0]:
                keys.pop(0)
        units += [(bytes(p), p.dts, p.pts) for p in context.encode(frame)]
    units += [(bytes(p), p.dts, p.pts) for p in context.encode(None)]
    return units


def follower_packets(
    source: Clip, codec: str, rate: int, key_times_ms: list[int]
) -> tuple[list[MediaPacket], int]:
    """The follower's input as a transcoder would give it: the encoder's frames through
    the Annex B adapter, the source's audio copied, in timestamp order."""
    adapter = AnnexBAdapter("avc" if codec == "libx264" else "hevc")
    frames = SECONDS * rate
    video = []
    for data, dts, pts in encode_annexb(codec, rate, key_times_ms, frames):
        video += adapter.packets(data, timestamp=dts, composition_offset=pts - dts,
                                 received_at=WALL_CLOCK + dts / 1000 + 0.5)
    audio = [
        MediaPacket(TrackKind.AUDIO, f.codec, f.timestamp, f.data, received_at=f.received_at)
        for f in source.audio
    ]
    header = MediaPacket(TrackKind.AUDIO, source.audio_codec or "aac", 0, source.audio_config,
                         sequence_header=True)
    ordered = sorted(video + audio, key=lambda p: (p.timestamp, p.kind is TrackKind.AUDIO))
    return [header, *ordered], frames


def run_follower(
    leader: Collector, packets: list[MediaPacket], rate: int, cuts_late: bool
) -> tuple[Packager, Collector]:
    """Feeds the leader's cuts either all ahead, or each only two follower frames after
    the leader's part has ended (so the follower's video runs ahead and must wait)."""
    cuts = [info.cut for info, _ in leader.parts]
    assert all(cut is not None for cut in cuts)
    pending: list[Cut] = [cut for cut in cuts if cut is not None]
    collected = Collector()
    follower = Packager(collected, SETTINGS, follow=True)
    lag_ms = 2 * 1000 / rate if cuts_late else -1e9
    for packet in packets:
        while pending and pending[0].end / 90 + lag_ms <= packet.timestamp:
            follower.follow(pending.pop(0))
        follower.push(packet)
    for cut in pending:
        follower.follow(cut)
    follower.end()
    return follower, collected


@pytest.mark.parametrize("cuts_late", [False, True], ids=["cuts-ahead", "cuts-behind"])
@pytest.mark.parametrize("rate", [25, 60])
def test_a_follower_at_another_frame_rate_cuts_the_sources_parts_and_segments(
    source: Clip, leader: Collector, rate: int, cuts_late: bool
) -> None:
    key_times = [(info.parts[0].cut.start // 90) for info, _ in leader.segments
                 if info.parts[0].cut is not None]
    packets, frames = follower_packets(source, "libx264", rate, key_times)
    follower, collected = run_follower(leader, packets, rate, cuts_late)

    assert follower.dropped == 0
    assert follower.skipped_cuts == 0
    assert len(leader.segments) >= SECONDS // 2
    assert [(p.msn, p.index) for p, _ in collected.parts] == [
        (p.msn, p.index) for p, _ in leader.parts]
    frame = 1 / rate
    for (mine, _), (theirs, _) in zip(collected.parts, leader.parts, strict=True):
        assert abs(mine.duration - theirs.duration) < frame + 0.001, (mine, theirs)
    assert [s.msn for s, _ in collected.segments] == [s.msn for s, _ in leader.segments]
    for segment, data in collected.segments:
        assert segment.parts[0].independent, f"segment {segment.msn} starts without an IDR"
        assert abs(segment.duration - leader.segments[segment.msn][0].duration) < frame + 0.001
        video, _ = decode(collected.init_for(segment) + data)
        assert video
        assert video[0].key_frame
    whole = collected.inits[0][1] + b"".join(data for _, data in collected.segments)
    video, audio = decode(whole)
    assert len(video) == frames
    _, source_audio = decode(
        leader.inits[0][1] + b"".join(data for _, data in leader.segments))
    assert sum(a.samples for a in audio) == sum(a.samples for a in source_audio)
    # The init describes the follower's own encoding, from the in-band parameter sets.
    assert collected.inits[0][0].codecs.startswith("avc1.")
    assert (collected.inits[0][0].width, collected.inits[0][0].height) == (WIDTH, HEIGHT)


def test_hevc_from_libx265_is_packaged_through_the_adapter_too() -> None:
    adapter = AnnexBAdapter("hevc")
    collected = Collector()
    packager = Packager(collected, SETTINGS)
    units = encode_annexb("libx265", 30, [0, 1000], 60)
    for data, dts, pts in units:
        for packet in adapter.packets(data, timestamp=dts, composition_offset=pts - dts):
            packager.push(packet)
    packager.end()
    assert adapter.record is not None
    config = parse_hevc_config(adapter.record)
    assert (config.width, config.height) == (WIDTH, HEIGHT)
    assert collected.inits[0][0].codecs.startswith("hvc1.")
    whole = collected.inits[0][1] + b"".join(data for _, data in collected.segments)
    video, _ = decode(whole)
    assert len(video) == 60
    assert [s.parts[0].independent for s, _ in collected.segments] == [True, True]


def test_the_adapter_builds_avcc_from_in_band_parameter_sets_and_length_prefixes_nal_units(
) -> None:
    (first, dts, pts), *rest = encode_annexb("libx264", 30, [0], 3)
    units = split_annexb(first)
    assert {u[0] & 0x1F for u in units} >= {7, 8, 5}  # SPS, PPS and an IDR slice, in band
    adapter = AnnexBAdapter("avc")
    header, frame = adapter.packets(first, timestamp=dts, composition_offset=pts - dts)
    assert header.sequence_header
    assert not frame.sequence_header
    assert frame.keyframe
    config = parse_avc_config(header.data)
    assert (config.width, config.height) == (WIDTH, HEIGHT)
    # Length-prefixed, parameter sets moved out of the sample into the record.
    data, position, kinds = bytes(frame.data), 0, []
    while position < len(data):
        size = int.from_bytes(data[position:position + 4], "big")
        kinds.append(data[position + 4] & 0x1F)
        position += 4 + size
    assert position == len(data)
    assert kinds == [5] or (5 in kinds and not {7, 8} & set(kinds))
    # The same parameter sets again: no new sequence header.
    (later, dts, pts) = rest[0]
    assert [p.sequence_header for p in adapter.packets(later, timestamp=dts)] == [False]
    with pytest.raises(CodecConfigError, match="start code"):
        adapter.packets(b"\x65\x88\x84", timestamp=0)
    with pytest.raises(CodecConfigError, match="no parameter sets"):
        AnnexBAdapter("avc").packets(later, timestamp=0)


def test_a_follower_refuses_cuts_out_of_order_and_a_leader_that_stopped() -> None:
    follower = Packager(Collector(), SETTINGS, follow=True)
    follower.follow(Cut(3, 0, 0, 30_000, False))
    with pytest.raises(PackagerError, match="does not follow"):
        follower.follow(Cut(3, 0, 30_000, 60_000, False))
    with pytest.raises(PackagerError, match="does not follow"):
        follower.follow(Cut(3, 1, 20_000, 60_000, False))
    with pytest.raises(PackagerError, match="cuts by itself"):
        Packager(Collector(), SETTINGS).follow(Cut(0, 0, 0, 1, True))
    (first, dts, _), *rest = encode_annexb("libx264", 30, [0], 700)
    adapter = AnnexBAdapter("avc")
    for packet in adapter.packets(first, timestamp=dts):
        follower.push(packet)
    packets = [p for data, dts, _ in rest for p in adapter.packets(data, timestamp=dts)]
    # Frames past the only cut wait for the next one, up to a bound.
    with pytest.raises(PackagerError, match="cuts stopped coming"):
        push_all(follower, packets)
    assert len(follower._waiting) == 600


def push_all(packager: Packager, packets: list[MediaPacket]) -> None:
    for packet in packets:
        packager.push(packet)


def fifth_of_a_second_parts(
    source: Clip,
) -> tuple[PackagerSettings, Collector, list[Cut], list[MediaPacket]]:
    """The source packaged in 0.2 s parts (the leader), its cuts, and the input of a
    30 fps follower keyed where the leader's segments start."""
    settings = PackagerSettings(part_target=0.2)
    leader = Collector()
    feed(Packager(leader, settings), source)
    cuts = [info.cut for info, _ in leader.parts if info.cut is not None]
    keys = [cut.start // 90 for cut in cuts if cut.index == 0]
    packets, _ = follower_packets(source, "libx264", 30, keys)
    return settings, leader, cuts, packets


def test_a_follower_that_shed_frames_still_ends_each_part_where_the_leader_did(
    source: Clip,
) -> None:
    """A rung that falls behind sheds frames. When the frame it sheds is the first of a
    leader's part, its next frame starts that part on time (moved back to the cut), so
    no part runs a frame over the part target: the 0.2 s parts stay 0.2 s."""
    settings, leader, cuts, packets = fifth_of_a_second_parts(source)
    # Shed the first frame of every other part that does not start a segment.
    starts = {cut.start // 90 for cut in cuts[1::2] if cut.index > 0}
    shed = [p for p in packets if p.kind is TrackKind.VIDEO and not p.sequence_header
            and any(abs(p.timestamp - start) < 5 for start in starts)]
    assert len(shed) >= 5
    shed_ids = {id(p) for p in shed}
    kept = [p for p in packets if id(p) not in shed_ids]
    collected = Collector()
    follower = Packager(collected, settings, follow=True)
    for cut in cuts:
        follower.follow(cut)
    for packet in kept:
        follower.push(packet)
    follower.end()

    assert_cut_as_the_leader(collected, leader, kept, settings.part_target, within=0.0015)


def assert_cut_as_the_leader(
    collected: Collector, leader: Collector, fed: list[MediaPacket], part_target: float,
    within: float,
) -> None:
    """The follower has the leader's parts, none over the part target (to the
    playlist's millisecond), each within ``within`` s of the leader's, and its segments
    decode with every video frame it was fed."""
    assert [(p.msn, p.index) for p, _ in collected.parts] == [
        (p.msn, p.index) for p, _ in leader.parts]
    for (mine, _), (theirs, _) in zip(collected.parts, leader.parts, strict=True):
        assert mine.duration <= part_target + 0.0005, (mine, theirs)
        assert abs(mine.duration - theirs.duration) < within, (mine, theirs)
    whole = collected.inits[0][1] + b"".join(data for _, data in collected.segments)
    video, _ = decode(whole)
    assert len(video) == len([p for p in fed if p.kind is TrackKind.VIDEO
                              and not p.sequence_header])


def test_a_follower_ahead_of_the_leaders_cuts_still_ends_each_part_where_the_leader_did(
    source: Clip,
) -> None:
    """A transcoder's frames come 0 to 2 ms after the source's (`_SLACK_MS` in the
    session), and a rung can run ahead of the source's packager, which gives a part's
    cut only once the part's audio is in. The frame that starts the leader's next part
    then arrives before that part's cut: it still starts the part on time, so no part
    runs over the part target (CI once saw 720p30 parts of 0.198, 0.2 and 0.202 s)."""
    settings, leader, cuts, packets = fifth_of_a_second_parts(source)
    late = [
        MediaPacket(p.kind, p.codec, p.timestamp + number % 3, p.data, p.keyframe,
                    p.sequence_header, p.composition_offset, p.received_at)
        if p.kind is TrackKind.VIDEO and not p.sequence_header else p
        for number, p in enumerate(packets)
    ]
    collected = Collector()
    follower = Packager(collected, settings, follow=True)
    pending = list(cuts)
    follower.follow(pending.pop(0))
    for packet in late:
        # A cut comes only after the frame that starts its part (up to 2 ms late) is in.
        while pending and pending[0].start // 90 + 2 < packet.timestamp:
            follower.follow(pending.pop(0))
        follower.push(packet)
    for cut in pending:
        follower.follow(cut)
    follower.end()

    assert_cut_as_the_leader(collected, leader, late, settings.part_target, within=0.0025)
