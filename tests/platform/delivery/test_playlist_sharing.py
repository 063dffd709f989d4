"""Requests woken by the same part share one rendering of the same window."""

from __future__ import annotations

import pytest

from delivery import origin
from transcoder.live_index import PartRef, SegmentRef
from transcoder.live_index.model import RenditionWindow


def window(version: int, parts: int = 2) -> RenditionWindow:
    return RenditionWindow(
        version=version, init_version=1, init_url=None, part_target=0.334,
        target_duration=2, media_sequence=0, discontinuity_sequence=0,
        segments=(SegmentRef(0, 2.0, 1_700_000_000.0, url="https://cdn.example/seg-0.m4s"),),
        parts=tuple(PartRef(1, i, 0.334, i == 0) for i in range(parts)),
        next_msn=1, current_program_date_time=1_700_000_002.0, ended=False,
    )


@pytest.fixture(autouse=True)
def _empty_cache():
    origin._RENDERED.clear()
    yield
    origin._RENDERED.clear()


def test_one_window_is_rendered_once_for_everyone(monkeypatch) -> None:
    renders = []
    real = origin.render_media_playlist

    def counting(*args, **kwargs):
        renders.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(origin, "render_media_playlist", counting)
    first = origin._rendered("s1", "source", window(7), True, False)
    for _ in range(999):
        assert origin._rendered("s1", "source", window(7), True, False) is first
    assert len(renders) == 1
    assert b"#EXT-X-PART:DURATION=0.334,URI=\"part-1.1.m4s\"" in first
    # A new window, another rendition, or other options: rendered anew.
    assert origin._rendered("s1", "source", window(8, parts=3), True, False) != first
    origin._rendered("s2", "source", window(7), True, False)
    origin._rendered("s1", "source", window(7), False, False)
    assert len(renders) == 4


def test_the_cache_stays_small() -> None:
    for version in range(origin._RENDERED_MAX + 50):
        origin._rendered("s1", "source", window(version), True, False)
    assert len(origin._RENDERED) == origin._RENDERED_MAX
