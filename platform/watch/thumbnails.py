"""Directory thumbnails, until the transcoder makes its own: every `EVERY` seconds, each
live broadcast of this ingest node gets a JPEG of its newest keyframe, decoded with PyAV
from its init segment and its latest stored segment, written to the segment store.

`make_thumbnail(session_id)` is the one function the transcoder replaces: it returns
JPEG bytes (or None) and knows nothing of where they go. Decoding runs in a worker
thread, never on the event loop; a keyframe is decoded alone (non-key frames skipped).
"""

from __future__ import annotations

import asyncio
import io
import logging
from fractions import Fraction

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone

log = logging.getLogger(__name__)

EVERY = 10.0
WIDTH = 320
HEIGHT = 180


def keyframe_jpeg(
    init: bytes, segment: bytes, width: int = WIDTH, height: int = HEIGHT
) -> bytes | None:
    """The first keyframe of ``segment`` (fMP4, with its ``init``) as a JPEG of at most
    ``width`` by ``height``, aspect kept. None when there is no decodable video frame.
    Blocking (decode and encode): call it from a thread."""
    import av

    with av.open(io.BytesIO(init + segment), format="mp4") as container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        stream.thread_type = "NONE"  # one frame: threads only cost start-up
        frame = next(iter(container.decode(stream)), None)
        if frame is None:
            return None
        scale = min(width / frame.width, height / frame.height, 1.0)
        size = (
            max(2, int(frame.width * scale) // 2 * 2), max(2, int(frame.height * scale) // 2 * 2)
        )
        picture = frame.reformat(width=size[0], height=size[1], format="yuvj420p")
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height = size
        encoder.pix_fmt = "yuvj420p"
        encoder.time_base = Fraction(1, 25)
        encoder.options = {"qscale": "5"}
        picture.pts = 0
        packets = [*encoder.encode(picture), *encoder.encode(None)]
        return b"".join(bytes(packet) for packet in packets) or None


async def make_thumbnail(session_id: int) -> tuple[bytes, int] | None:
    """JPEG bytes of the broadcast's newest stored segment's keyframe, with that
    segment's msn; None while nothing is stored yet."""
    from delivery.live import SOURCE, live_index, segment_store, store_path, stream_name

    index = live_index()
    stream = stream_name(session_id)
    window = await index.snapshot(stream, SOURCE)
    if window is None:
        return None
    stored = [segment for segment in window.segments if segment.url]
    if not stored:
        return None
    msn = stored[-1].msn
    init = await index.get_init(stream, SOURCE)
    if init is None:
        return None
    store = segment_store()
    segment = await asyncio.to_thread(store.read, store_path(session_id, SOURCE, f"seg-{msn}.m4s"))
    jpeg = await asyncio.to_thread(keyframe_jpeg, init, segment)
    return (jpeg, msn) if jpeg else None


def _live_sessions(node: str) -> list[int]:
    from streams.models import LiveSession

    close_old_connections()
    return list(
        LiveSession.objects.filter(ingest_node=node, ended_at__isnull=True,
                                   disconnected_at__isnull=True).values_list("pk", flat=True)
    )


def _record(session_id: int, path: str) -> str | None:
    """Points the broadcast at its new thumbnail; returns the previous one's path."""
    from .models import Thumbnail

    close_old_connections()
    previous = (
        Thumbnail.objects.filter(session_id=session_id).values_list("path", flat=True).first()
    )
    Thumbnail.objects.update_or_create(
        session_id=session_id, defaults={"path": path, "updated_at": timezone.now()}
    )
    return previous


async def refresh(session_id: int) -> str | None:
    """Makes and stores one thumbnail; returns its path in the segment store."""
    from delivery.live import recording_prefix, segment_store

    made = await make_thumbnail(session_id)
    if made is None:
        return None
    jpeg, msn = made
    path = f"{recording_prefix(session_id)}/thumb-{msn}.jpg"
    store = segment_store()
    await asyncio.to_thread(store.save, path, jpeg)
    previous = await sync_to_async(_record, thread_sensitive=False)(session_id, path)
    if previous and previous != path:
        try:
            await asyncio.to_thread(store.storage.delete, previous)
        except Exception:
            log.warning("could not delete the old thumbnail %s", previous)
    return path


async def run_periodically(node: str, every: float = EVERY) -> None:
    """This ingest node's broadcasts, every ``every`` seconds, one at a time."""
    while True:
        await asyncio.sleep(every)
        try:
            sessions = await sync_to_async(_live_sessions, thread_sensitive=False)(node)
            for session_id in sessions:
                try:
                    await refresh(session_id)
                except Exception:
                    log.exception("thumbnail of session %d failed", session_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("thumbnails failed; retrying")
