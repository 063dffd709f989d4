from __future__ import annotations

import pytest

from tests.support.playlists import window
from tests.transcoder.hls.checker import check_media_playlist
from transcoder.hls.playlist import (
    MediaPlaylist,
    RenditionReport,
    Segment,
    render_media_playlist,
    render_multivariant,
    rendition_reports,
    target_duration_for,
)
from transcoder.renditions import SOURCE, Rendition


def test_a_live_window_renders_a_valid_ll_hls_playlist() -> None:
    text = render_media_playlist(window())
    parsed = check_media_playlist(text)
    assert parsed.media_sequence == 5
    assert parsed.server_control["CAN-BLOCK-RELOAD"] == "YES"
    assert float(parsed.server_control["PART-HOLD-BACK"]) == pytest.approx(1.0)
    assert parsed.preload_hint == "p15.2.m4s"
    assert parsed.segments[-1].msn == 15
    assert [p.uri for p in parsed.segments[-1].parts] == ["p15.0.m4s", "p15.1.m4s"]
    assert parsed.rendition_reports[0]["LAST-MSN"] == "14"
    assert "#EXT-X-PROGRAM-DATE-TIME:2025-11-21T" in text


def test_parts_are_listed_only_for_the_last_few_target_durations() -> None:
    parsed = check_media_playlist(render_media_playlist(window()))
    with_parts = [s.msn for s in parsed.segments if s.parts]
    assert with_parts == [13, 14, 15]  # 2 + 2 + the partial 0.67 s: under 3 targets


def test_independent_parts_are_flagged() -> None:
    text = render_media_playlist(window())
    assert '#EXT-X-PART:DURATION=0.33333,URI="p14.0.m4s",INDEPENDENT=YES' in text
    assert '#EXT-X-PART:DURATION=0.33333,URI="p14.1.m4s"\n' in text


def test_a_delta_update_skips_what_is_older_than_can_skip_until() -> None:
    full = check_media_playlist(render_media_playlist(window(segments=20)))
    delta = check_media_playlist(render_media_playlist(window(segments=20), skip=True))
    assert delta.skipped > 0
    assert delta.segments[0].msn == full.segments[0].msn + delta.skipped
    assert delta.segments[-1].msn == full.segments[-1].msn
    # What is left covers at least CAN-SKIP-UNTIL (12 s).
    assert sum(s.duration or 0 for s in delta.complete) >= 12


def test_players_without_ll_hls_get_whole_segments_only() -> None:
    text = render_media_playlist(window(), low_latency=False)
    check_media_playlist(text, low_latency=False)
    assert "#EXT-X-PART" not in text
    assert "SERVER-CONTROL" not in text
    assert "PRELOAD-HINT" not in text


def test_an_ended_stream_becomes_a_vod_playlist() -> None:
    text = render_media_playlist(window(partial=0, ended=True, preload_uri=None))
    parsed = check_media_playlist(text)
    assert parsed.ended
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert "PRELOAD-HINT" not in text


def test_a_missing_segment_is_marked_as_a_gap() -> None:
    base = window(segments=3, partial=0, preload_uri=None)
    segments = list(base.segments)
    segments[1] = Segment(segments[1].msn, 2.0, "s6.m4s", segments[1].program_date_time, gap=True)
    text = render_media_playlist(MediaPlaylist(**{**_fields(base), "segments": tuple(segments)}))
    parsed = check_media_playlist(text)
    assert [s.gap for s in parsed.segments] == [False, True, False]


def _fields(playlist: MediaPlaylist) -> dict:
    return {name: getattr(playlist, name) for name in playlist.__dataclass_fields__}


def test_the_checker_catches_a_part_over_the_target() -> None:
    bad = window(segments=1, partial=1)
    text = render_media_playlist(bad).replace("DURATION=0.33333", "DURATION=0.5", 1)
    with pytest.raises(AssertionError, match="lasts"):
        check_media_playlist(text)


def test_the_checker_catches_a_short_middle_part() -> None:
    text = render_media_playlist(window(segments=1, partial=3))
    lines = text.splitlines()
    index = max(i for i, line in enumerate(lines) if "p6.0.m4s" in line)
    lines[index] = lines[index].replace("0.33333", "0.2")
    with pytest.raises(AssertionError, match="85%"):
        check_media_playlist("\n".join(lines))


def test_the_checker_catches_an_unfetchable_uri() -> None:
    with pytest.raises(AssertionError, match="cannot be fetched"):
        check_media_playlist(render_media_playlist(window()), fetch=lambda uri: uri != "s9.m4s")


def test_part_hold_back_is_set_in_parts_and_never_under_the_drafts_two() -> None:
    from dataclasses import replace

    live = window()
    text = render_media_playlist(replace(live, part_hold_back_parts=2.5))
    parsed = check_media_playlist(text)
    hold_back = float(parsed.server_control["PART-HOLD-BACK"])
    assert hold_back == pytest.approx(2.5 * live.part_target, abs=1e-5)
    too_close = render_media_playlist(replace(live, part_hold_back_parts=1.5))
    with pytest.raises(AssertionError, match="PART-HOLD-BACK < 2x"):
        check_media_playlist(too_close)


def test_target_duration_rounds_to_the_nearest_second() -> None:
    assert target_duration_for([2.0, 2.4]) == 2
    assert target_duration_for([2.0, 2.5]) == 3


def test_the_multivariant_playlist_lists_highest_bandwidth_first() -> None:
    text = render_multivariant(
        [
            Rendition("480p30", 1_200_000, "avc1.4d401e,mp4a.40.2", 852, 480, 30.0),
            Rendition(SOURCE, 3_500_000, "avc1.64001f,mp4a.40.2", 1280, 720, 29.97, True,
                      average_bandwidth=2_900_000),
        ],
        prefix="7/",
    )
    lines = text.splitlines()
    assert lines[3] == (
        '#EXT-X-STREAM-INF:BANDWIDTH=3500000,AVERAGE-BANDWIDTH=2900000,'
        'CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=29.970,NAME="source"'
    )
    assert lines[4] == "7/source/index.m3u8"
    assert lines[5].startswith("#EXT-X-STREAM-INF:BANDWIDTH=1200000,CODECS=")
    assert "RESOLUTION=852x480,FRAME-RATE=30.000" in lines[5]
    assert lines[6] == "7/480p30/index.m3u8"


def test_rendition_reports_name_every_other_rendition_by_its_sibling_uri() -> None:
    reports = rendition_reports(SOURCE, [("720p30", 14, 2), (SOURCE, 14, 3), ("160p30", 13, None)])
    assert reports == (
        RenditionReport("../160p30/index.m3u8", 13, None),
        RenditionReport("../720p30/index.m3u8", 14, 2),
    )
