"""The packager on a real 720p30 H.264 (B-frames, 2 s GOP) + AAC publish, with PyAV's
FFmpeg as the player that has to accept every init segment, part and segment."""

from __future__ import annotations

import hashlib
import io
from fractions import Fraction

import av
import pytest

from tests.transcoder.cmaf.media import (
    Clip,
    Collector,
    decode,
    demux_flv,
    encode_flv_cli,
    feed,
    read_fragments,
)
from transcoder.cmaf import Packager, PackagerError, PackagerSettings
from transcoder.cmaf.boxes import find_box, get_box, iter_boxes
from transcoder.metadata import StreamMetadata
from transcoder.packets import MediaPacket, TrackKind

PART_TARGET = PackagerSettings().part_target
VIDEO_TICKS = 90  # per millisecond


def segment_spans(clip: Clip) -> list[tuple[int, int]]:
    """[start, end) of each segment the clip should give, in ms: key frame to key frame."""
    keys = [f.timestamp for f in clip.video if f.keyframe]
    last = clip.video[-1].timestamp + (clip.video[-1].timestamp - clip.video[-2].timestamp)
    return list(zip(keys, [*keys[1:], last], strict=True))


def video_frames_in(clip: Clip, start: int, end: int) -> int:
    return sum(1 for f in clip.video if start <= f.timestamp < end)


def plane_digest(frame: av.VideoFrame) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for plane in frame.planes:
        digest.update(bytes(plane))
    return digest.hexdigest()


def test_init_segment_describes_both_tracks(packaged: Collector) -> None:
    ((info, init),) = packaged.inits
    assert info.generation == 0
    assert info.codecs.startswith("avc1.4d") or info.codecs.startswith("avc1.42")
    assert info.codecs.endswith(",mp4a.40.2")
    assert (info.width, info.height, info.frame_rate) == (1280, 720, 30.0)
    assert [box.kind for box in iter_boxes(init)] == ["ftyp", "moov"]
    assert get_box(init, "moov/mvex")
    assert find_box(init, "moov/trak/mdia/minf/stbl")
    with av.open(io.BytesIO(init), format="mp4") as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 1280, 720)
        assert (audio.codec_context.name, audio.sample_rate, audio.channels) == ("aac", 48000, 2)


def test_each_segment_decodes_alone_with_every_frame_it_was_fed(
    clip: Clip, packaged: Collector
) -> None:
    spans = segment_spans(clip)
    assert len(packaged.segments) == len(spans) == 3
    init = packaged.inits[0][1]
    for (info, data), (start, end) in zip(packaged.segments, spans, strict=True):
        video, audio = decode(init + data)
        assert len(video) == video_frames_in(clip, start, end)
        assert info.duration == pytest.approx((end - start) / 1000)
        time_base = video[0].time_base
        assert sum(f.duration for f in video) * time_base == pytest.approx(info.duration)
        span = (video[-1].pts - video[0].pts + video[-1].duration) * time_base
        assert float(span) == pytest.approx(info.duration, abs=0.002)  # 33/34 ms frames
        assert video[0].key_frame
        assert audio, "every segment carries its audio"


def test_the_whole_stream_plays_every_frame_in_order_as_the_publisher_coded_it(
    source_flv: bytes, clip: Clip, packaged: Collector
) -> None:
    stream = packaged.inits[0][1] + b"".join(data for _, data in packaged.segments)
    video, audio = decode(stream)
    assert len(video) == len(clip.video)
    assert len(audio) == len(clip.audio)
    pts = [frame.pts for frame in video]
    assert pts == sorted(pts)
    assert len(set(pts)) == len(pts)
    # Passthrough: the same pictures at the same presentation times as the source.
    with av.open(io.BytesIO(source_flv), format="flv") as source:
        original = list(source.decode(video=0))
    assert [f.pts * VIDEO_TICKS for f in original] == pts
    assert [plane_digest(f) for f in original] == [plane_digest(f) for f in video]


