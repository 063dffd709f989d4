"""onMetaData, read by the one reader the ingest and the packager share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transcoder.metadata import StreamMetadata, read_metadata

OBS = {
    "duration": 0.0,
    "width": 1280.0,
    "height": 720.0,
    "videodatarate": 2500.0,
    "framerate": 30.0,
    "videocodecid": 7.0,
    "audiodatarate": 160.0,
    "audiosamplerate": 48000.0,
    "encoder": "obs-output module (libobs version 30.0.2)",
}


def test_what_obs_sends_is_read_as_size_rate_and_bandwidth() -> None:
    metadata = read_metadata(OBS)

    assert metadata == StreamMetadata(1280, 720, 30.0, 2500.0, 160.0)
    assert metadata.size == (1280, 720)
    assert metadata.bandwidth_estimate == 2_660_000


def test_the_frame_rate_falls_back_on_videoframerate() -> None:
    assert read_metadata({"videoframerate": 25.0}).frame_rate == 25.0
    assert read_metadata({"framerate": 50.0, "videoframerate": 25.0}).frame_rate == 50.0
    assert read_metadata({"framerate": "fast", "videoframerate": 25.0}).frame_rate == 25.0


@pytest.mark.parametrize(
    "value",
    [0.0, -720.0, math.nan, math.inf, 70000.0, True, "720", None, [720.0], {"h": 720.0}],
)
def test_a_size_that_is_not_a_plausible_number_is_unknown(value: object) -> None:
    metadata = read_metadata({"width": 1280.0, "height": value})

    assert metadata.width == 1280
    assert metadata.height is None
    assert metadata.size is None


def test_sizes_are_whole_pixels_and_rates_are_bounded() -> None:
    metadata = read_metadata(
        {"width": 1279.6, "height": 720.2, "framerate": 5000.0, "videodatarate": 1e12}
    )

    assert metadata.size == (1280, 720)
    assert metadata.frame_rate is None
    assert metadata.video_data_rate is None
    assert metadata.bandwidth_estimate is None


def test_a_later_onmetadata_adds_to_an_earlier_one() -> None:
    first = read_metadata({"width": 640.0, "height": 360.0, "videodatarate": 800.0})
    later = read_metadata({"width": 1280.0, "height": 720.0, "framerate": 60.0})

    merged = first.updated(later)

    assert merged == StreamMetadata(1280, 720, 60.0, 800.0, None)
    assert merged.bandwidth_estimate == 800_000


@settings(deadline=None)  # timings on a shared machine say nothing here
@given(
    st.dictionaries(
        st.sampled_from(["width", "height", "framerate", "videoframerate", "videodatarate",
                         "audiodatarate", "other"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
    )
)
def test_any_onmetadata_reads_without_raising_and_only_as_plausible_figures(
    values: dict[str, object],
) -> None:
    metadata = read_metadata(values)

    for dimension in (metadata.width, metadata.height):
        assert dimension is None or 1 <= dimension <= 65535
    assert metadata.frame_rate is None or 0 < metadata.frame_rate <= 1000
    bandwidth = metadata.bandwidth_estimate
    assert bandwidth is None or bandwidth >= 0
