"""The LL-HLS origin: playlists and parts, async, with no ORM call on the hot path.

URLs (all under /live/<channel>/):
- ``master.m3u8``: the multivariant playlist of the channel's current broadcast (the one
  request that looks up which broadcast is live; short-lived, cached per process), listing
  the renditions described in the live index (`transcoder.renditions.Rendition`);
- ``<session>/<rendition>/index.m3u8``: the media playlist, with LL-HLS blocking reload
  (``_HLS_msn``, ``_HLS_part``) and delta updates (``_HLS_skip=YES``);
- ``<session>/<rendition>/init-<n>.mp4``, ``part-<msn>.<i>.m4s``, ``seg-<msn>.m4s``: from
  the live index (segments are listed by their durable URL once stored).

Every response is cacheable per full URL (query string included), so an edge cache
collapses identical requests from many viewers into one. Objects named by a session are
immutable; playlists live for a fraction of a part (blocking ones a little longer); errors
for as long as they stay true (delivery.responses). HEAD is answered wherever GET is.
While the live index or the database cannot be reached the answer is 503 + Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import Histogram

from transcoder.hls.playlist import (
    MediaPlaylist,
    Part,
    RenditionReport,
    Segment,
    render_media_playlist,
    render_multivariant,
    rendition_reports,
)
from transcoder.live_index import RenditionWindow
from transcoder.renditions import Rendition

from .live import BLOCK_TARGETS, live_index, part_hold_back_parts, stream_name
from .load import LOAD
from .responses import (
    CMAF,
    IMMUTABLE,
    M3U8,
    MOMENTARY,
    SETTLED,
    answers_503_while_down,
    error,
    response,
    unavailable,
)

P = ParamSpec("P")

# Parts of at most 1/3 s: a plain playlist is stale after one.
PLAYLIST_CACHE = "public, max-age=1"
# A blocking response names a part that exists; it stays a valid answer to its URL.
BLOCKING_CACHE = "public, max-age=6"
NOT_LIVE_CACHE = "public, max-age=2"
_MASTER_TTL = 2.0
_masters: dict[str, tuple[float, int | None]] = {}
# A broadcast's rendition list, per process: every media playlist request needs it for its
# rendition reports, and it changes when a rung starts or stops (or a segment's bit rate).
_RENDITIONS_TTL = 1.0
_renditions: dict[str, tuple[float, tuple[Rendition, ...]]] = {}
# Rendition reports may lag a rung by this much (well under a part): a player switching
# asks for a part at most one older than it could have.
_REPORTS_TTL = 0.1
_reports_cache: dict[tuple[str, str], tuple[float, tuple[RenditionReport, ...]]] = {}

# Per process, in prometheus_client's default registry (exported by /metrics). A blocking
# request (_HLS_msn) mostly waits for its part to exist: up to BLOCK_TARGETS target
# durations, hence the long buckets; a plain one should take a millisecond or so.
PLAYLIST_SECONDS = Histogram(
    "golive_playlist_response_seconds",
    "Time to answer a media playlist request, by whether it asked for a blocking reload.",
    ["blocking"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8),
)
# Bound once: the request path does no label lookup.
_BLOCKING_SECONDS = PLAYLIST_SECONDS.labels(blocking="yes")
_PLAIN_SECONDS = PLAYLIST_SECONDS.labels(blocking="no")


def _response(body: bytes | str, content_type: str, cache: str, status: int = 200) -> HttpResponse:
    return response(body, content_type, cache, status)


def _error(status: int, message: str, cache: str = MOMENTARY) -> HttpResponse:
    return error(status, message, cache)


def _checked(
    view: Callable[P, Coroutine[Any, Any, HttpResponse]],
) -> Callable[P, Coroutine[Any, Any, HttpResponse]]:
    """A rendition name the index refuses (ValueError) is simply not found."""

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        try:
            return await view(*args, **kwargs)
        except ValueError:
            return _error(404, "no such rendition", SETTLED)

    return wrapper


@require_safe
@answers_503_while_down
async def multivariant(request: HttpRequest, slug: str) -> HttpResponse:
    LOAD.count("master")
    session_id = await _current_broadcast(slug)
    renditions = () if session_id is None else await _renditions_of(stream_name(session_id))
    if session_id is None or not renditions:
        # Not live, or live but no rendition described yet (its first part is on its way).
        return _error(404, f"{slug} is not live", NOT_LIVE_CACHE)
    body = render_multivariant(renditions, prefix=f"{session_id}/")
    return _response(body, M3U8, PLAYLIST_CACHE)


async def _current_broadcast(slug: str) -> int | None:
    cached = _masters.get(slug)
    now = time.monotonic()
    if cached is not None and now - cached[0] < _MASTER_TTL:
        return cached[1]
    session_id = await sync_to_async(_lookup_broadcast)(slug)
    _masters[slug] = (now, session_id)
    return session_id


def _lookup_broadcast(slug: str) -> int | None:
    from streams.models import LiveSession

    found = LiveSession.objects.filter(channel__slug=slug, ended_at__isnull=True)
    return found.values_list("pk", flat=True).first()


async def _renditions_of(stream: str) -> tuple[Rendition, ...]:
    """The stream's described renditions, from the live index (what every origin process
    shares), read at most once per `_RENDITIONS_TTL` per process."""
    cached = _renditions.get(stream)
    now = time.monotonic()
    if cached is not None and now - cached[0] < _RENDITIONS_TTL:
        return cached[1]
    found = await live_index().renditions(stream)
    if len(_renditions) >= _RENDERED_MAX:
        del _renditions[next(iter(_renditions))]  # the oldest
    _renditions[stream] = (now, found)
    return found


async def _reports(stream: str, rendition: str) -> tuple[RenditionReport, ...]:
    """EXT-X-RENDITION-REPORTs for the other renditions of the stream (none while the
    source is the only one): where each one's newest part is, so a player switching to
    it asks for the right part at once. Shared for `_REPORTS_TTL` by every request of the
    rendition (the thousand viewers a new part wakes at once make one look)."""
    others = [r.name for r in await _renditions_of(stream) if r.name != rendition]
    if not others:
        return ()
    now = time.monotonic()
    cached = _reports_cache.get((stream, rendition))
    if cached is not None and now - cached[0] < _REPORTS_TTL:
        return cached[1]
    heads = []
    for name in others:
        window = await live_index().snapshot(stream, name)
        head = _head(window) if window is not None else None
        if head is not None:
            heads.append((name, *head))
    reports = rendition_reports(rendition, heads)
    if len(_reports_cache) >= _RENDERED_MAX:
        del _reports_cache[next(iter(_reports_cache))]  # the oldest
    _reports_cache[(stream, rendition)] = (now, reports)
    return reports


def _head(window: RenditionWindow) -> tuple[int, int | None] | None:
    """LAST-MSN and LAST-PART: the newest segment (the one being built counts) and its
    newest part, None when it has no part listed (a gap)."""
    position = window.position
    if position.head_msn >= 0 and position.head_msn >= position.completed_msn:
        return position.head_msn, position.head_index
    if position.completed_msn >= 0:
        return position.completed_msn, None
    return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise ValueError(value)
    return int(value)


@require_safe
@answers_503_while_down
@_checked
async def media_playlist(
    request: HttpRequest, slug: str, session: int, rendition: str
) -> HttpResponse:
    started = time.perf_counter()
    blocking = "_HLS_msn" in request.GET
    LOAD.count("blocking_playlist" if blocking else "playlist")
    try:
        return await _media_playlist(request, session, rendition)
    finally:
        timer = _BLOCKING_SECONDS if blocking else _PLAIN_SECONDS
        timer.observe(time.perf_counter() - started)


async def _media_playlist(request: HttpRequest, session: int, rendition: str) -> HttpResponse:
    try:
        msn = _int(request.GET.get("_HLS_msn"))
        part = _int(request.GET.get("_HLS_part"))
    except ValueError:
        return _error(400, "_HLS_msn and _HLS_part are whole numbers", SETTLED)
    if part is not None and msn is None:
        return _error(400, "_HLS_part needs _HLS_msn", SETTLED)
    skip = request.GET.get("_HLS_skip") in ("YES", "v2")
    index = live_index()
    stream = stream_name(session)
    try:
        window = await index.snapshot(stream, rendition)
    except ValueError:
        return _error(404, "no such rendition", SETTLED)
    if window is None:
        return _error(404, "no such broadcast", NOT_LIVE_CACHE)
    cache = PLAYLIST_CACHE
    if msn is not None and not window.has_part(msn, part) and not window.ended:
        refusal = _too_far_ahead(window, msn, part)
        if refusal:
            # True until the live edge catches up: shared for a second, not stored.
            return _error(400, refusal, MOMENTARY)
        limit = BLOCK_TARGETS * window.target_duration
        if not LOAD.hold():
            return _busy()
        try:
            arrived = await index.wait_for_part(stream, rendition, msn, part, timeout=limit)
        finally:
            LOAD.release()
        if not arrived:
            # A stalled stream, or a live index that went away during the wait: reading it
            # again tells them apart (an index that is down raises: 503 + Retry-After).
            await index.snapshot(stream, rendition)
            # The draft's answer to a request that cannot be satisfied in time; hls.js
            # retries the playlist after it. No Retry-After: the edge retries such 503s on
            # another origin, which would only wait as long again for the same part.
            return _error(503, "that part did not arrive in time", MOMENTARY)
        window = await index.snapshot(stream, rendition)
        if window is None:
            return _error(404, "the broadcast is gone")
        cache = BLOCKING_CACHE
    elif msn is not None:
        cache = BLOCKING_CACHE
    reports = await _reports(stream, rendition)
    body = _rendered(stream, rendition, window, request.GET.get("ll") != "0", skip, reports)
    return _response(body, M3U8, "public, max-age=5" if window.ended else cache)


def _busy() -> HttpResponse:
    """This process holds GOLIVE_ORIGIN_MAX_HELD requests already (delivery.load): try
    again in a second, here or (through the edge) on another origin."""
    return unavailable("this origin is busy: retry in a second", retry_after=1)


# Rendered playlists by window, per process: when a part lands, every request blocked on
# it wakes to the same window, and a thousand of them share one rendering.
_RENDERED: dict[tuple[object, ...], bytes] = {}
_RENDERED_MAX = 256


def _rendered(
    stream: str,
    rendition: str,
    window: RenditionWindow,
    low_latency: bool,
    skip: bool,
    reports: tuple[RenditionReport, ...] = (),
) -> bytes:
    # Equal versions mean equal windows; the rest of the key guards against a stream
    # whose index was removed and started again (its versions start again too).
    key = (
        stream, rendition, window.version, window.media_sequence, window.next_msn,
        len(window.parts), window.ended, low_latency, skip, reports,
    )
    body = _RENDERED.get(key)
    if body is None:
        body = render_media_playlist(
            _playlist(window, reports), low_latency=low_latency, skip=skip
        ).encode()
        if len(_RENDERED) >= _RENDERED_MAX:
            del _RENDERED[next(iter(_RENDERED))]  # the oldest
        _RENDERED[key] = body
    return body


def _too_far_ahead(window: RenditionWindow, msn: int, part: int | None) -> str | None:
    """The draft's 400 rules: more than two segments ahead, or parts beyond the limit."""
    last = window.segments[-1].msn if window.segments else (window.next_msn or 0) - 1
    if msn > last + 2:
        return f"_HLS_msn {msn} is too far ahead of {last}"
    if part is not None and window.next_msn is not None and msn == window.next_msn:
        # Advance Part Limit: 3 / PART-TARGET parts when PART-TARGET is under a second.
        limit = max(3, int(3 / window.part_target))
        if part > len(window.parts) - 1 + limit:
            return f"_HLS_part {part} is too far ahead"
    return None


