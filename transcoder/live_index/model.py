"""The live index's values and its contract, shared by the memory and Redis implementations.

Units: durations and ``part_target`` are seconds (float); ``program_date_time`` is Unix
seconds (UTC wall clock at which the ingest received the segment's first frame);
``target_duration`` is whole seconds, as EXT-X-TARGETDURATION wants it. ``msn`` is the media
sequence number of a segment, ``index`` the position of a part within its segment (0-based).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from transcoder.renditions import Rendition

# Enough for the ~30 s an LL-HLS playlist shows plus delta updates (CAN-SKIP-UNTIL is
# 6 target durations, 12 s at OBS's 2 s keyframes), without holding minutes of video.
DEFAULT_WINDOW_SECONDS = 30.0
# How long a rendition outlives its last write: long enough for viewers to see the ended
# playlist, short enough that a crashed ingest leaves nothing behind for long.
DEFAULT_TTL_SECONDS = 120.0
# A segment ends on a keyframe; a publisher that never sends one would otherwise grow the
# current segment (which trimming never touches) without bound. 1,000 parts of 1/3 s is
# more than 5 minutes, far beyond any sane keyframe interval.
MAX_SEGMENT_PARTS = 1000

# Names end up in Redis keys (with a {hash tag}), pub/sub channels and URLs.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Waiting for a whole segment is waiting for a part index no segment reaches.
WHOLE_SEGMENT = 1 << 62


class LiveIndexError(Exception):
    """Base of the errors the live index raises on purpose."""


class OrderError(LiveIndexError, ValueError):
    """A write out of order: a part that is not the next one, a segment completed before
    the previous one, a segment longer than MAX_SEGMENT_PARTS parts."""


class UnknownRenditionError(LiveIndexError, LookupError):
    """A write to a rendition that has no init segment yet (call `set_init` first)."""


class FencedError(LiveIndexError):
    """A fenced write (a writer holding a lease, see `RedisLiveIndex.fenced`) whose lease
    has lapsed or passed to another writer: it must stop writing."""


class StreamEndedError(LiveIndexError):
    """New media for a stream that has ended. An ended playlist never changes again,
    except that segments already listed may still get their durable URL."""


@dataclass(frozen=True, slots=True)
class PartRef:
    """One LL-HLS part (EXT-X-PART): ``index`` within segment ``msn``."""

    msn: int
    index: int
    duration: float
    independent: bool = False


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A complete segment. ``url`` is its durable URL once the segment store has it, None
    before. ``parts`` are the parts published for it (the index fills them in)."""

    msn: int
    duration: float
    program_date_time: float
    parts: tuple[PartRef, ...] = ()
    url: str | None = None
    gap: bool = False
    discontinuity: bool = False


@dataclass(frozen=True, slots=True)
class Position:
    """How far a rendition has got, enough to answer a blocking reload without the rest of
    the window. ``head_msn``/``head_index`` name the newest part (-1 when none),
    ``completed_msn`` the newest complete segment (-1 when none)."""

    version: int
    head_msn: int = -1
    head_index: int = -1
    completed_msn: int = -1
    ended: bool = False

    def satisfies(self, msn: int, index: int | None) -> bool:
        """Whether a wait for part ``index`` of segment ``msn`` (the whole segment when
        ``index`` is None) is over: that part or a later one exists, the segment is
        complete (a gap completes it too), or the rendition has ended."""
        if self.ended or self.completed_msn >= msn:
            return True
        wanted = WHOLE_SEGMENT if index is None else index
        return (self.head_msn, self.head_index) >= (msn, wanted)