def test_parts_concatenate_to_exactly_their_segment(packaged: Collector) -> None:
    emitted = iter(packaged.parts)
    for info, data in packaged.segments:
        parts = [next(emitted) for _ in info.parts]
        assert [p for p, _ in parts] == list(info.parts)
        assert b"".join(d for _, d in parts) == data
    assert next(emitted, None) is None
    assert packaged.calls[0] == "init"
    assert packaged.calls[-1] == "end"


def test_every_part_but_a_segments_last_is_between_85_percent_of_the_target_and_the_target(
    packaged: Collector,
) -> None:
    for info, _ in packaged.segments:
        assert len(info.parts) > 1
        for part in info.parts[:-1]:
            assert 0.85 * PART_TARGET <= part.duration <= PART_TARGET
        assert 0 < info.parts[-1].duration <= PART_TARGET
        assert sum(p.duration for p in info.parts) == pytest.approx(info.duration)


def test_segments_start_on_the_publishers_key_frames(clip: Clip, packaged: Collector) -> None:
    keys = {f.timestamp for f in clip.video if f.keyframe}
    for info, data in packaged.segments:
        video_run = read_fragments(data)[0][0]
        assert video_run.track_id == 1
        assert video_run.first_is_sync
        assert video_run.base_time // VIDEO_TICKS in keys
        assert info.parts[0].independent


def test_independent_is_set_exactly_on_parts_that_start_with_a_key_frame(
    clip: Clip, packaged: Collector
) -> None:
    keyframe_at = {f.timestamp: f.keyframe for f in clip.video}
    for info, data in packaged.parts:
        ((video_run, *_),) = read_fragments(data)
        first = video_run.base_time // VIDEO_TICKS
        assert info.independent is keyframe_at[first] is video_run.first_is_sync
    assert sum(info.independent for info, _ in packaged.parts) == len(packaged.segments)


def test_media_sequence_numbers_and_part_indexes_are_contiguous(packaged: Collector) -> None:
    assert [info.msn for info, _ in packaged.segments] == [0, 1, 2]
    for info, _ in packaged.segments:
        assert [p.index for p in info.parts] == list(range(len(info.parts)))
        assert {p.msn for p in info.parts} == {info.msn}
    numbers = [
        int.from_bytes(data[box.payload + 4 : box.payload + 8], "big")
        for _, data in packaged.parts
        for box in [get_box(data, "moof/mfhd")]
    ]
    assert numbers == list(range(1, len(packaged.parts) + 1))


def test_program_date_time_is_when_the_ingest_received_the_first_frame(
    clip: Clip, packaged: Collector
) -> None:
    received = {f.timestamp: f.received_at for f in clip.video}
    for info, data in packaged.segments:
        start = read_fragments(data)[0][0].base_time // VIDEO_TICKS
        assert info.program_date_time == received[start]
        assert info.parts[0].program_date_time == received[start]
    for info, data in packaged.parts:
        start = read_fragments(data)[0][0].base_time // VIDEO_TICKS
        assert info.program_date_time == received[start]


def test_ending_mid_gop_flushes_a_shorter_segment_that_still_decodes(clip: Clip) -> None:
    cut = clip.until(3000)
    output = Collector()
    feed(Packager(output), cut)
    assert output.ended
    assert next(round(info.duration, 3) for info, _ in output.segments) == 2.0
    last, data = output.segments[-1]
    frames = video_frames_in(cut, 2000, 3000)
    assert last.duration == pytest.approx(frames / 30, abs=0.002)
    video, audio = decode(output.inits[0][1] + data)
    assert len(video) == frames
    assert audio
    for part in last.parts[:-1]:
        assert 0.85 * PART_TARGET <= part.duration <= PART_TARGET


