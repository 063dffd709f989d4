"""Property tests of how the packager cuts parts and segments, on synthetic publishes:
random frame rates, GOP lengths, part targets, B-frames, audio late on the wire, and
streams that end anywhere. Payloads are opaque numbered bytes (nothing is decoded), so
every sample can be followed from input to output."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.transcoder.cmaf.media import Clip, Collector, Frame, feed, read_fragments
from transcoder.cmaf import Packager, PackagerError, PackagerSettings
from transcoder.packets import MediaPacket, TrackKind

# x264's avcC for 1280x720 Main profile, and an AudioSpecificConfig for AAC-LC 48 kHz
# stereo, as the FLV demuxer returns them: the packager only needs to read them.
AVC_CONFIG = bytes.fromhex(
    "014d401fffe10019674d401feca02802dd8088000003000800000301e078c18cb001000468ce0fc8"
)
AAC_CONFIG = bytes.fromhex("1190")
AAC_FRAME = Fraction(1024, 48)  # ms
VIDEO_TRACK, AUDIO_TRACK = 1, 2
VIDEO_TICKS, AUDIO_TICKS = 90_000, 48_000

PROPERTIES = settings(max_examples=100, deadline=None, database=None)


@dataclass(frozen=True)
class Publish:
    clip: Clip
    settings: PackagerSettings
    frame_rate: Fraction
    audio_lag: int  # ms the audio trails the video on the wire


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    frame_rate = Fraction(
        draw(
            st.sampled_from(["24000/1001", "24", "25", "30000/1001", "30", "50", "60"])
            | st.integers(5, 60).map(str)
        )
    )
    gop = draw(st.integers(1, 150))
    frames = draw(st.integers(1, 300))
    has_video = draw(st.booleans() | st.just(True))
    has_audio = draw(st.booleans()) or not has_video
    b_frames = draw(st.booleans())
    audio_lag = draw(st.sampled_from([0, 0, 40, 150, 450, 900]))
    part_target = draw(st.floats(0.1, 1.0))
    min_segment = draw(st.sampled_from([0.0, 1.0, 2.0]))
    # Variable frame rate: an encoder that skips frames now and then.
    skipped = draw(st.sets(st.integers(1, 299), max_size=draw(st.sampled_from([0, 0, 20]))))
    start = draw(st.integers(0, 100_000))
    wall = 1_763_700_000.0 + draw(st.floats(0, 1e6))

    arrivals: list[tuple[float, int, Frame]] = []
    if has_video:
        for index in range(frames):
            if index in skipped:
                continue
            timestamp = start + math.floor(index * 1000 / frame_rate)
            reordered = b_frames and index % 3 != 0
            offset = math.floor(2 * 1000 / frame_rate) if reordered else 0
            data = b"V" + index.to_bytes(4, "big") + bytes(index % 7)
            frame = Frame(TrackKind.VIDEO, "avc", timestamp, data, index % gop == 0, offset, 0.0)
            arrivals.append((timestamp, 0, frame))
    if has_audio:
        duration = frames * 1000 / frame_rate
        for index in range(math.floor(duration / AAC_FRAME) + 1):
            timestamp = start + round(index * AAC_FRAME)
            data = b"A" + index.to_bytes(4, "big")
            frame = Frame(TrackKind.AUDIO, "aac", timestamp, data, False, 0, 0.0)
            arrivals.append((timestamp + audio_lag, 1, frame))
    arrivals.sort(key=lambda item: item[:2])
    frames_in_order = tuple(
        Frame(f.kind, f.codec, f.timestamp, f.data, f.keyframe, f.composition_offset, wall + i)
        for i, (_, _, f) in enumerate(arrivals)
    )
    clip = Clip(
        "avc" if has_video else None,
        AVC_CONFIG,
        "aac" if has_audio else None,
        AAC_CONFIG,
        frames_in_order,
    )
    return Publish(
        clip,
        PackagerSettings(
            part_target=part_target,
            min_segment_duration=min_segment,
            max_segment_duration=draw(st.sampled_from([4.0, 10.0])),
        ),
        frame_rate,
        audio_lag,
    )


def package(publish: Publish) -> Collector:
    output = Collector()
    feed(Packager(output, publish.settings), publish.clip)
    return output


@PROPERTIES
@given(publishes())
def test_parts_and_segments_obey_the_ll_hls_rules(publish: Publish) -> None:
    output = package(publish)
    clip, target = publish.clip, publish.settings.part_target
    video = clip.video_codec is not None
    assert output.ended
    assert output.calls[0] == "init"
    if not clip.frames:
        return

    # Parts concatenate to their segment; numbers are contiguous.
    parts = iter(output.parts)
    for number, (info, data) in enumerate(output.segments):
        assert info.msn == number
        emitted = [next(parts) for _ in info.parts]
        assert [p for p, _ in emitted] == list(info.parts)
        assert b"".join(d for _, d in emitted) == data
        assert [p.index for p in info.parts] == list(range(len(info.parts)))
        assert sum(p.duration for p in info.parts) == _approx(info.duration)
        previous = output.segments[number - 1][0] if number else None
        if previous is None or previous.duration < publish.settings.max_segment_duration:
            assert info.parts[0].independent, "segments start on key frames..."
        else:
            assert video, "...unless the GOP outran the longest segment allowed"
    assert next(parts, None) is None

    # Durations: <= target always; >= 85 % unless the frames are too long for it.
    if video:
        stamps = [f.timestamp for f in clip.video]
        steps = [b - a for a, b in itertools.pairwise(stamps)]
        longest_frame = max(steps, default=0) / 1000
    else:
        longest_frame = 0.022  # 1024 samples at 48 kHz, in whole milliseconds
    for index, (info, _) in enumerate(output.segments):
        for part in info.parts:
            assert part.duration <= max(target, longest_frame) + 1e-9
        for part in info.parts[:-1]:
            if longest_frame <= 0.15 * target:
                assert part.duration >= 0.85 * target - 1e-9
            else:
                assert part.duration > target - longest_frame - 1e-9
        if index < len(output.segments) - 1 and video:
            assert info.duration >= publish.settings.min_segment_duration - 1e-9
        assert info.duration <= publish.settings.max_segment_duration + 2 * longest_frame
    assert all(p.duration > 0 for p, _ in output.parts)


@PROPERTIES
@given(publishes())
def test_every_sample_comes_out_once_in_order_on_a_gapless_timeline(publish: Publish) -> None:
    output = package(publish)
    clip = publish.clip
    driver = TrackKind.VIDEO if clip.video_codec else TrackKind.AUDIO
    inputs = {kind: [f for f in clip.frames if f.kind is kind] for kind in TrackKind}
    first_key = next((f for f in inputs[driver] if f.keyframe or driver is TrackKind.AUDIO), None)
    if first_key is None:
        assert not output.segments
        return
    expected = {
        kind: [f for f in inputs[kind] if f.timestamp >= first_key.timestamp] for kind in TrackKind
    }
    seen: dict[int, list[bytes]] = {VIDEO_TRACK: [], AUDIO_TRACK: []}
    ends: dict[int, int] = {}
    durations: dict[int, list[int]] = {VIDEO_TRACK: [], AUDIO_TRACK: []}
    for info, data in output.parts:
        fragments = read_fragments(data)
        assert len(fragments) == 1
        runs = fragments[0]
        assert runs[0].track_id == (VIDEO_TRACK if driver is TrackKind.VIDEO else AUDIO_TRACK)
        assert info.independent is runs[0].first_is_sync
        for run in runs:
            if run.track_id in ends:
                assert run.base_time == ends[run.track_id], "no gap, no overlap"
            ends[run.track_id] = run.base_time + sum(run.durations)
            seen[run.track_id].extend(run.samples(data))
            durations[run.track_id].extend(run.durations)
    assert seen[VIDEO_TRACK] == [f.data for f in expected[TrackKind.VIDEO]]
    assert seen[AUDIO_TRACK] == [f.data for f in expected[TrackKind.AUDIO]]
    if driver is TrackKind.VIDEO:
        frames = expected[TrackKind.VIDEO]
        steps = [(b.timestamp - a.timestamp) * 90 for a, b in itertools.pairwise(frames)]
        assert durations[VIDEO_TRACK][:-1] == steps
    # Millisecond jitter is gone: AAC frames are back to back, 1024 samples each.
    assert set(durations[AUDIO_TRACK]) <= {1024}


@PROPERTIES
@given(publishes())
def test_independent_parts_start_with_key_frames_and_segments_start_parts(
    publish: Publish,
) -> None:
    output = package(publish)
    if publish.clip.video_codec is None:
        assert all(info.independent for info, _ in output.parts)
        return
    keys = {f.data for f in publish.clip.video if f.keyframe}
    for info, data in output.parts:
        first = read_fragments(data)[0][0].samples(data)[0]
        assert info.independent is (first in keys)
    longest = publish.settings.max_segment_duration
    for (previous, _), (info, _) in itertools.pairwise(output.segments):
        assert info.parts[0].independent or previous.duration >= longest


@PROPERTIES
@given(publishes())
def test_audio_goes_to_the_part_that_spans_it_when_it_is_not_too_late(publish: Publish) -> None:
    if publish.clip.video_codec is None or publish.clip.audio_codec is None:
        return
    output = package(publish)
    waits = publish.audio_lag < publish.settings.max_audio_wait * 1000 - 50
    previous_end = None
    for _, data in output.parts[:-1]:
        video, *audio = read_fragments(data)[0]
        start, end = video.base_time, video.base_time + sum(video.durations)
        for run in audio:
            first = run.base_time * VIDEO_TICKS // AUDIO_TICKS
            last = (run.base_time + sum(run.durations[:-1])) * VIDEO_TICKS // AUDIO_TICKS
            assert last < end + VIDEO_TICKS // 1000, "never audio from after the part"
            if waits and previous_end is not None:
                assert first >= previous_end - VIDEO_TICKS // 1000
        previous_end = end
        assert start < end


@PROPERTIES
@given(publishes())
def test_the_same_publish_always_gives_the_same_output(publish: Publish) -> None:
    first, second = package(publish), package(publish)
    assert first.parts == second.parts
    assert first.segments == second.segments
    assert first.inits == second.inits


def _approx(value: float) -> object:
    import pytest

    return pytest.approx(value, abs=1e-9)


OPUS_HEAD = (
    b"OpusHead" + bytes([1, 2]) + (312).to_bytes(2, "little") + (48000).to_bytes(4, "little")
)
OPUS_HEAD += bytes(3)

packets = st.builds(
    MediaPacket,
    kind=st.sampled_from(TrackKind),
    codec=st.sampled_from(["avc", "aac", "opus", "mp3"]),
    timestamp=st.integers(0, 2**40) | st.integers(0, 3000),
    data=st.sampled_from([AVC_CONFIG, AAC_CONFIG, OPUS_HEAD, b"", b"\x00" * 9]) | st.binary(),
    keyframe=st.booleans(),
    sequence_header=st.booleans(),
    composition_offset=st.integers(-(2**23), 2**23 - 1),
    received_at=st.floats(0, 2e9),
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(packets, max_size=60), st.floats(0.1, 1.0))
def test_any_packet_sequence_gives_well_formed_output_or_a_packager_error(
    stream: list[MediaPacket], part_target: float
) -> None:
    output = Collector()
    packager = Packager(output, PackagerSettings(part_target=part_target))
    try:
        for packet in stream:
            packager.push(packet)
        packager.end()
    except PackagerError:
        return
    parts = iter(output.parts)
    for info, data in output.segments:
        emitted = [next(parts) for _ in info.parts]
        assert b"".join(d for _, d in emitted) == data
        for _, part in emitted:
            assert read_fragments(part)
        assert info.duration > 0
