"""Storage backends for segments, with the immutable caching header on every object."""

from __future__ import annotations

from typing import Any

from storages.backends.s3 import S3Storage

from .responses import IMMUTABLE, content_type


class SegmentS3Storage(S3Storage):
    """S3 with ``Cache-Control`` and a content type on each segment object, the same the
    origin sends for what it serves itself."""

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        parameters = dict(super().get_object_parameters(name))
        parameters["CacheControl"] = IMMUTABLE
        parameters["ContentType"] = content_type(name)
        return parameters