@dataclass(frozen=True, slots=True)
class RenditionWindow:
    """Everything a media playlist is built from, as one consistent snapshot.

    ``segments`` are the complete segments still in the window, oldest first, with
    contiguous msns from ``media_sequence``; ``parts`` are the parts so far of segment
    ``next_msn``, the one being built. A segment whose ``url`` is None (and that is not a
    gap) is complete but not yet in the segment store: its parts, and `get_segment` (their
    concatenation), stay fetchable from the index while it is in the window, so a playlist
    may name it with an origin-served URI; its durable URL must wait for the store.

    ``init_url`` is the init segment's durable URL when it was given, else None: serve
    `get_init` under a URI that carries ``init_version`` (it changes when the init does).
    ``version`` grows with every change, so equal versions mean equal windows.
    ``discontinuity_sequence`` counts EXT-X-DISCONTINUITY tags trimmed off the front.
    ``current_program_date_time`` is when segment ``next_msn`` started (None if unknown).
    ``next_msn`` is None until the first part or segment.
    """

    version: int
    init_version: int
    init_url: str | None
    part_target: float
    target_duration: int
    media_sequence: int
    discontinuity_sequence: int
    segments: tuple[SegmentRef, ...]
    parts: tuple[PartRef, ...]
    next_msn: int | None
    current_program_date_time: float | None
    ended: bool

    @property
    def last_part(self) -> PartRef | None:
        """The newest part still listed, in the current segment or the last complete one."""
        if self.parts:
            return self.parts[-1]
        if self.segments and self.segments[-1].parts:
            return self.segments[-1].parts[-1]
        return None

    @property
    def position(self) -> Position:
        # A gap drops its parts, so the newest part may be older than the newest
        # segment; `satisfies` looks at completed_msn first for that reason.
        head = self.last_part
        return Position(
            version=self.version,
            head_msn=-1 if head is None else head.msn,
            head_index=-1 if head is None else head.index,
            completed_msn=self.segments[-1].msn if self.segments else -1,
            ended=self.ended,
        )

    def has_part(self, msn: int, index: int | None) -> bool:
        """`Position.satisfies`, on this snapshot (what `wait_for_part` waits for)."""
        return self.position.satisfies(msn, index)


def check_names(stream: str, rendition: str) -> None:
    """Raises ValueError unless both are 1-128 of ``A-Z a-z 0-9 _ . -``, starting with a
    letter or digit: they become Redis keys, channel names and URL path segments."""
    for what, name in (("stream", stream), ("rendition", rendition)):
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{what} name {name!r} is not 1-128 of [A-Za-z0-9_.-]")


def check_stream(stream: str) -> None:
    check_names(stream, "x")


def check_part(part: PartRef) -> None:
    """Raises ValueError for a part no playlist could list."""
    if part.msn < 0 or part.index < 0:
        raise ValueError(f"part {part.msn}.{part.index}: msn and index must be >= 0")
    if not (math.isfinite(part.duration) and part.duration >= 0):
        raise ValueError(f"part {part.msn}.{part.index}: bad duration {part.duration!r}")


def check_segment(msn: int, duration: float, program_date_time: float) -> None:
    if msn < 0:
        raise ValueError(f"segment {msn}: msn must be >= 0")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"segment {msn}: bad duration {duration!r}")
    if not math.isfinite(program_date_time):
        raise ValueError(f"segment {msn}: bad program_date_time {program_date_time!r}")


def segments_to_trim(durations: list[float], window_seconds: float) -> int:
    """How many of the oldest segments to drop so the rest span at most ``window_seconds``
    (the newest is always kept). Sums left to right, exactly as the Redis script does, so
    both implementations trim at the same boundary."""
    total = 0.0
    for duration in durations:
        total += duration
    dropped = 0
    while len(durations) - dropped > 1 and total > window_seconds:
        total -= durations[dropped]
        dropped += 1
    return dropped