def _playlist(
    window: RenditionWindow, reports: tuple[RenditionReport, ...] = ()
) -> MediaPlaylist:
    def part_uri(msn: int, index: int) -> str:
        return f"part-{msn}.{index}.m4s"

    segments = tuple(
        Segment(
            msn=s.msn,
            duration=s.duration,
            uri=s.url or f"seg-{s.msn}.m4s",
            program_date_time=s.program_date_time,
            parts=tuple(Part(p.duration, part_uri(p.msn, p.index), p.independent) for p in s.parts),
            gap=s.gap,
            discontinuity=s.discontinuity,
        )
        for s in window.segments
    )
    partial = tuple(Part(p.duration, part_uri(p.msn, p.index), p.independent) for p in window.parts)
    next_msn = window.next_msn
    preload = None
    if next_msn is not None and not window.ended:
        preload = part_uri(next_msn, len(window.parts))
    return MediaPlaylist(
        target_duration=window.target_duration,
        part_target=window.part_target,
        init_uri=window.init_url or f"init-{window.init_version}.mp4",
        segments=segments,
        partial=partial,
        partial_program_date_time=window.current_program_date_time,
        preload_uri=preload,
        ended=window.ended,
        discontinuity_sequence=window.discontinuity_sequence,
        media_sequence=window.media_sequence,
        rendition_reports=reports,
        # Rendition reports name the broadcast's other renditions: it has a ladder.
        part_hold_back_parts=part_hold_back_parts(ladder=bool(reports)),
    )


