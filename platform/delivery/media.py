"""Serves the local segment store (embedded mode); with S3, viewers fetch from the bucket
or the CDN and this view is never reached."""

from __future__ import annotations

import asyncio

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.utils._os import safe_join
from django.views.decorators.http import require_GET

from .segment_store import IMMUTABLE, segment_storage
from .storage import content_type


@require_GET
async def serve_segment_file(request: HttpRequest, name: str) -> HttpResponse:
    storage = segment_storage()
    location = getattr(storage, "location", None)
    if location is None:
        raise Http404("segments are not stored locally")
    try:
        path = safe_join(location, name)
    except Exception:  # SuspiciousFileOperation: a path that leaves the store
        raise Http404("no such file") from None
    try:
        handle = await asyncio.to_thread(open, path, "rb")
    except OSError:
        raise Http404("no such file") from None
    response = FileResponse(handle, content_type=content_type(name))
    # Playlists written at the end of a broadcast (VOD) never change either.
    response["Cache-Control"] = IMMUTABLE
    response["Access-Control-Allow-Origin"] = "*"
    return response
