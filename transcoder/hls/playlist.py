"""LL-HLS playlists (draft-pantos-hls-rfc8216bis, protocol version 9+), rendered from values.

Pure: no I/O, no clocks. The origin builds a `MediaPlaylist` from the live index and
renders it per request; the same values render the non-LL form (no parts, no server
control) for players that do not speak LL-HLS, and the VOD form once a stream has ended.
All durations are in seconds; program-date-time is Unix seconds (UTC).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from transcoder.renditions import Rendition

# PART-HOLD-BACK as a multiple of PART-TARGET: the draft requires at least 2 and
# recommends 3; hls.js aims at it, so it sets the viewer's latency (~1 s at 1/3 s parts).
PART_HOLD_BACK_PARTS = 3.0
# HOLD-BACK (for players without parts) must be at least 3 target durations.
HOLD_BACK_TARGETS = 3.0
# Delta updates may skip what is older than this many target durations (>= 6 required).
SKIP_TARGETS = 6.0
# Parts stay listed only within this many target durations of the playlist's end (the draft:
# EXT-X-PART tags SHOULD be removed once more than three target durations from the end;
# hls-parser's strict mode enforces it); older segments are listed whole.
PART_LISTED_TARGETS = 3.0


@dataclass(frozen=True, slots=True)
class Part:
    duration: float
    uri: str
    independent: bool = False


@dataclass(frozen=True, slots=True)
class Segment:
    msn: int
    duration: float
    uri: str
    program_date_time: float
    parts: tuple[Part, ...] = ()
    gap: bool = False
    discontinuity: bool = False


@dataclass(frozen=True, slots=True)
class RenditionReport:
    uri: str
    last_msn: int
    last_part: int | None


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    """A rendition's window. ``segments`` are complete and stored; ``partial`` holds the
    parts of the segment being built (its msn is the last segment's + 1); ``preload_uri``
    names the next part, not yet available (EXT-X-PRELOAD-HINT)."""

    target_duration: int
    part_target: float
    init_uri: str
    segments: tuple[Segment, ...] = ()
    partial: tuple[Part, ...] = ()
    partial_program_date_time: float | None = None
    preload_uri: str | None = None
    ended: bool = False
    discontinuity_sequence: int = 0
    rendition_reports: tuple[RenditionReport, ...] = ()
    media_sequence: int = field(default=0)
    # PART-HOLD-BACK in parts (the draft: at least 2, SHOULD be 3 or more).
    part_hold_back_parts: float = PART_HOLD_BACK_PARTS

    @property
    def next_msn(self) -> int:
        """The msn of the segment being built (parts in ``partial``)."""
        if self.segments:
            return self.segments[-1].msn + 1
        return self.media_sequence

    @property
    def last_part(self) -> tuple[int, int] | None:
        """(msn, part index) of the newest part, or None."""
        if self.partial:
            return self.next_msn, len(self.partial) - 1
        if self.segments and self.segments[-1].parts:
            return self.segments[-1].msn, len(self.segments[-1].parts) - 1
        return None

    def has_part(self, msn: int, part: int | None) -> bool:
        """Whether the playlist already shows segment ``msn`` (and its part ``part``)."""
        if self.segments and msn <= self.segments[-1].msn:
            return True
        if msn == self.next_msn and part is not None:
            return part < len(self.partial)
        return False


def target_duration_for(durations: list[float], floor: int = 1) -> int:
    """EXT-X-TARGETDURATION: every EXTINF rounded to the nearest integer must fit."""
    return max([floor, *(math.floor(d + 0.5) for d in durations)])


def _number(value: float) -> str:
    text = f"{value:.5f}".rstrip("0").rstrip(".")
    return text or "0"


def _date(unix_seconds: float) -> str:
    moment = datetime.fromtimestamp(unix_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_media_playlist(
    playlist: MediaPlaylist, *, low_latency: bool = True, skip: bool = False
) -> str:
    """The media playlist text.

    ``low_latency`` False gives an ordinary live playlist of whole segments (no parts,
    no server control) for players that do not speak LL-HLS. ``skip`` renders a delta
    update (EXT-X-SKIP) when the playlist is long enough for one.
    """
    segments = playlist.segments
    target = playlist.target_duration
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{9 if low_latency else 7}",
        f"#EXT-X-TARGETDURATION:{target}",
    ]
    if low_latency and not playlist.ended:
        part_hold_back = playlist.part_hold_back_parts * playlist.part_target
        lines.append(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"
            f",CAN-SKIP-UNTIL={_number(SKIP_TARGETS * target)}"
            f",PART-HOLD-BACK={_number(part_hold_back)}"
            f",HOLD-BACK={_number(HOLD_BACK_TARGETS * target)}"
        )
    if low_latency:
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={_number(playlist.part_target)}")
    first_msn = segments[0].msn if segments else playlist.next_msn
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first_msn}")
    if playlist.discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{playlist.discontinuity_sequence}")
    lines.append(f'#EXT-X-MAP:URI="{playlist.init_uri}"')

    listed = list(segments)
    skipped = 0
    if low_latency and skip and not playlist.ended:
        horizon = SKIP_TARGETS * target
        age = 0.0
        keep_from = len(listed)
        for index in range(len(listed) - 1, -1, -1):
            age += listed[index].duration
            keep_from = index
            if age >= horizon:
                break
        skipped = keep_from
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
            listed = listed[skipped:]

    parts_from = _parts_listed_from(listed, playlist) if low_latency else len(listed)
    for index, segment in enumerate(listed):
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if index == 0 or segment.discontinuity or segment.gap or listed[index - 1].gap:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(segment.program_date_time)}")
        if index >= parts_from:
            lines.extend(_part_line(part) for part in segment.parts)
        if segment.gap:
            lines.append("#EXT-X-GAP")
        lines.append(f"#EXTINF:{_number(segment.duration)},")
        lines.append(segment.uri)

    if low_latency and not playlist.ended:
        if playlist.partial and not listed and playlist.partial_program_date_time is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(playlist.partial_program_date_time)}")
        lines.extend(_part_line(part) for part in playlist.partial)
        if playlist.preload_uri:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{playlist.preload_uri}"')
        for report in playlist.rendition_reports:
            last_part = "" if report.last_part is None else f",LAST-PART={report.last_part}"
            lines.append(
                f'#EXT-X-RENDITION-REPORT:URI="{report.uri}",LAST-MSN={report.last_msn}{last_part}'
            )
    if playlist.ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _part_line(part: Part) -> str:
    independent = ",INDEPENDENT=YES" if part.independent else ""
    return f'#EXT-X-PART:DURATION={_number(part.duration)},URI="{part.uri}"{independent}'


def _parts_listed_from(segments: list[Segment], playlist: MediaPlaylist) -> int:
    """Index of the first segment whose parts are listed: all of them within the last
    three target durations, counted from the playlist's end (the partial segment
    included), and in no more than the last three segments, the one being built (its
    parts or its preload hint) counted as one, as hls-parser reads the rule."""
    horizon = PART_LISTED_TARGETS * playlist.target_duration
    building = not playlist.ended and bool(playlist.partial or playlist.preload_uri)
    age = 0.0 if playlist.ended else sum(part.duration for part in playlist.partial)
    allowed = int(PART_LISTED_TARGETS) - building
    index = len(segments)
    while index > 0 and allowed > 0 and age + segments[index - 1].duration < horizon:
        index -= 1
        allowed -= 1
        age += segments[index].duration
    return index


def media_playlist_uri(rendition: str, prefix: str = "") -> str:
    """Where a rendition's media playlist is, relative to the multivariant playlist's
    ``prefix`` (its sibling renditions are at ``../<name>/index.m3u8`` from each other)."""
    return f"{prefix}{rendition}/index.m3u8"


def render_multivariant(renditions: Iterable[Rendition], prefix: str = "") -> str:
    """The multivariant playlist of a broadcast's renditions, highest bandwidth first
    (players start from the top), each at `media_playlist_uri`. NAME carries the
    rendition's name, which hls.js shows when a level has no height."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rendition in sorted(renditions, key=lambda r: (-r.bandwidth, r.name)):
        attributes = [f"BANDWIDTH={rendition.bandwidth}"]
        if rendition.average_bandwidth:
            attributes.append(f"AVERAGE-BANDWIDTH={rendition.average_bandwidth}")
        attributes.append(f'CODECS="{rendition.codecs}"')
        if rendition.width and rendition.height:
            attributes.append(f"RESOLUTION={rendition.width}x{rendition.height}")
        if rendition.frame_rate:
            attributes.append(f"FRAME-RATE={rendition.frame_rate:.3f}")
        attributes.append(f'NAME="{rendition.name}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(media_playlist_uri(rendition.name, prefix))
    return "\n".join(lines) + "\n"


def rendition_reports(
    current: str, heads: Iterable[tuple[str, int, int | None]]
) -> tuple[RenditionReport, ...]:
    """EXT-X-RENDITION-REPORT values for the media playlist of rendition ``current``: one
    per other rendition, from its (name, last msn, last part) head, by name."""
    return tuple(
        RenditionReport(media_playlist_uri(name, "../"), last_msn, last_part)
        for name, last_msn, last_part in sorted(heads)
        if name != current
    )
