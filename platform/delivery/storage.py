"""Storage backends for segments, with the immutable caching header on every object."""

from __future__ import annotations

from typing import Any

from storages.backends.s3 import S3Storage

from .segment_store import IMMUTABLE


class SegmentS3Storage(S3Storage):
    """S3 with ``Cache-Control`` and a content type on each segment object."""

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        parameters = dict(super().get_object_parameters(name))
        parameters["CacheControl"] = IMMUTABLE
        parameters["ContentType"] = content_type(name)
        return parameters


def content_type(name: str) -> str:
    if name.endswith(".m3u8"):
        return "application/vnd.apple.mpegurl"
    if name.endswith(".m4s"):
        return "video/iso.segment"
    if name.endswith(".mp4"):
        return "video/mp4"
    if name.endswith(".jpg"):
        return "image/jpeg"
    return "application/octet-stream"
