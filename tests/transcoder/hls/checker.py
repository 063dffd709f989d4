"""An LL-HLS playlist checker for tests: parses a media playlist and enforces the rules
of draft-pantos-hls-rfc8216bis that golive promises. Every end-to-end test runs every
playlist it sees through `check_media_playlist`; `fetch` (optional) proves each URI can
be fetched at the moment the playlist is served."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attributes(text: str) -> dict[str, str]:
    return {key: value.strip('"') for key, value in ATTRIBUTE.findall(text)}


@dataclass
class ParsedPart:
    duration: float
    uri: str
    independent: bool


@dataclass
class ParsedSegment:
    msn: int
    duration: float | None = None
    uri: str | None = None
    parts: list[ParsedPart] = field(default_factory=list)
    gap: bool = False


@dataclass
class ParsedPlaylist:
    version: int | None = None
    target_duration: int | None = None
    media_sequence: int = 0
    server_control: dict[str, str] = field(default_factory=dict)
    part_target: float | None = None
    map_uri: str | None = None
    segments: list[ParsedSegment] = field(default_factory=list)
    skipped: int = 0
    preload_hint: str | None = None
    rendition_reports: list[dict[str, str]] = field(default_factory=list)
    ended: bool = False

    @property
    def complete(self) -> list[ParsedSegment]:
        return [s for s in self.segments if s.uri is not None]

    @property
    def last_msn(self) -> int:
        return self.segments[-1].msn if self.segments else self.media_sequence - 1


def parse_media_playlist(text: str) -> ParsedPlaylist:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines, "an empty playlist"
    assert lines[0] == "#EXTM3U", "a playlist starts with #EXTM3U"
    playlist = ParsedPlaylist()
    current: ParsedSegment | None = None
    pending_duration: float | None = None
    msn = None
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-VERSION":
            playlist.version = int(value)
        elif tag == "#EXT-X-TARGETDURATION":
            playlist.target_duration = int(value)
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            playlist.media_sequence = int(value)
            msn = int(value)
        elif tag == "#EXT-X-SERVER-CONTROL":
            playlist.server_control = attributes(value)
        elif tag == "#EXT-X-PART-INF":
            playlist.part_target = float(attributes(value)["PART-TARGET"])
        elif tag == "#EXT-X-MAP":
            playlist.map_uri = attributes(value)["URI"]
        elif tag == "#EXT-X-SKIP":
            playlist.skipped = int(attributes(value)["SKIPPED-SEGMENTS"])
            msn = (msn or 0) + playlist.skipped
        elif tag == "#EXT-X-PART":
            attrs = attributes(value)
            if current is None:
                assert msn is not None, "EXT-X-PART before EXT-X-MEDIA-SEQUENCE"
                current = ParsedSegment(msn)
            current.parts.append(
                ParsedPart(
                    float(attrs["DURATION"]), attrs["URI"], attrs.get("INDEPENDENT") == "YES"
                )
            )
        elif tag == "#EXT-X-GAP":
            if current is None:
                assert msn is not None
                current = ParsedSegment(msn)
            current.gap = True
        elif tag == "#EXTINF":
            pending_duration = float(value.split(",")[0])
        elif tag == "#EXT-X-PRELOAD-HINT":
            playlist.preload_hint = attributes(value)["URI"]
        elif tag == "#EXT-X-RENDITION-REPORT":
            playlist.rendition_reports.append(attributes(value))
        elif tag == "#EXT-X-ENDLIST":
            playlist.ended = True
        elif not line.startswith("#"):
            assert pending_duration is not None, f"URI {line} without #EXTINF"
            assert msn is not None
            if current is None:
                current = ParsedSegment(msn)
            current.duration, current.uri = pending_duration, line
            playlist.segments.append(current)
            current, pending_duration, msn = None, None, msn + 1
    if current is not None:  # the segment being built: parts only
        playlist.segments.append(current)
    return playlist


def check_media_playlist(
    text: str,
    *,
    previous: ParsedPlaylist | None = None,
    fetch: Callable[[str], bool] | None = None,
    low_latency: bool = True,
) -> ParsedPlaylist:
    """Parses and checks one playlist; raises AssertionError naming the broken rule."""
    playlist = parse_media_playlist(text)
    target = playlist.target_duration
    assert target is not None, "EXT-X-TARGETDURATION is required"
    assert playlist.map_uri, "fMP4 needs EXT-X-MAP"
    for segment in playlist.complete:
        assert round(segment.duration or 0) <= target, (
            f"segment {segment.msn} lasts {segment.duration} s, over the target {target}"
        )
    if low_latency and not playlist.ended:
        control = playlist.server_control
        assert control.get("CAN-BLOCK-RELOAD") == "YES", "CAN-BLOCK-RELOAD=YES is required"
        part_target = playlist.part_target
        assert part_target, "EXT-X-PART-INF is required with parts"
        # The draft: PART-HOLD-BACK MUST be at least twice PART-TARGET (three times is a
        # SHOULD, which golive trades for latency: 2.5 by default, docs/architecture.md).
        assert float(control["PART-HOLD-BACK"]) >= 2 * part_target - 1e-6, "PART-HOLD-BACK < 2x"
        assert float(control["HOLD-BACK"]) >= 3 * target, "HOLD-BACK < 3x target"
        assert float(control["CAN-SKIP-UNTIL"]) >= 6 * target, "CAN-SKIP-UNTIL < 6x target"
        for segment in playlist.segments:
            for index, part in enumerate(segment.parts):
                assert part.duration <= part_target + 1e-3, (
                    f"part {segment.msn}.{index} lasts {part.duration} > {part_target}"
                )
                last_of_segment = index == len(segment.parts) - 1 and segment.uri is not None
                if not last_of_segment and index < len(segment.parts) - 1:
                    assert part.duration >= 0.85 * part_target - 1e-3, (
                        f"part {segment.msn}.{index} lasts {part.duration} < 85% of {part_target}"
                    )
            if segment.parts and segment.uri is not None:
                total = sum(p.duration for p in segment.parts)
                assert abs(total - (segment.duration or 0)) < 0.05, (
                    f"segment {segment.msn}: parts add to {total}, EXTINF says {segment.duration}"
                )
    msns = [segment.msn for segment in playlist.segments]
    assert msns == list(range(msns[0], msns[0] + len(msns))) if msns else True, "msn gap"
    if previous is not None:
        assert playlist.media_sequence >= previous.media_sequence, "media sequence went back"
        assert playlist.last_msn >= previous.last_msn, "the playlist lost segments at its end"
    if fetch is not None:
        uris = [playlist.map_uri] + [s.uri for s in playlist.complete if s.uri and not s.gap]
        uris += [p.uri for s in playlist.segments for p in s.parts]
        for uri in uris:
            assert fetch(uri), f"{uri} is listed but cannot be fetched"
    return playlist
