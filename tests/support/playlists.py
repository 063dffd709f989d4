"""A media playlist with every feature, for the playlist and conformance tests to vary:
ten 2 s segments of six 1/3 s parts from msn 5, a partial segment, a preload hint and a
rendition report."""

from __future__ import annotations

import itertools

from tests.transcoder.hls.checker import attributes
from transcoder.hls.playlist import MediaPlaylist, Part, RenditionReport, Segment

PART = 1 / 3


def parts_of(msn: int, count: int = 6) -> tuple[Part, ...]:
    return tuple(Part(PART, f"p{msn}.{i}.m4s", independent=i == 0) for i in range(count))


def window(segments: int = 10, partial: int = 2, **changes) -> MediaPlaylist:
    changes.setdefault("preload_uri", f"p{5 + segments}.{partial}.m4s")
    return MediaPlaylist(
        target_duration=2,
        part_target=PART,
        init_uri="init-1.mp4",
        segments=tuple(
            Segment(msn, 2.0, f"s{msn}.m4s", 1_763_700_000 + 2 * msn, parts_of(msn))
            for msn in range(5, 5 + segments)
        ),
        partial=parts_of(5 + segments, partial),
        rendition_reports=(RenditionReport("../720p/index.m3u8", 14, 1),),
        **changes,
    )


def renditions(master: str) -> dict[str, tuple[dict[str, str], str]]:
    """NAME -> (EXT-X-STREAM-INF attributes, URI) of a multivariant playlist."""
    found = {}
    for line, uri in itertools.pairwise(master.splitlines()):
        if line.startswith("#EXT-X-STREAM-INF:"):
            values = attributes(line.split(":", 1)[1])
            found[values["NAME"]] = (values, uri)
    return found
