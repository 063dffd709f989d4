"""Just enough of an LL-HLS playlist reader for a virtual viewer: variants; the init
segment, the parts with their program-date-time, the preload hint and the next blocking
reload's directives. Identical bodies (what an edge hands thousands of viewers) are
parsed once per process."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str
    bandwidth: int


@dataclass(frozen=True, slots=True)
class PartEntry:
    msn: int
    index: int
    duration: float
    uri: str
    program_date_time: float | None  # seconds since the epoch, the part's first frame


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    target_duration: float
    part_target: float
    init_uri: str | None
    parts: tuple[PartEntry, ...]  # every part listed, oldest first
    next_msn: int  # the directives of the next blocking reload: the part after the last
    next_part: int
    hint_uri: str | None
    ended: bool
    by_uri: dict[str, PartEntry]


def _attributes(text: str) -> dict[str, str]:
    return {key: value.strip('"') for key, value in _ATTRIBUTE.findall(text)}


def _date(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_multivariant(text: str) -> list[Variant]:
    variants, pending = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = _attributes(line.split(":", 1)[1])
        elif line and not line.startswith("#") and pending is not None:
            bandwidth = pending.get("BANDWIDTH", "0")
            variants.append(Variant(line, int(bandwidth) if bandwidth.isdigit() else 0))
            pending = None
    return variants


def parse_media(text: str) -> MediaPlaylist:
    target = part_target = 0.0
    sequence = 0
    init = hint = None
    ended = False
    date: float | None = None  # of the next segment or part
    msn_offset = 0  # complete segments seen so far
    parts: list[PartEntry] = []
    index = 0  # within the current segment
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-TARGETDURATION":
            target = float(value)
        elif tag == "#EXT-X-PART-INF":
            part_target = float(_attributes(value).get("PART-TARGET", "0"))
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            sequence = int(value)
        elif tag == "#EXT-X-SKIP":
            msn_offset += int(_attributes(value).get("SKIPPED-SEGMENTS", "0"))
        elif tag == "#EXT-X-MAP":
            init = _attributes(value).get("URI")
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            date = _date(value)
        elif tag == "#EXT-X-PART":
            attributes = _attributes(value)
            duration = float(attributes.get("DURATION", "0"))
            parts.append(PartEntry(sequence + msn_offset, index, duration,
                                   attributes.get("URI", ""), date))
            index += 1
            if date is not None:
                date += duration
        elif tag == "#EXTINF":
            duration = float(value.split(",")[0])
            if index == 0 and date is not None:
                date += duration  # a segment listed without its parts
            elif index and date is not None and parts:
                # Parts' durations may not add up to EXTINF exactly: realign on it.
                first = parts[-index].program_date_time
                date = first + duration if first is not None else date
            msn_offset += 1
            index = 0
        elif tag == "#EXT-X-PRELOAD-HINT":
            attributes = _attributes(value)
            if attributes.get("TYPE") == "PART":
                hint = attributes.get("URI")
        elif tag == "#EXT-X-ENDLIST":
            ended = True
    return MediaPlaylist(
        target, part_target, init, tuple(parts), sequence + msn_offset, index, hint, ended,
        {part.uri: part for part in parts},
    )


class PlaylistCache:
    """Parsed playlists by body: a thousand viewers woken by the same answer parse it once."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._media: dict[bytes, MediaPlaylist] = {}

    def media(self, body: bytes) -> MediaPlaylist:
        parsed = self._media.get(body)
        if parsed is None:
            parsed = parse_media(body.decode("utf-8", "replace"))
            if len(self._media) >= self._size:
                del self._media[next(iter(self._media))]
            self._media[body] = parsed
        return parsed