def test_a_part_is_emitted_only_once_all_its_samples_are_in(clip: Clip) -> None:
    """Not before the frame after its last one (which gives that one its duration) and
    the audio up to its end have arrived; and the audio in it is the audio of its span."""
    output = Collector()
    packager = Packager(output)
    for header in clip.headers():
        packager.push(header)
    latest = {TrackKind.VIDEO: -1, TrackKind.AUDIO: -1}
    seen_when_emitted: list[dict[TrackKind, int]] = []
    for frame in clip.frames:
        packager.push(frame.packet())
        latest[frame.kind] = frame.timestamp
        while len(seen_when_emitted) < len(output.parts):
            seen_when_emitted.append(dict(latest))
    packager.end()
    assert len(output.parts) > len(seen_when_emitted), "end() flushed the last part"
    previous_end = None
    for (info, data), seen in zip(output.parts, seen_when_emitted, strict=False):
        video_run, audio_run = read_fragments(data)[0]
        end = (video_run.base_time + sum(video_run.durations)) // VIDEO_TICKS
        assert seen[TrackKind.VIDEO] >= end
        assert seen[TrackKind.AUDIO] >= end - 1
        audio_starts = [
            (audio_run.base_time + sum(audio_run.durations[:i])) * 1000 / 48000
            for i in range(len(audio_run.durations))
        ]
        assert max(audio_starts) < end
        if previous_end is not None:
            assert min(audio_starts) >= previous_end - 1
        previous_end = end
        assert info.duration == pytest.approx(sum(video_run.durations) / 90_000)


def test_the_same_publish_gives_the_same_bytes(clip: Clip, packaged: Collector) -> None:
    again = Collector()
    feed(Packager(again), clip)
    assert again.inits == packaged.inits
    assert again.parts == packaged.parts
    assert again.segments == packaged.segments


def test_part_boundaries_depend_on_media_time_not_arrival_time(clip: Clip) -> None:
    late = Collector()
    feed(Packager(late), clip.shifted(0, seconds=3600.0))
    reference = Collector()
    feed(Packager(reference), clip)
    assert [d for _, d in late.parts] == [d for _, d in reference.parts]
    assert [i.duration for i, _ in late.parts] == [i.duration for i, _ in reference.parts]


def test_new_sequence_headers_start_a_new_init_segment_and_a_discontinuity(clip: Clip) -> None:
    smaller = demux_flv(encode_flv_cli(2, width=640, height=360)).shifted(5000, 5.0)
    output = Collector()
    packager = Packager(output)
    feed(packager, clip, end=False)
    feed(packager, smaller)
    assert [(i.generation, i.width, i.height) for i, _ in output.inits] == [
        (0, 1280, 720),
        (1, 640, 360),
    ]
    assert [info.msn for info, _ in output.segments] == list(range(len(output.segments)))
    assert [(info.generation, info.discontinuity) for info, _ in output.segments] == [
        (0, False),
        (0, False),
        (0, False),
        (1, True),
    ]
    # The old generation's last segment ends exactly where the new key frame starts.
    assert output.segments[2][0].duration == pytest.approx(1.0)
    segment_calls = [i for i, call in enumerate(output.calls) if call == "segment"]
    assert output.calls.index("init", 1) == segment_calls[2] + 1
    info, data = output.segments[3]
    video, audio = decode(output.init_for(info) + data)
    assert len(video) == len(smaller.video)
    assert (video[0].width, video[0].height) == (640, 360)
    assert audio


def test_an_audio_change_waits_for_the_next_key_frame_to_start_a_new_init(clip: Clip) -> None:
    resampled = demux_flv(encode_flv_cli(2, sample_rate=44100)).shifted(5000, 5.0)
    assert resampled.video_config == clip.video_config != b""
    assert resampled.audio_config != clip.audio_config
    output = Collector()
    packager = Packager(output)
    feed(packager, clip, end=False)
    feed(packager, resampled)
    assert len(output.inits) == 2
    assert [info.discontinuity for info, _ in output.segments] == [False, False, False, True]
    info, data = output.segments[-1]
    video, audio = decode(output.init_for(info) + data)
    assert len(video) == len(resampled.video)
    assert {frame.sample_rate for frame in audio} == {44100}
    assert len(audio) == len(resampled.audio)


