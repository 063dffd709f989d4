"""Real clients nobody here wrote publish to the ingest: ffmpeg CLI, GStreamer, PyAV."""

from __future__ import annotations

import pytest

from ingest.gatekeeper import EndReason
from tests.ingest.clients import ffmpeg_publish, gstreamer_publish, pyav_publish
from tests.ingest.harness import FakeGatekeeper

pytestmark = pytest.mark.slow


def test_ffmpeg_publishes_h264_aac_and_every_frame_arrives(start_ingest) -> None:
    ingest = start_ingest(FakeGatekeeper(keys={"k1": "alice"}))
    result = ffmpeg_publish(ingest.url("k1"), frames=150, size="1280x720")
    assert result.returncode == 0, result.stderr
    sink = ingest.sink_for("alice")
    assert sink.video_frames == 150
    assert {p.codec for p in sink.sequence_headers} == {"avc", "aac"}
    _grant, reason, description, health = ingest.gatekeeper.released[0]
    assert reason is EndReason.PUBLISHER_STOPPED
    assert (description.width, description.height) == (1280, 720)
    assert description.video_codec.startswith("avc1.")
    assert description.audio_codec == "mp4a.40.2"
    assert description.frame_rate == 30.0
    assert health.video_frames == 150
    assert abs(health.media_duration_ms - 5000) <= 500


def test_gstreamer_rtmp2sink_publishes(start_ingest) -> None:
    ingest = start_ingest(FakeGatekeeper(keys={"k2": "gst"}))
    result = gstreamer_publish(ingest.url("k2"), frames=150)
    assert result.returncode == 0, result.stderr + result.stdout
    _, _reason, description, health = ingest.gatekeeper.released[0]
    assert health.video_frames == 150
    assert (description.width, description.height) == (640, 360)
    assert description.video_codec.startswith("avc1.")
    assert ingest.sink_for("gst").audio_frames > 0


@pytest.mark.parametrize(
    ("encoder", "fourcc", "codec_prefix"),
    [("libx265", "hevc", "hvc1."), ("libsvtav1", "av1", "av01.")],
)
def test_enhanced_rtmp_hevc_and_av1_through_pyav(
    start_ingest, encoder, fourcc, codec_prefix
) -> None:
    ingest = start_ingest(FakeGatekeeper(keys={"k3": "enh"}))
    pyav_publish(ingest.url("k3"), encoder, frames=60, width=854, height=480)
    sink = ingest.sink_for("enh")
    assert sink.video_frames == 60
    assert sink.sequence_headers[0].codec == fourcc
    _, _, description, _health = ingest.gatekeeper.released[0]
    assert description.video_codec.startswith(codec_prefix)
    assert (description.width, description.height) == (854, 480)
    assert description.frame_rate == 30.0
