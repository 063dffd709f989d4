"""The transcode engine on generated media: rungs that decode, IDRs exactly on the source's
segment starts (as the real packager cuts them) and nowhere else, the source's timestamps
frame for frame, shedding that stays bounded, and clear errors.

Sources are H.264 with B-frames from the ffmpeg CLI (so presentation and decode order
differ), short and small in the fast tests; the 1080p ladder is marked slow. libx264 does
not touch the scheduler, but each test still ends with the autouse real-time check.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.scheduling import drop_realtime
from tests.transcoder.cmaf.media import (
    Clip,
    Collector,
    demux_flv,
    encode_flv_pyav,
    feed,
    read_fragments,
)
from transcoder.cmaf import Packager, PackagerSettings
from transcoder.engine import EncodedPacket, SegmentStarts, TranscodeError, Transcoder
from transcoder.ladder import DEFAULT_LADDER, Rung, ladder_for
from transcoder.packets import MediaPacket, TrackKind

SMALL = (Rung("240p", 426, 240, 30, 400_000), Rung("160p", 284, 160, 30, 200_000))


def encode_source(
    seconds: float, width: int, height: int, rate: int, gop: int, b_frames: int = 2
) -> Clip:
    """H.264 (+AAC) in FLV from the ffmpeg CLI, demuxed into what the ingest would see.
    Key frames every ``gop`` frames exactly (no scene cuts), B-frames on."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    command = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    command += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={rate}"]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-bf", str(b_frames)]
    command += ["-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop)]
    command += ["-sc_threshold", "0", "-threads", "1"]
    command += ["-c:a", "aac", "-ac", "2", "-b:a", "64k", "-f", "flv", "pipe:1"]
    return demux_flv(subprocess.run(command, check=True, capture_output=True).stdout)


def packets(clip: Clip) -> Iterator[MediaPacket]:
    yield from clip.headers(clip.frames[0].timestamp)
    for f in clip.frames:
        yield f.packet(memoryview(f.data))


@dataclass
class Collected:
    packets: dict[str, list[EncodedPacket]] = field(default_factory=lambda: defaultdict(list))
    threads: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def __call__(self, packet: EncodedPacket) -> None:
        self.packets[packet.rung].append(packet)
        self.threads[packet.rung].add(threading.current_thread().name)


def transcode(
    clip: Clip, rungs: tuple[Rung, ...] | list[Rung], **options: object
) -> tuple[Collected, object]:
    collected = Collected()
    transcoder = Transcoder(rungs, collected, shed=False, **options)  # type: ignore[arg-type]
    try:
        for packet in packets(clip):
            transcoder.push(packet)
        stats = transcoder.end()
    finally:
        transcoder.close()
    return collected, stats


def push_all(transcoder: Transcoder, stream: list[MediaPacket]) -> None:
    for packet in stream:
        transcoder.push(packet)


def source_pts(clip: Clip) -> list[int]:
    return sorted(f.timestamp + f.composition_offset for f in clip.video)


def packaged_segment_starts(clip: Clip) -> list[int]:
    """Where the real packager starts the source's segments: the first video sample's
    presentation time (ms) of each segment."""
    collector = Collector()
    feed(Packager(collector), clip)
    starts = []
    for _info, data in collector.segments:
        video = next(run for run in read_fragments(data)[0] if run.track_id == 1)
        starts.append((video.base_time + video.composition_offsets[0]) // 90)
    return starts


def nal_types(annex_b: bytes) -> list[int]:
    types, position = [], 0
    while (start := annex_b.find(b"\x00\x00\x01", position)) >= 0:
        types.append(annex_b[start + 3] & 0x1F)
        position = start + 3
    return types


def decode_rung(rung_packets: list[EncodedPacket]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    frames: list[av.VideoFrame] = []
    for packet in rung_packets:
        frames.extend(decoder.decode(av.Packet(packet.data)))
    frames.extend(decoder.decode(None))
    return frames


@pytest.fixture(scope="module")
def half_second_gops() -> Clip:
    """3 s of 640x360 at 30 fps with a key frame every 0.5 s: the source's key frames
    are twice as frequent as its segments (the packager cuts at >= 1 s)."""
    return encode_source(3, 640, 360, 30, gop=15)


@pytest.fixture(scope="module")
def small_run(half_second_gops: Clip) -> tuple[Collected, object]:
    return transcode(half_second_gops, SMALL)


def test_every_rung_decodes_at_its_own_size(small_run: tuple[Collected, object]) -> None:
    collected, _stats = small_run
    for rung in SMALL:
        frames = decode_rung(collected.packets[rung.name])
        assert len(frames) == 90
        assert {(f.width, f.height) for f in frames} == {(rung.width, rung.height)}


def test_idrs_sit_exactly_on_the_packagers_segment_starts_and_nowhere_else(
    half_second_gops: Clip, small_run: tuple[Collected, object]
) -> None:
    collected, _stats = small_run
    segment_starts = packaged_segment_starts(half_second_gops)
    source_keys = sorted(
        f.timestamp + f.composition_offset for f in half_second_gops.video if f.keyframe
    )
    assert len(source_keys) == 6
    assert len(segment_starts) == 3
    for rung in SMALL:
        rung_packets = collected.packets[rung.name]
        assert [p.pts for p in rung_packets if p.keyframe] == segment_starts
        for packet in rung_packets:
            types = nal_types(packet.data)
            # An IDR slice (5) with its SPS (7) and PPS (8), or only non-IDR slices (1).
            assert (5 in types) is packet.keyframe, (rung.name, packet.pts, types)
            if packet.keyframe:
                assert {7, 8} <= set(types)


def test_decoded_rung_frames_are_intra_only_at_segment_starts(
    half_second_gops: Clip, small_run: tuple[Collected, object]
) -> None:
    collected, _stats = small_run
    frames = decode_rung(collected.packets["160p"])
    pts = source_pts(half_second_gops)
    starts = set(packaged_segment_starts(half_second_gops))
    for frame, frame_pts in zip(frames, pts, strict=True):
        assert frame.key_frame is (frame_pts in starts)


def test_rung_timestamps_equal_the_sources_frame_for_frame(
    half_second_gops: Clip, small_run: tuple[Collected, object]
) -> None:
    collected, _stats = small_run
    expected = source_pts(half_second_gops)
    received = {f.timestamp + f.composition_offset: f.received_at for f in half_second_gops.video}
    for rung in SMALL:
        rung_packets = collected.packets[rung.name]
        assert [p.pts for p in rung_packets] == expected
        assert all(p.dts == p.pts for p in rung_packets)  # no B-frames on the rungs
        assert [p.received_at for p in rung_packets] == [received[p.pts] for p in rung_packets]
        assert all(30 <= p.duration <= 37 for p in rung_packets)


def test_each_rung_encodes_in_its_own_thread_and_counts_its_frames(
    small_run: tuple[Collected, object],
) -> None:
    collected, stats = small_run
    threads = [collected.threads[rung.name] for rung in SMALL]
    assert threads == [{"transcode-240p"}, {"transcode-160p"}]
    assert stats.packets_in == stats.frames_decoded == 90  # type: ignore[attr-defined]
    for rung_stats in stats.rungs:  # type: ignore[attr-defined]
        assert (rung_stats.frames_in, rung_stats.frames_encoded, rung_stats.packets_out) == (
            90,
            90,
            90,
        )
        assert rung_stats.frames_dropped == 0
        assert rung_stats.error is None
        assert rung_stats.bytes_out == sum(len(p.data) for p in collected.packets[rung_stats.name])


def test_a_source_faster_than_the_rung_is_thinned_keeping_segment_starts() -> None:
    clip = encode_source(2, 320, 180, 60, gop=60, b_frames=0)
    rung = Rung("120p30", 214, 120, 30, 150_000)
    collected, stats = transcode(clip, (rung,))
    out = collected.packets[rung.name]
    assert 58 <= len(out) <= 62  # 2 s at 30 fps from 120 source frames
    assert [p.pts for p in out if p.keyframe] == packaged_segment_starts(clip)
    assert stats.rungs[0].frames_thinned == 120 - len(out)  # type: ignore[attr-defined]
    gaps = {b.pts - a.pts for a, b in itertools.pairwise(out)}
    assert gaps <= {33, 34}


def test_a_failing_rung_is_reported_and_the_others_go_on(half_second_gops: Clip) -> None:
    delivered: list[EncodedPacket] = []
    failures: list[tuple[str, BaseException]] = []

    def deliver(packet: EncodedPacket) -> None:
        if packet.rung == "240p" and packet.pts > 1000:
            raise OSError("disk full")
        delivered.append(packet)

    transcoder = Transcoder(
        SMALL, deliver, shed=False, on_error=lambda name, error: failures.append((name, error))
    )
    for packet in packets(half_second_gops):
        transcoder.push(packet)
    stats = transcoder.end()
    assert [(name, str(error)) for name, error in failures] == [("240p", "disk full")]
    assert stats.rungs[0].error == "OSError: disk full"
    assert stats.rungs[1].error is None
    assert len([p for p in delivered if p.rung == "160p"]) == 90


def test_a_slow_rung_sheds_frames_within_its_queue_and_keeps_its_idrs(
    half_second_gops: Clip,
) -> None:
    collected = Collected()
    release = threading.Event()

    def deliver(packet: EncodedPacket) -> None:
        if packet.rung == "240p":
            release.wait(5)  # the 240p rung is stuck until the whole source is pushed
        collected(packet)

    transcoder = Transcoder(SMALL, deliver, shed=True, queue_frames=4)
    try:
        for packet in packets(half_second_gops):
            transcoder.push(packet)  # never waits for the stuck rung
        during = transcoder.stats()
        release.set()
        stats = transcoder.end()
    finally:
        release.set()
        transcoder.close()
    slow = stats.rungs[0]
    assert during.rungs[0].lag > 2.0  # the stuck rung is seconds behind, and says so
    assert slow.max_queued <= 4  # memory: never more than the queue's decoded frames
    assert slow.frames_dropped >= 80
    assert slow.frames_in == slow.frames_encoded + slow.frames_dropped == 90
    assert slow.lag == 0.0
    starts = packaged_segment_starts(half_second_gops)
    kept = [p.pts for p in collected.packets["240p"]]
    assert set(starts) <= set(kept)  # segment starts are never the frames shed
    assert [p.pts for p in collected.packets["240p"] if p.keyframe] == starts


def test_a_rung_can_be_stopped_while_the_others_continue(half_second_gops: Clip) -> None:
    collected = Collected()
    transcoder = Transcoder(SMALL, collected, shed=False)
    try:
        for index, packet in enumerate(packets(half_second_gops)):
            if index == 40:
                transcoder.stop_rung("240p")
            transcoder.push(packet)
        stats = transcoder.end()
    finally:
        transcoder.close()
    assert len(collected.packets["160p"]) == 90
    assert len(collected.packets["240p"]) < 60
    assert stats.rungs[1].frames_encoded == 90


def test_an_hevc_source_is_transcoded_to_h264() -> None:
    clip = demux_flv(
        encode_flv_pyav(
            "libx265",
            None,
            frames=45,
            width=320,
            height=240,
            options={"x265-params": "log-level=error"},
        )
    )
    drop_realtime()
    rung = ladder_for(320, 240, DEFAULT_LADDER)[0]
    assert (rung.width, rung.height) == (214, 160)
    collected, _stats = transcode(clip, (rung,))
    frames = decode_rung(collected.packets[rung.name])
    assert len(frames) == 45
    assert (frames[0].width, frames[0].height) == (214, 160)
    assert [p.pts for p in collected.packets[rung.name] if p.keyframe] == packaged_segment_starts(
        clip
    )


def test_an_unsupported_codec_is_a_clear_error() -> None:
    transcoder = Transcoder(SMALL, lambda packet: None)
    try:
        with pytest.raises(TranscodeError, match="video codec 'vp6' cannot be transcoded"):
            transcoder.push(MediaPacket(TrackKind.VIDEO, "vp6", 0, b"\x00", sequence_header=True))
    finally:
        transcoder.close()


def test_a_garbage_sequence_header_is_a_clear_error() -> None:
    transcoder = Transcoder(SMALL, lambda packet: None)
    try:
        with pytest.raises(TranscodeError, match="bad avc sequence header"):
            transcoder.push(
                MediaPacket(TrackKind.VIDEO, "avc", 0, b"\x01garbage", sequence_header=True)
            )
    finally:
        transcoder.close()


def test_garbage_frames_are_a_clear_error_not_a_hang(half_second_gops: Clip) -> None:
    transcoder = Transcoder(SMALL, lambda packet: None)
    garbage = bytes(range(256)) * 8
    try:
        transcoder.push(next(packets(half_second_gops)))  # a real avcC
        with pytest.raises(TranscodeError, match="does not decode"):
            push_all(
                transcoder,
                [
                    MediaPacket(TrackKind.VIDEO, "avc", index * 33, garbage, keyframe=True)
                    for index in range(100)
                ],
            )
        assert transcoder.stats().decode_errors >= 10
    finally:
        transcoder.close()


def test_frames_before_the_first_key_frame_or_header_are_dropped_and_counted(
    half_second_gops: Clip,
) -> None:
    clip = half_second_gops
    first_key = next(
        i for i, f in enumerate(clip.frames) if f.keyframe and i > 0 and f.kind is TrackKind.VIDEO
    )
    late = Clip(
        clip.video_codec,
        clip.video_config,
        clip.audio_codec,
        clip.audio_config,
        clip.frames[first_key - 5 :],
    )
    collected, stats = transcode(late, SMALL[1:])
    dropped = sum(1 for f in late.frames[:5] if f.kind is TrackKind.VIDEO)
    assert stats.packets_dropped == dropped  # type: ignore[attr-defined]
    out = collected.packets["160p"]
    assert out[0].keyframe
    assert out[0].pts == late.frames[5].timestamp + late.frames[5].composition_offset


def test_end_twice_and_push_after_end() -> None:
    transcoder = Transcoder(SMALL, lambda packet: None)
    transcoder.end()
    assert transcoder.end().packets_in == 0
    with pytest.raises(TranscodeError, match="after end"):
        transcoder.push(MediaPacket(TrackKind.VIDEO, "avc", 0, b"", sequence_header=True))


# -- the cutting rule, mirrored -------------------------------------------------------------

AVC_CONFIG = bytes.fromhex(
    "014d401fffe10019674d401feca02802dd8088000003000800000301e078c18cb001000468ce0fc8"
)


@settings(max_examples=60, deadline=None, database=None)
@given(
    keys=st.lists(st.booleans(), min_size=1, max_size=240),
    interval=st.sampled_from([16, 17, 33, 34, 40, 42]),
    min_segment=st.sampled_from([0.0, 1.0, 2.0]),
    max_segment=st.sampled_from([2.0, 4.0, 10.0]),
    start=st.integers(0, 100_000),
)
def test_segment_starts_mirror_the_packagers_cuts(
    keys: list[bool], interval: int, min_segment: float, max_segment: float, start: int
) -> None:
    """On synthetic video (opaque payloads, random key frames), the frames SegmentStarts
    picks are the frames the packager starts segments with."""
    packager_settings = PackagerSettings(
        min_segment_duration=min_segment, max_segment_duration=max(max_segment, min_segment)
    )
    stream = [MediaPacket(TrackKind.VIDEO, "avc", start, AVC_CONFIG, sequence_header=True)]
    stream += [
        MediaPacket(
            TrackKind.VIDEO,
            "avc",
            start + i * interval,
            i.to_bytes(4, "big") * 4,
            keyframe=key,
            received_at=1.0 + i,
        )
        for i, key in enumerate(keys)
    ]
    mirror = SegmentStarts(packager_settings)
    picked = [p.timestamp for p in stream if mirror(p)]
    collector = Collector()
    packager = Packager(collector, packager_settings)
    for packet in stream:
        packager.push(packet)
    packager.end()
    cut = [read_fragments(data)[0][0].base_time // 90 for _info, data in collector.segments]
    assert picked == cut


def test_a_new_sequence_header_starts_a_segment_at_the_next_key_frame() -> None:
    mirror = SegmentStarts()
    other = AVC_CONFIG[:-1] + b"\xc9"
    header = MediaPacket(TrackKind.VIDEO, "avc", 0, AVC_CONFIG, sequence_header=True)
    assert not mirror(header)
    assert mirror(MediaPacket(TrackKind.VIDEO, "avc", 0, b"x", keyframe=True))
    assert not mirror(MediaPacket(TrackKind.VIDEO, "avc", 500, b"x", keyframe=True))
    assert not mirror(MediaPacket(TrackKind.VIDEO, "avc", 600, other, sequence_header=True))
    assert not mirror(MediaPacket(TrackKind.VIDEO, "avc", 633, b"x"))
    assert mirror(MediaPacket(TrackKind.VIDEO, "avc", 700, b"x", keyframe=True))


# -- 1080p, the default ladder ------------------------------------------------------------


@pytest.mark.slow
def test_a_1080p_source_gets_four_aligned_rungs() -> None:
    clip = encode_source(4, 1920, 1080, 30, gop=60)
    rungs = ladder_for(1920, 1080, DEFAULT_LADDER)
    started = time.monotonic()
    collected, stats = transcode(clip, rungs)
    elapsed = time.monotonic() - started
    starts = packaged_segment_starts(clip)
    expected = source_pts(clip)
    for rung in rungs:
        rung_packets = collected.packets[rung.name]
        assert [p.pts for p in rung_packets] == expected
        assert [p.pts for p in rung_packets if p.keyframe] == starts
        frames = decode_rung(rung_packets)
        assert len(frames) == len(expected)
        assert (frames[0].width, frames[0].height) == (rung.width, rung.height)
    assert all(r.frames_dropped == 0 for r in stats.rungs)  # type: ignore[attr-defined]
    assert elapsed < 60


# -- publisher clocks -----------------------------------------------------------------------


def rung_and_packager_after(
    clip: Clip, second: Clip, reconnect: bool
) -> tuple[list[EncodedPacket], list[int]]:
    """The 160p rung and the packager's segment starts for ``clip`` followed by
    ``second`` (after a pause/resume when ``reconnect``)."""
    collected = Collected()
    transcoder = Transcoder(SMALL[1:], collected, shed=False)
    collector = Collector()
    packager = Packager(collector)
    try:
        for index, part in enumerate((clip, second)):
            if index and reconnect:
                packager.pause()
                packager.resume()
                transcoder.resume()
            for packet in packets(part) if index == 0 or reconnect else list(packets(part))[2:]:
                transcoder.push(packet)
                packager.push(packet)
        transcoder.end()
        packager.end()
    finally:
        transcoder.close()
    starts = []
    for _info, data in collector.segments:
        video = next(run for run in read_fragments(data)[0] if run.track_id == 1)
        starts.append((video.base_time + video.composition_offsets[0]) // 90)
    return collected.packets["160p"], starts


def test_a_reconnect_continues_the_timeline_and_starts_a_segment(half_second_gops: Clip) -> None:
    out, starts = rung_and_packager_after(half_second_gops, half_second_gops, reconnect=True)
    assert len(out) == 180
    pts = [p.pts for p in out]
    assert pts == sorted(set(pts))  # the restarted clock never goes back on the rung
    assert [p.pts for p in out if p.keyframe] == starts
    assert len(starts) == 6  # three segments per connection


def test_a_publisher_clock_jumping_back_is_smoothed_like_the_packager(
    half_second_gops: Clip,
) -> None:
    back = half_second_gops.shifted(-10_000)  # the same frames 10 s earlier on the wire
    out, starts = rung_and_packager_after(half_second_gops, back, reconnect=False)
    pts = [p.pts for p in out]
    assert pts == sorted(set(pts))
    assert [p.pts for p in out if p.keyframe] == starts


@pytest.mark.parametrize(("threads_per_rung", "decode_threads"), [(2, 1), (1, 2)])
def test_more_threads_keep_the_alignment_and_timestamps(
    half_second_gops: Clip, threads_per_rung: int, decode_threads: int
) -> None:
    """x264's frame threads hold frames back (a packet comes out later than its frame
    goes in): the timestamps and IDRs still map to the right frames."""
    collected, _stats = transcode(
        half_second_gops,
        SMALL[1:],
        threads_per_rung=threads_per_rung,
        decode_threads=decode_threads,
    )
    out = collected.packets["160p"]
    assert [p.pts for p in out] == source_pts(half_second_gops)
    assert [p.pts for p in out if p.keyframe] == packaged_segment_starts(half_second_gops)
    received = {f.timestamp + f.composition_offset: f.received_at for f in half_second_gops.video}
    assert [p.received_at for p in out] == [received[p.pts] for p in out]


def test_close_does_not_hang_on_a_rung_stuck_in_deliver(half_second_gops: Clip) -> None:
    release = threading.Event()
    transcoder = Transcoder(SMALL[1:], lambda packet: release.wait(10), shed=True)
    try:
        for packet in list(packets(half_second_gops))[:40]:
            transcoder.push(packet)
        started = time.monotonic()
        transcoder.close(timeout=0.5)
        assert time.monotonic() - started < 2
    finally:
        release.set()