class LiveIndex(Protocol):
    """The hot store between the packager (writer) and the LL-HLS origin (readers).

    Keyed by ``stream`` (a session or channel id) and ``rendition`` (`SOURCE`, "720p" …),
    both checked by `check_names` (ValueError). One writer per rendition at a time; writes
    are idempotent where they say so, so a retried task does no harm. Readers may be in
    other processes (Redis). Every method is a coroutine for the event loop that created
    the index (the memory index also accepts writes from other threads' loops).
    """

    async def set_init(
        self,
        stream: str,
        rendition: str,
        data: bytes,
        part_target: float,
        *,
        target_duration: int,
        url: str | None = None,
    ) -> int:
        """Creates the rendition or replaces its init segment; returns the init version.

        The same bytes again keep the version (idempotent; ``url`` and ``part_target`` are
        updated); new bytes bump it. ``target_duration`` (whole seconds) never decreases.
        Raises StreamEndedError after `end`."""
        ...

    async def describe(self, stream: str, description: Rendition) -> None:
        """Keeps ``description`` beside the init segment of rendition ``description.name``
        (replacing the one before: idempotent), for `renditions` in any process. It lives
        and expires with the rendition. Raises UnknownRenditionError before `set_init`,
        StreamEndedError after `end`."""
        ...

    async def add_part(
        self,
        stream: str,
        rendition: str,
        part: PartRef,
        data: bytes,
        *,
        program_date_time: float | None = None,
    ) -> None:
        """Publishes a part and wakes its waiters. Parts come in order: index 0, 1, … of
        the current segment (the first part of a rendition may have any msn). A part
        already published is ignored (idempotent). ``program_date_time`` (Unix s), given
        with index 0, dates the segment before it is complete.

        Raises UnknownRenditionError before `set_init`, OrderError when it is not the next
        part, StreamEndedError after `end`."""
        ...

    async def complete_segment(self, stream: str, rendition: str, segment: SegmentRef) -> None:
        """Completes segment ``segment.msn`` (the current one) after its last part; its
        parts are the ones published (``segment.parts`` may be empty, else must have as
        many). Call it with ``url`` None as soon as the segment is complete, then
        `mark_stored`; completing an already complete segment only sets a ``url`` it
        brings (idempotent). Trims the window. Raises OrderError for any other msn
        (`mark_gap` skipped ones), UnknownRenditionError, StreamEndedError."""
        ...

    async def mark_stored(self, stream: str, rendition: str, msn: int, url: str) -> None:
        """Records the durable URL of complete segment ``msn``. Idempotent; a segment
        already trimmed, or a gap, is ignored; allowed after `end`. Raises OrderError if the
        segment is not complete yet, UnknownRenditionError."""
        ...

    async def mark_gap(
        self,
        stream: str,
        rendition: str,
        msn: int,
        duration: float,
        program_date_time: float,
        *,
        discontinuity: bool = False,
    ) -> None:
        """Completes segment ``msn`` (the current one) as missing (EXT-X-GAP), dropping
        any parts it had. Idempotent once complete. Raises like `complete_segment`."""
        ...

    async def wait_for_part(
        self,
        stream: str,
        rendition: str,
        msn: int,
        index: int | None,
        timeout: float,  # noqa: ASYNC109 -- a deadline per call is the contract
    ) -> bool:
        """Waits until part ``index`` of segment ``msn`` (the whole segment when ``index``
        is None) exists, or a later part does, or segment ``msn`` is complete, or the
        rendition has ended: then True, at once if that is already so. False after
        ``timeout`` seconds, or as soon as the stream is removed. Never polls."""
        ...

    async def snapshot(self, stream: str, rendition: str) -> RenditionWindow | None:
        """The rendition's window, or None if there is no such rendition (yet)."""
        ...

    async def renditions(self, stream: str) -> tuple[Rendition, ...]:
        """The descriptions of the stream's renditions that have one, ordered by name;
        empty for an unknown stream. Still listed after `end`, gone after `remove`."""
        ...

    async def get_part(self, stream: str, rendition: str, msn: int, index: int) -> bytes | None:
        """A part's bytes while it is in the window, else None."""
        ...

    async def get_segment(self, stream: str, rendition: str, msn: int) -> bytes | None:
        """The concatenation of a complete segment's parts (CMAF chunks, so a valid
        segment) while they are in the window; None for gaps, segments without parts and
        anything not complete or trimmed."""
        ...

    async def get_init(
        self, stream: str, rendition: str, version: int | None = None
    ) -> bytes | None:
        """The init segment (the current one, or ``version`` if it is the current or the
        previous one), else None."""
        ...

    async def end(self, stream: str) -> None:
        """Marks every rendition of the stream ended: waiters wake, snapshots say ended,
        new media is refused. Idempotent."""
        ...

    async def remove(self, stream: str) -> None:
        """Forgets the stream now: waiters wake with False, snapshots say None. Idempotent."""
        ...

    async def aclose(self) -> None:
        """Releases connections and background tasks; waiters still waiting get False."""
        ...