@require_safe
@answers_503_while_down
@_checked
async def init_segment(
    request: HttpRequest, slug: str, session: int, rendition: str, version: int
) -> HttpResponse:
    LOAD.count("init")
    data = await live_index().get_init(stream_name(session), rendition, version)
    if data is None:
        return _error(404, "no such init segment")
    return _response(data, CMAF, IMMUTABLE)


@require_safe
@answers_503_while_down
@_checked
async def part(
    request: HttpRequest, slug: str, session: int, rendition: str, msn: int, index: int
) -> HttpResponse:
    LOAD.count("part")
    live = live_index()
    stream = stream_name(session)
    data = await live.get_part(stream, rendition, msn, index)
    if data is None:
        # The preload hint names the next part before it exists: hold the request until
        # it does (at most a few parts' time), as the draft asks of a server.
        window = await live.snapshot(stream, rendition)
        hinted = window is not None and window.next_msn == msn and index <= len(window.parts) + 1
        if hinted:
            if not LOAD.hold():
                return _busy()
            try:
                arrived = await live.wait_for_part(stream, rendition, msn, index, timeout=3.0)
            finally:
                LOAD.release()
            if arrived:
                data = await live.get_part(stream, rendition, msn, index)
    if data is None:
        return _error(404, "no such part")
    return _response(data, CMAF, IMMUTABLE)


@require_safe
@answers_503_while_down
@_checked
async def segment(
    request: HttpRequest, slug: str, session: int, rendition: str, msn: int
) -> HttpResponse:
    LOAD.count("segment")
    data = await live_index().get_segment(stream_name(session), rendition, msn)
    if data is None:
        return _error(404, "no such segment")
    return _response(data, CMAF, IMMUTABLE)
