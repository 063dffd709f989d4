"""Fixtures the delivery tests share: the memory live index with one part, and the segment
store in both its backends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage

from delivery.segment_store import SegmentStore
from delivery.storage import SegmentS3Storage
from tests.support.origin import STREAM
from tests.support.services import create_bucket
from transcoder.live_index import PartRef


@pytest.fixture
def index(settings: Any) -> Any:
    """The embedded mode's memory live index, with a stream of one part (0.0)."""
    settings.REDIS_URL = ""
    from delivery.live import live_index

    live = live_index()

    async def start() -> None:
        await live.remove(STREAM)
        await live.set_init(STREAM, "source", b"init", 0.334, target_duration=2)
        await live.add_part(STREAM, "source", PartRef(0, 0, 0.334, True), b"p0")

    asyncio.run(start())
    yield live
    asyncio.run(live.remove(STREAM))


@pytest.fixture(params=["filesystem", "s3"])
def store(request, tmp_path) -> SegmentStore:
    """The contract's two stores: the local directory, and S3 (moto's server over HTTP)."""
    if request.param == "filesystem":
        storage = FileSystemStorage(location=tmp_path, base_url="/media/hls/", allow_overwrite=True)
        return SegmentStore(storage, sleep=lambda _: None)
    endpoint = request.getfixturevalue("s3_server")
    bucket = create_bucket(endpoint)
    storage = SegmentS3Storage(
        bucket_name=bucket,
        endpoint_url=endpoint,
        access_key="test",
        secret_key="test",
        region_name="us-east-1",
        addressing_style="path",
        querystring_auth=False,
        file_overwrite=True,
        default_acl=None,
    )
    return SegmentStore(storage, sleep=lambda _: None)