def test_repeated_identical_sequence_headers_change_nothing(clip: Clip) -> None:
    output = Collector()
    packager = Packager(output)
    feed(packager, clip.until(2500), end=False)
    for header in clip.headers(2500):
        packager.push(header)
    feed(packager, clip.since(2500), headers=False)
    assert len(output.inits) == 1
    assert not any(info.discontinuity for info, _ in output.segments)
    assert len(decode(output.inits[0][1] + b"".join(d for _, d in output.segments))[0]) == len(
        clip.video
    )


def test_video_before_the_first_key_frame_is_dropped(clip: Clip) -> None:
    late_join = clip.since(clip.video[5].timestamp)
    output = Collector()
    packager = Packager(output)
    feed(packager, late_join)
    first = output.segments[0][1]
    assert read_fragments(first)[0][0].base_time == 2000 * VIDEO_TICKS
    assert packager.dropped > 0
    assert len(output.segments) == 2


def test_media_after_end_is_refused(clip: Clip) -> None:
    packager = Packager(Collector())
    feed(packager, clip.until(500))
    packager.end()  # idempotent
    with pytest.raises(PackagerError):
        packager.push(clip.headers()[0])


def test_unsupported_video_codec_is_an_error_and_unsupported_audio_is_left_out(
    clip: Clip,
) -> None:
    with pytest.raises(PackagerError, match="vp6"):
        Packager(Collector()).push(
            MediaPacket(TrackKind.VIDEO, "vp6", 0, b"\x00", sequence_header=True)
        )
    output = Collector()
    packager = Packager(output)
    packager.push(MediaPacket(TrackKind.AUDIO, "mp3", 0, b"", sequence_header=True))
    video_only = Clip(clip.video_codec, clip.video_config, None, b"", tuple(clip.video))
    feed(packager, video_only.until(2500))
    assert output.inits[0][0].codecs.startswith("avc1.")
    assert "," not in output.inits[0][0].codecs
    assert len(decode(output.inits[0][1] + output.segments[0][1])[0]) == 60


def test_metadata_fills_in_bandwidth_and_frame_rate(clip: Clip) -> None:
    output = Collector()
    packager = Packager(output)
    packager.metadata(
        StreamMetadata(frame_rate=30.0, video_data_rate=2500.0, audio_data_rate=128.0)
    )
    feed(packager, clip.until(100))
    assert output.inits[0][0].bandwidth_estimate == 2_628_000


def test_timestamps_that_restart_keep_the_timeline_going(clip: Clip) -> None:
    """A publisher whose clock jumps back (an encoder restart without new headers)."""
    first = clip.until(4000)
    again = clip.until(2000).shifted(-0, seconds=10.0)
    output = Collector()
    packager = Packager(output)
    feed(packager, first, end=False)
    feed(packager, again, headers=False)
    video, _audio = decode(output.inits[0][1] + b"".join(d for _, d in output.segments))
    assert len(video) == len(first.video) + len(again.video)
    pts = [f.pts for f in video]
    assert pts == sorted(pts)
    assert float(video[-1].pts * video[-1].time_base) == pytest.approx(6.0, abs=0.1)


def test_a_gop_longer_than_the_longest_segment_is_cut_without_a_key_frame(clip: Clip) -> None:
    output = Collector()
    settings = PackagerSettings(min_segment_duration=0.5, max_segment_duration=1.2)
    feed(Packager(output, settings), clip)
    starts = [info.parts[0].independent for info, _ in output.segments]
    assert starts == [True, False, True, False, True]
    assert all(info.duration <= 1.2 + 0.034 for info, _ in output.segments)
    video, _ = decode(output.inits[0][1] + b"".join(d for _, d in output.segments))
    assert len(video) == len(clip.video)


def test_part_target_is_configurable(clip: Clip) -> None:
    output = Collector()
    settings = PackagerSettings(part_target=0.5)
    feed(Packager(output, settings), clip.until(2100))
    for info, _ in output.segments:
        assert all(0.425 <= p.duration <= 0.5 for p in info.parts[:-1])
    assert Fraction(output.segments[0][0].duration).limit_denominator(1000) == 2
