"""Every playlist the renderer can produce for a live stream, read by hls-parser in strict
mode, the PyPI `m3u8` parser and the project's checker: the live playlist, its delta
update, and the windows a blocking reload answers with, at every part of a real packaged
clip. The origin's real responses go through the same readers in
`tests/platform/delivery/test_end_to_end.py`."""

from __future__ import annotations

import pytest

from tests.support.playlists import window
from tests.transcoder.cmaf.media import Collector
from tests.transcoder.hls.conformance import assert_conformant, strict_verdicts
from transcoder.cmaf.packager import PART_TARGET
from transcoder.hls.playlist import (
    MediaPlaylist,
    Part,
    Segment,
    render_media_playlist,
)

TARGET = 2


def windows_along(packaged: Collector) -> list[MediaPlaylist]:
    """The live window after each part the packager produced, as the origin would show it
    (complete segments with their parts, the partial segment, the preload hint)."""
    segments: list[Segment] = []
    partial: list[Part] = []
    partial_pdt: float | None = None
    parts = iter(packaged.parts)
    completed = {info.msn: info for info, _ in packaged.segments}
    playlists = []
    for info, _ in parts:
        if not partial:
            partial_pdt = info.program_date_time
        partial.append(Part(info.duration, f"p{info.msn}.{info.index}.m4s", info.independent))
        done = completed.get(info.msn)
        if done is not None and len(partial) == len(done.parts):
            segments.append(Segment(
                done.msn, done.duration, f"s{done.msn}.m4s", done.program_date_time,
                tuple(partial),
            ))
            partial, partial_pdt = [], None
            next_part = f"p{done.msn + 1}.0.m4s"
        else:
            next_part = f"p{info.msn}.{info.index + 1}.m4s"
        playlists.append(MediaPlaylist(
            target_duration=TARGET,
            part_target=PART_TARGET,
            init_uri="init-1.mp4",
            segments=tuple(segments[-10:]),
            partial=tuple(partial),
            partial_program_date_time=partial_pdt,
            preload_uri=next_part,
            media_sequence=segments[-10:][0].msn if segments else info.msn,
        ))
    return playlists


def test_every_window_of_a_real_stream_is_read_by_all_three_parsers(packaged) -> None:
    playlists = windows_along(packaged)
    assert len(playlists) == len(packaged.parts) > 12
    texts = [render_media_playlist(p) for p in playlists]
    deltas = [render_media_playlist(p, skip=True) for p in playlists]
    assert_conformant(texts + deltas)


@pytest.mark.parametrize("partial", [0, 1, 5])
def test_parts_are_listed_only_within_three_target_durations_of_the_end(partial) -> None:
    text = render_media_playlist(window(segments=10, partial=partial))
    assert_conformant([text, render_media_playlist(window(partial=partial), skip=True)])
    # The oldest part listed starts less than three target durations before the end.
    lines = text.splitlines()
    first_part = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-PART:"))
    after = lines[first_part:]
    listed = sum(
        float(line.split(":")[1].rstrip(",")) for line in after if line.startswith("#EXTINF")
    ) + partial * PART_TARGET
    assert listed < 3 * TARGET


def test_gaps_discontinuities_and_an_ended_stream_are_read_too() -> None:
    base = window(segments=8, partial=2)
    gapped = list(base.segments)
    gapped[3] = Segment(gapped[3].msn, 2.0, gapped[3].uri, gapped[3].program_date_time, gap=True)
    gapped[5] = Segment(gapped[5].msn, 2.0, gapped[5].uri, gapped[5].program_date_time,
                        gapped[5].parts, discontinuity=True)
    texts = [
        render_media_playlist(MediaPlaylist(**{**_fields(base), "segments": tuple(gapped)})),
        render_media_playlist(MediaPlaylist(**{**_fields(base), "ended": True})),
        render_media_playlist(base, low_latency=False),
    ]
    assert_conformant(texts)


def test_hls_parser_refuses_parts_further_back_than_three_target_durations() -> None:
    # The rule the renderer keeps, broken by hand: hls-parser must see it, or the tests
    # above prove nothing.
    text = render_media_playlist(window(segments=10, partial=2))
    lines = text.splitlines()
    at = lines.index("s10.m4s") - 1  # the EXTINF of a segment six targets back
    lines[at:at] = [f'#EXT-X-PART:DURATION={PART_TARGET:.5f},URI="p10.{i}.m4s"' for i in range(6)]
    [verdict] = strict_verdicts(["\n".join(lines) + "\n"])
    assert verdict is not None
    assert "three target durations" in verdict


def _fields(playlist: MediaPlaylist) -> dict:
    return {name: getattr(playlist, name) for name in MediaPlaylist.__dataclass_fields__}
