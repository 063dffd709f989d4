"""Every codec the ingest accepts from Enhanced RTMP, packaged and played back by FFmpeg;
and publishes with one track only."""

from __future__ import annotations

import io

import av
import pytest

from tests.transcoder.cmaf.media import Clip, Collector, decode, demux_flv, encode_flv_pyav, feed
from transcoder.cmaf import Packager, PackagerSettings
from transcoder.cmaf.fmp4 import vp9_frame_size
from transcoder.cmaf.packager import PART_TARGET
from transcoder.codecs import parse_audio_config, parse_video_config

X265 = "log-level=error:bframes=2:scenecut=0:open-gop=0"
FOURCC = {"avc": "avc1", "hevc": "hvc1", "av1": "av01", "vp9": "vp09"}


def require(*encoders: str | None) -> None:
    for encoder in encoders:
        if encoder and encoder not in av.codecs_available:
            pytest.skip(f"this FFmpeg build has no {encoder}")


@pytest.mark.parametrize(
    ("video_encoder", "audio_encoder", "options", "decoded_as"),
    [
        # Closed GOPs: with x265's default open GOP a segment played alone starts with
        # leading pictures that reference the previous one, and decoders skip them.
        ("libx265", "libopus", {"x265-params": X265}, ("hevc", "opus")),
        ("libaom-av1", "aac", {"cpu-used": "8", "usage": "realtime"}, ("av1", "aac")),
        ("libvpx-vp9", "libopus", {"deadline": "realtime", "cpu-used": "8"}, ("vp9", "opus")),
        ("libx264", "aac", {"preset": "ultrafast", "bf": "2"}, ("h264", "aac")),
    ],
    ids=["hevc+opus", "av1+aac", "vp9+opus", "h264+aac"],
)
def test_each_codec_is_packaged_into_fmp4_ffmpeg_plays(
    video_encoder: str, audio_encoder: str, options: dict[str, str], decoded_as: tuple[str, str]
) -> None:
    require(video_encoder, audio_encoder)
    clip = demux_flv(encode_flv_pyav(video_encoder, audio_encoder, frames=75, options=options))
    output = Collector()
    feed(Packager(output, PackagerSettings(min_segment_duration=0.5)), clip)

    ((info, init),) = output.inits
    assert clip.video_codec
    assert clip.audio_codec
    video_config = parse_video_config(FOURCC[clip.video_codec], clip.video_config)
    audio_fourcc = "mp4a" if clip.audio_codec == "aac" else "Opus"
    audio_config = parse_audio_config(audio_fourcc, clip.audio_config)
    assert info.codecs == f"{video_config.codec_string},{audio_config.codec_string}"
    assert (info.width, info.height) == (320, 240)
    with av.open(io.BytesIO(init), format="mp4") as container:
        streams = container.streams
        names = tuple(
            s.codec_context.codec.canonical_name for s in (streams.video[0], streams.audio[0])
        )
        assert names == decoded_as
        assert (streams.video[0].width, streams.video[0].height) == (320, 240)
        assert streams.audio[0].channels == 2

    starts: list[int] = []
    for frame in clip.video:
        if frame.keyframe and (not starts or frame.timestamp - starts[-1] >= 500):
            starts.append(frame.timestamp)
    assert len(output.segments) == len(starts) >= 2
    total = 0
    for _segment, data in output.segments:
        video, audio = decode(init + data)
        assert video[0].key_frame
        assert video[0].width == 320
        assert audio
        total += len(video)
    assert total == len(clip.video)
    video, audio = decode(init + b"".join(d for _, d in output.segments))
    # Audio from before the first key frame is left out: the stream starts with a picture.
    start = clip.video[0].timestamp
    assert len(video) == len(clip.video)
    assert len(audio) == sum(1 for f in clip.audio if f.timestamp >= start)


def test_vp9_frame_size_is_read_from_the_key_frame() -> None:
    require("libvpx-vp9")
    clip = demux_flv(
        encode_flv_pyav(
            "libvpx-vp9", None, frames=3, width=322, height=178, options={"cpu-used": "8"}
        )
    )
    assert vp9_frame_size(clip.video[0].data) == (322, 178)
    assert vp9_frame_size(clip.video[1].data) is None  # not a key frame


def test_a_publish_without_audio_is_packaged_as_video_only() -> None:
    clip = demux_flv(encode_flv_pyav("libx264", None, frames=60, options={"preset": "ultrafast"}))
    output = Collector()
    feed(Packager(output), clip)
    assert "," not in output.inits[0][0].codecs
    video, audio = decode(output.inits[0][1] + b"".join(d for _, d in output.segments))
    assert (len(video), len(audio)) == (60, 0)
    assert [len(info.parts) > 1 for info, _ in output.segments] == [True, True]


def test_a_publish_without_video_is_cut_by_time_into_independent_parts() -> None:
    clip = demux_flv(encode_flv_pyav(None, "aac", frames=150))  # 5 s of audio
    output = Collector()
    feed(Packager(output), clip)
    ((info, init),) = output.inits
    assert info.codecs == "mp4a.40.2"
    assert info.width is None
    durations = [segment.duration for segment, _ in output.segments]
    assert all(d >= 2.0 for d in durations[:-1])
    assert sum(durations) == pytest.approx(len(clip.audio) * 1024 / 48000)
    assert all(part.independent for part, _ in output.parts)
    for segment, _ in output.segments:
        parts = segment.parts[:-1]
        assert all(0.85 * PART_TARGET - 1e-3 <= p.duration <= PART_TARGET for p in parts)
    _, audio = decode(init + b"".join(d for _, d in output.segments))
    assert len(audio) == len(clip.audio)


def test_audio_that_arrives_before_the_video_header_starts_audio_only_then_switches() -> None:
    clip = demux_flv(encode_flv_pyav("libx264", "aac", frames=60, options={"preset": "ultrafast"}))
    audio_first = [f for f in clip.frames if f.kind.value == "audio" and f.timestamp < 500]
    rest = tuple(f for f in clip.frames if f not in audio_first and f.timestamp >= 500)
    output = Collector()
    packager = Packager(output)
    packager.push(clip.headers()[1])  # the audio header alone
    feed(
        packager,
        Clip(None, b"", "aac", clip.audio_config, tuple(audio_first)),
        headers=False,
        end=False,
    )
    packager.push(clip.headers()[0])
    feed(packager, Clip("avc", clip.video_config, "aac", clip.audio_config, rest), headers=False)
    assert [i.codecs.count(",") for i, _ in output.inits] == [0, 1]
    assert [s.discontinuity for s, _ in output.segments][:2] == [False, True]
    last = output.segments[-1]
    video, _ = decode(output.init_for(last[0]) + last[1])
    assert video
    assert video[0].key_frame
