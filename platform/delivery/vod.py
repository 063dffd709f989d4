"""A broadcast's VOD playlist: written by its delivery when it ends, or rebuilt from the
segment store when its ingest node died before it could (`finalise_recordings`, called by
whoever reaps the node's lease, or by the node's next start).

Either way the playlist lists every segment the store holds, so nothing stored is lost to
the recording whatever happened to the live index or the node.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from transcoder.hls.playlist import (
    MediaPlaylist,
    Segment,
    render_media_playlist,
    target_duration_for,
)

from .live import SOURCE, part_target, store_path
from .segment_store import SegmentStore

log = logging.getLogger(__name__)

VOD_NAME = "vod.m3u8"
_SEGMENT = re.compile(r"seg-(\d+)\.m4s")
_INIT = re.compile(r"init-(\d+)\.mp4")


@dataclass(frozen=True, slots=True)
class StoredSegment:
    """A segment in the store: ``duration`` in seconds, ``program_date_time`` Unix s."""

    msn: int
    duration: float
    program_date_time: float
    url: str
    discontinuity: bool = False


def render_vod(init_url: str, segments: Sequence[StoredSegment]) -> bytes:
    """The ended, non-LL playlist of ``segments`` (sorted by msn here)."""
    ordered = sorted(segments, key=lambda s: s.msn)
    playlist = MediaPlaylist(
        target_duration=target_duration_for([s.duration for s in ordered]),
        part_target=part_target(),
        init_uri=init_url,
        segments=tuple(
            Segment(s.msn, s.duration, s.url, s.program_date_time, discontinuity=s.discontinuity)
            for s in ordered
        ),
        ended=True,
        media_sequence=ordered[0].msn,
    )
    return render_media_playlist(playlist, low_latency=False).encode()


def save_vod(
    store: SegmentStore, session_id: int, rendition: str, init_url: str,
    segments: Sequence[StoredSegment],
) -> str:
    """Stores the VOD playlist (blocking; retried by the store) and returns its path."""
    path = store_path(session_id, rendition, VOD_NAME)
    store.save(path, render_vod(init_url, segments))
    return path


def finalise_recordings(session_ids: Iterable[int], *, store: SegmentStore | None = None) -> int:
    """Gives each of these ended sessions that has none a VOD playlist built from what the
    segment store holds, and records it (`streams.recordings.record_vod`). Blocking;
    idempotent; a session whose store cannot be read is logged and left for the next
    call. Returns how many got one."""
    from streams.recordings import record_vod, sessions_without_vod

    due = sessions_without_vod(list(session_ids))
    if not due:
        return 0
    store = store or SegmentStore()
    done = 0
    for session_id, started_at in due.items():
        try:
            path = rebuild_vod(store, session_id, started_at)
        except Exception:
            log.exception("could not rebuild the VOD of session %d from the store", session_id)
            continue
        if path is not None and record_vod(session_id, path):
            done += 1
            log.warning("session %d: VOD rebuilt from the segment store (%s)", session_id, path)
    return done


def rebuild_vod(
    store: SegmentStore, session_id: int, started_at: float, rendition: str = SOURCE,
    *, replace: bool = False,
) -> str | None:
    """Writes the VOD playlist of one rendition from its stored ``seg-<msn>.m4s`` objects
    (durations read from the media itself) and returns its path; None when nothing of it
    was stored. An existing playlist (the delivery finished after all) is kept, unless
    ``replace`` (it lists only part of what was stored: a restarted transcode session's).
    Dates are ``started_at`` (Unix s) plus media time: the ingest's wall clock died with
    it."""
    folder = store_path(session_id, rendition, "").rstrip("/")
    names = store.listdir(folder)
    if VOD_NAME in names and not replace:
        return f"{folder}/{VOD_NAME}"
    msns = sorted(int(m.group(1)) for n in names if (m := _SEGMENT.fullmatch(n)))
    inits = sorted(int(m.group(1)) for n in names if (m := _INIT.fullmatch(n)))
    if not msns or not inits:
        return None
    # The newest init, as the delivery's own VOD does: a publish changes its init only
    # when its sequence headers change, which OBS does not do mid-broadcast.
    init_name = f"{folder}/init-{inits[-1]}.mp4"
    init = store.read(init_name)
    segments = []
    for msn in msns:
        name = f"{folder}/seg-{msn}.m4s"
        start, duration = media_span(init, store.read(name))
        segments.append(StoredSegment(msn, duration, start, store.url(name)))
    first = segments[0].program_date_time
    segments = [
        StoredSegment(s.msn, s.duration, started_at + s.program_date_time - first, s.url)
        for s in segments
    ]
    return save_vod(store, session_id, rendition, store.url(init_name), segments)


def media_span(init: bytes, segment: bytes) -> tuple[float, float]:
    """(start, duration) in seconds of a CMAF segment's video (else first) track, read by
    demuxing it behind its init segment."""
    import av

    with av.open(io.BytesIO(init + segment), format="mp4") as container:
        streams = container.streams.video or container.streams
        stream = streams[0]
        base = stream.time_base
        first: int | None = None
        end = 0
        for packet in container.demux(stream):
            if packet.pts is None or base is None:
                continue
            first = packet.pts if first is None else min(first, packet.pts)
            end = max(end, packet.pts + (packet.duration or 0))
    if first is None or base is None:
        raise ValueError("no timed media in the segment")
    return float(first * base), float((end - first) * base)
