"""The live index in one process (embedded mode): dicts, and asyncio futures for waiters.

State sits behind one `threading.Lock` so that a writer on another thread (a transcoder
worker running its own event loop) is safe; waiters are futures of whichever loop waited,
woken through that loop. Waking costs one `set_result` per waiter, and a snapshot is built
once per version and shared by every reader of that version.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from transcoder.live_index.model import (
    DEFAULT_TTL_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    MAX_SEGMENT_PARTS,
    WHOLE_SEGMENT,
    OrderError,
    PartRef,
    Position,
    RenditionWindow,
    SegmentRef,
    StreamEndedError,
    UnknownRenditionError,
    check_names,
    check_part,
    check_segment,
    check_stream,
    segments_to_trim,
)
from transcoder.renditions import Rendition

_Waiters = dict[tuple[int, int], set["asyncio.Future[bool]"]]


@dataclass(slots=True, eq=False)
class _Rendition:
    init: bytes
    init_version: int
    init_url: str | None
    part_target: float
    target_duration: int
    touched: float
    version: int
    previous_init: bytes | None = None
    segments: deque[SegmentRef] = field(default_factory=deque)
    parts: list[PartRef] = field(default_factory=list)
    data: dict[tuple[int, int], bytes] = field(default_factory=dict)
    next_msn: int | None = None
    current_program_date_time: float | None = None
    discontinuity_sequence: int = 0
    head: tuple[int, int] = (-1, -1)
    ended: bool = False
    window: RenditionWindow | None = None  # built on demand, dropped on every change
    description: Rendition | None = None

    def position(self) -> Position:
        return Position(
            self.version,
            self.head[0],
            self.head[1],
            self.segments[-1].msn if self.segments else -1,
            self.ended,
        )

    def build_window(self) -> RenditionWindow:
        segments = tuple(self.segments)
        current_pdt = self.current_program_date_time
        if current_pdt is None and segments:
            current_pdt = segments[-1].program_date_time + segments[-1].duration
        # The first listed segment's msn; with none yet, the one being built.
        media_sequence = segments[0].msn if segments else self.next_msn or 0
        return RenditionWindow(
            version=self.version,
            init_version=self.init_version,
            init_url=self.init_url,
            part_target=self.part_target,
            target_duration=self.target_duration,
            media_sequence=media_sequence,
            discontinuity_sequence=self.discontinuity_sequence,
            segments=segments,
            parts=tuple(self.parts),
            next_msn=self.next_msn,
            current_program_date_time=current_pdt,
            ended=self.ended,
        )


@dataclass(slots=True, eq=False)
class _Stream:
    touched: float
    ended: bool = False
    renditions: dict[str, _Rendition] = field(default_factory=dict)


class MemoryLiveIndex:
    """`LiveIndex` in memory. ``window_seconds`` of complete segments are kept (plus the
    current segment's parts); a rendition (or stream) not written for ``ttl_seconds``
    disappears, like the Redis keys of a crashed ingest. ``clock`` is monotonic seconds."""

    def __init__(
        self,
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_seconds <= 0 or ttl_seconds <= 0:
            raise ValueError("window_seconds and ttl_seconds must be > 0")
        self.window_seconds = window_seconds
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        # Keyed apart from the state: a viewer may wait for a rendition not created yet.
        self._waiters: dict[tuple[str, str], _Waiters] = {}
        # One counter for the whole index, so a re-created rendition never repeats a version.
        self._versions = itertools.count(1)
        self._swept_at = clock()

    # -- writes ---------------------------------------------------------------------------

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
        check_names(stream, rendition)
        if not part_target > 0 or target_duration < 1:
            raise ValueError("part_target must be > 0 and target_duration >= 1")
        data = bytes(data)
        with self._lock:
            now = self._clock()
            self._sweep(now)
            state = self._find_stream(stream, now)
            if state is not None and state.ended:
                raise StreamEndedError(f"stream {stream} has ended")
            if state is None:
                state = self._streams[stream] = _Stream(touched=now)
            current = self._find(state, rendition, now)
            if current is None:
                current = state.renditions[rendition] = _Rendition(
                    init=data,
                    init_version=1,
                    init_url=url,
                    part_target=part_target,
                    target_duration=target_duration,
                    touched=now,
                    version=0,
                )
            else:
                if current.init != data:
                    current.previous_init = current.init
                    current.init = data
                    current.init_version += 1
                    current.init_url = None
                if url is not None:
                    current.init_url = url
                current.part_target = part_target
                current.target_duration = max(current.target_duration, target_duration)
            self._changed(state, current, now, stream, rendition)
            return current.init_version

    async def describe(self, stream: str, description: Rendition) -> None:
        check_names(stream, description.name)
        with self._lock:
            now = self._clock()
            state, current = self._writable(stream, description.name, now)
            current.description = description
            current.touched = state.touched = now

    async def add_part(
        self,
        stream: str,
        rendition: str,
        part: PartRef,
        data: bytes,
        *,
        program_date_time: float | None = None,
    ) -> None:
        check_names(stream, rendition)
        check_part(part)
        # A copy: the caller's buffer (often a memoryview) is reused for the next part.
        data = bytes(data)
        with self._lock:
            now = self._clock()
            state, current = self._writable(stream, rendition, now)
            next_msn = current.next_msn if current.next_msn is not None else part.msn
            count = len(current.parts)
            if part.msn < next_msn or (part.msn == next_msn and part.index < count):
                return  # already published (or older): a retried write
            if part.msn != next_msn or part.index != count:
                raise OrderError(
                    f"part {part.msn}.{part.index} of {stream}/{rendition} is not the next"
                    f" one ({next_msn}.{count})"
                )
            if count >= MAX_SEGMENT_PARTS:
                raise OrderError(f"segment {part.msn} has {count} parts: complete it first")
            current.next_msn = next_msn
            current.parts.append(part)
            current.data[(part.msn, part.index)] = data
            if part.index == 0 and program_date_time is not None:
                current.current_program_date_time = program_date_time
            current.head = (part.msn, part.index)
            due = self._changed(state, current, now, stream, rendition)
        _wake(due, True)

    async def complete_segment(self, stream: str, rendition: str, segment: SegmentRef) -> None:
        check_names(stream, rendition)
        check_segment(segment.msn, segment.duration, segment.program_date_time)
        self._complete(stream, rendition, segment)

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
        check_names(stream, rendition)
        check_segment(msn, duration, program_date_time)
        self._complete(
            stream,
            rendition,
            SegmentRef(msn, duration, program_date_time, gap=True, discontinuity=discontinuity),
        )

    async def mark_stored(self, stream: str, rendition: str, msn: int, url: str) -> None:
        check_names(stream, rendition)
        if not url:
            raise ValueError("a stored segment needs a URL")
        with self._lock:
            now = self._clock()
            state = self._find_stream(stream, now)
            current = None if state is None else self._find(state, rendition, now)
            if state is None or current is None:
                raise UnknownRenditionError(f"no rendition {stream}/{rendition}")
            if not current.segments or msn > current.segments[-1].msn:
                raise OrderError(f"segment {msn} of {stream}/{rendition} is not complete")
            due = self._set_url(state, current, msn, url, now, stream, rendition)
        _wake(due, True)

    async def end(self, stream: str) -> None:
        check_stream(stream)
        due: list[asyncio.Future[bool]] = []
        with self._lock:
            now = self._clock()
            state = self._find_stream(stream, now)
            if state is None:
                # Remember the end, so a late set_init cannot revive the stream.
                state = self._streams[stream] = _Stream(touched=now)
            state.ended = True
            for rendition, current in list(state.renditions.items()):
                if self._find(state, rendition, now) is not None and not current.ended:
                    current.ended = True
                    due += self._changed(state, current, now, stream, rendition)
            state.touched = now
        _wake(due, True)

    async def remove(self, stream: str) -> None:
        check_stream(stream)
        due: list[asyncio.Future[bool]] = []
        with self._lock:
            state = self._streams.pop(stream, None)
            for rendition in state.renditions if state is not None else ():
                for futures in self._waiters.pop((stream, rendition), {}).values():
                    due += futures
        _wake(due, False)

    # -- reads ----------------------------------------------------------------------------

    async def wait_for_part(
        self,
        stream: str,
        rendition: str,
        msn: int,
        index: int | None,
        timeout: float,  # noqa: ASYNC109 -- a deadline per call is the contract
    ) -> bool:
        check_names(stream, rendition)
        key = (msn, WHOLE_SEGMENT if index is None else index)
        loop = asyncio.get_running_loop()
        with self._lock:
            current = self._lookup(stream, rendition)
            if current is not None and current.position().satisfies(msn, index):
                return True
            if timeout <= 0:
                return False
            future: asyncio.Future[bool] = loop.create_future()
            waiting = self._waiters.setdefault((stream, rendition), {})
            waiting.setdefault(key, set()).add(future)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get((stream, rendition), {})
                futures = waiting.get(key)
                if futures is not None:
                    futures.discard(future)
                    if not futures:
                        del waiting[key]
                if not waiting:
                    self._waiters.pop((stream, rendition), None)

    async def snapshot(self, stream: str, rendition: str) -> RenditionWindow | None:
        check_names(stream, rendition)
        with self._lock:
            current = self._lookup(stream, rendition)
            if current is None:
                return None
            if current.window is None:
                current.window = current.build_window()
            return current.window

    async def renditions(self, stream: str) -> tuple[Rendition, ...]:
        check_stream(stream)
        with self._lock:
            now = self._clock()
            state = self._find_stream(stream, now)
            if state is None:
                return ()
            found = [self._find(state, name, now) for name in sorted(state.renditions)]
        return tuple(r.description for r in found if r is not None and r.description)

    async def get_part(self, stream: str, rendition: str, msn: int, index: int) -> bytes | None:
        check_names(stream, rendition)
        with self._lock:
            current = self._lookup(stream, rendition)
            return None if current is None else current.data.get((msn, index))

    async def get_segment(self, stream: str, rendition: str, msn: int) -> bytes | None:
        check_names(stream, rendition)
        with self._lock:
            current = self._lookup(stream, rendition)
            if current is None or not current.segments:
                return None
            position = msn - current.segments[0].msn
            if not 0 <= position < len(current.segments):
                return None
            segment = current.segments[position]
            chunks = [current.data.get((msn, part.index)) for part in segment.parts]
        if not chunks or any(chunk is None for chunk in chunks):
            return None
        return b"".join(chunk for chunk in chunks if chunk is not None)

    async def get_init(
        self, stream: str, rendition: str, version: int | None = None
    ) -> bytes | None:
        check_names(stream, rendition)
        with self._lock:
            current = self._lookup(stream, rendition)
            if current is None:
                return None
            if version is None or version == current.init_version:
                return current.init
            if version == current.init_version - 1:
                return current.previous_init
            return None

    async def aclose(self) -> None:
        due: list[asyncio.Future[bool]] = []
        with self._lock:
            for waiting in self._waiters.values():
                for futures in waiting.values():
                    due += futures
            self._waiters.clear()
        _wake(due, False)

    # -- internals (called with the lock held) --------------------------------------------

    def _complete(self, stream: str, rendition: str, segment: SegmentRef) -> None:
        with self._lock:
            due = self._complete_locked(stream, rendition, segment, self._clock())
        _wake(due, True)

    def _complete_locked(
        self, stream: str, rendition: str, segment: SegmentRef, now: float
    ) -> list[asyncio.Future[bool]]:
        state = self._find_stream(stream, now)
        current = None if state is None else self._find(state, rendition, now)
        if state is None or current is None:
            raise UnknownRenditionError(f"no rendition {stream}/{rendition}")
        if current.segments and segment.msn <= current.segments[-1].msn:
            if segment.url is None or segment.gap:
                return []
            return self._set_url(state, current, segment.msn, segment.url, now, stream, rendition)
        if state.ended or current.ended:
            raise StreamEndedError(f"stream {stream} has ended")
        if current.next_msn is not None and segment.msn != current.next_msn:
            raise OrderError(
                f"segment {segment.msn} of {stream}/{rendition} is not the current one"
                f" ({current.next_msn}): mark the ones in between as gaps"
            )
        parts = tuple(current.parts)
        if not segment.gap and segment.parts and len(segment.parts) != len(parts):
            raise OrderError(
                f"segment {segment.msn} names {len(segment.parts)} parts,"
                f" {len(parts)} were published"
            )
        if segment.gap:
            for part in parts:
                current.data.pop((part.msn, part.index), None)
            parts = ()
        current.segments.append(
            SegmentRef(
                msn=segment.msn,
                duration=segment.duration,
                program_date_time=segment.program_date_time,
                parts=parts,
                url=None if segment.gap else segment.url,
                gap=segment.gap,
                discontinuity=segment.discontinuity,
            )
        )
        current.parts = []
        current.next_msn = segment.msn + 1
        current.current_program_date_time = None
        # EXT-X-TARGETDURATION must cover every EXTINF rounded to the nearest second.
        current.target_duration = max(current.target_duration, int(segment.duration + 0.5))
        self._trim(current)
        return self._changed(state, current, now, stream, rendition)

    def _set_url(
        self,
        state: _Stream,
        current: _Rendition,
        msn: int,
        url: str,
        now: float,
        stream: str,
        rendition: str,
    ) -> list[asyncio.Future[bool]]:
        if not current.segments or msn < current.segments[0].msn:
            return []  # trimmed already: nobody lists it any more
        position = msn - current.segments[0].msn
        segment = current.segments[position]
        if segment.gap or segment.url == url:
            return []
        current.segments[position] = SegmentRef(
            segment.msn,
            segment.duration,
            segment.program_date_time,
            segment.parts,
            url,
            segment.gap,
            segment.discontinuity,
        )
        return self._changed(state, current, now, stream, rendition)

    def _trim(self, current: _Rendition) -> None:
        durations = [segment.duration for segment in current.segments]
        for _ in range(segments_to_trim(durations, self.window_seconds)):
            old = current.segments.popleft()
            if old.discontinuity:
                current.discontinuity_sequence += 1
            for part in old.parts:
                current.data.pop((part.msn, part.index), None)

    def _changed(
        self,
        state: _Stream,
        current: _Rendition,
        now: float,
        stream: str,
        rendition: str,
    ) -> list[asyncio.Future[bool]]:
        """Bumps the version and returns the waiters the new position releases."""
        current.version = next(self._versions)
        current.window = None
        current.touched = state.touched = now
        waiting = self._waiters.get((stream, rendition))
        if not waiting:
            return []
        position = current.position()
        due: list[asyncio.Future[bool]] = []
        for key in [key for key in waiting if position.satisfies(*key)]:
            due += waiting.pop(key)
        return due

    def _writable(self, stream: str, rendition: str, now: float) -> tuple[_Stream, _Rendition]:
        self._sweep(now)
        state = self._find_stream(stream, now)
        current = None if state is None else self._find(state, rendition, now)
        if state is None or current is None:
            raise UnknownRenditionError(f"no rendition {stream}/{rendition}: set_init first")
        if state.ended or current.ended:
            raise StreamEndedError(f"stream {stream} has ended")
        return state, current

    def _lookup(self, stream: str, rendition: str) -> _Rendition | None:
        now = self._clock()
        state = self._find_stream(stream, now)
        return None if state is None else self._find(state, rendition, now)

    def _find_stream(self, stream: str, now: float) -> _Stream | None:
        state = self._streams.get(stream)
        if state is not None and now - state.touched > self.ttl_seconds:
            del self._streams[stream]
            return None
        return state

    def _find(self, state: _Stream, rendition: str, now: float) -> _Rendition | None:
        current = state.renditions.get(rendition)
        if current is not None and now - current.touched > self.ttl_seconds:
            del state.renditions[rendition]
            return None
        return current

    def _sweep(self, now: float) -> None:
        # Expired streams are also dropped lazily when looked up; this catches the ones
        # nobody looks at any more, at a cost of one pass per quarter TTL.
        if now - self._swept_at < self.ttl_seconds / 4:
            return
        self._swept_at = now
        for stream in list(self._streams):
            state = self._find_stream(stream, now)
            if state is not None:
                for rendition in list(state.renditions):
                    self._find(state, rendition, now)


def _settle(futures: Iterable[asyncio.Future[bool]], outcome: bool) -> None:
    for future in futures:
        if not future.done():
            future.set_result(outcome)


def _wake(futures: list[asyncio.Future[bool]], outcome: bool) -> None:
    """Resolves each future on its own loop: directly on the running one, through one
    `call_soon_threadsafe` per other loop (a writer thread waking the origin's waiters)."""
    if not futures:
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    others: dict[asyncio.AbstractEventLoop, list[asyncio.Future[bool]]] = {}
    for future in futures:
        loop = future.get_loop()
        if loop is running:
            _settle((future,), outcome)
        else:
            others.setdefault(loop, []).append(future)
    for loop, batch in others.items():
        # A closed loop raises RuntimeError: nobody is waiting on it any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, batch, outcome)
