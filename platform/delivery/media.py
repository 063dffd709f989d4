"""Serves the local segment store (embedded mode); with S3, viewers fetch from the bucket
or the CDN and this view is never reached."""

from __future__ import annotations

import asyncio

from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase
from django.utils._os import safe_join
from django.views.decorators.http import require_safe

from .responses import IMMUTABLE, MOMENTARY, SETTLED, content_type, error
from .segment_store import segment_storage


@require_safe
async def serve_segment_file(request: HttpRequest, name: str) -> HttpResponseBase:
    storage = segment_storage()
    location = getattr(storage, "location", None)
    if location is None:
        return error(404, "segments are not stored locally", SETTLED)
    try:
        path = safe_join(location, name)
    except Exception:  # SuspiciousFileOperation: a path that leaves the store
        return error(404, "no such file", SETTLED)
    try:
        handle = await asyncio.to_thread(open, path, "rb")
    except OSError:
        # A segment still on its way to the store, or a VOD playlist not yet written.
        return error(404, "no such file", MOMENTARY)
    response = FileResponse(handle, content_type=content_type(name))
    # Playlists written at the end of a broadcast (VOD) never change either.
    response["Cache-Control"] = IMMUTABLE
    response["Access-Control-Allow-Origin"] = "*"
    return response


async def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other URL under /live/ or /media/: the origin's own short 404, never a
    framework page (with DEBUG on, Django's lists the URLconf)."""
    return error(404, "not found", SETTLED)
