"""One contract, two segment stores: the local directory and S3 (moto's server over HTTP)."""

from __future__ import annotations

import pytest
import requests
from django.core.files.storage import FileSystemStorage

from delivery.segment_store import IMMUTABLE, SegmentStore, SegmentStoreError
from delivery.storage import SegmentS3Storage
from tests.support.services import create_bucket


def test_a_saved_segment_reads_back_byte_for_byte(store) -> None:
    data = bytes(range(256)) * 4000
    url = store.save("live/7/source/seg-00001.m4s", data)
    assert url.endswith("live/7/source/seg-00001.m4s")
    assert store.exists("live/7/source/seg-00001.m4s")
    assert store.read("live/7/source/seg-00001.m4s") == data


def test_saving_the_same_name_again_overwrites_instead_of_renaming(store) -> None:
    store.save("live/7/source/init-1.mp4", b"first")
    url = store.save("live/7/source/init-1.mp4", b"second")
    assert url.endswith("live/7/source/init-1.mp4")
    assert store.read("live/7/source/init-1.mp4") == b"second"


def test_deleting_a_tree_removes_everything_under_it_and_nothing_else(store) -> None:
    for msn in range(5):
        store.save(f"live/8/source/seg-{msn:05}.m4s", b"x")
    store.save("live/8/720p/seg-00000.m4s", b"x")
    store.save("live/9/source/seg-00000.m4s", b"keep")
    assert store.delete_tree("live/8") == 6
    assert not store.exists("live/8/source/seg-00000.m4s")
    assert store.read("live/9/source/seg-00000.m4s") == b"keep"


def test_s3_segments_are_fetched_over_http_with_immutable_caching(request) -> None:
    endpoint = request.getfixturevalue("s3_server")
    bucket = create_bucket(endpoint)
    store = SegmentStore(
        SegmentS3Storage(
            bucket_name=bucket,
            endpoint_url=endpoint,
            access_key="test",
            secret_key="test",
            region_name="us-east-1",
            addressing_style="path",
            querystring_auth=False,
            file_overwrite=True,
            # Segments are public media: readable by anyone (S3_DEFAULT_ACL or a bucket policy).
            default_acl="public-read",
        )
    )
    url = store.save("live/1/source/seg-00003.m4s", b"\x00\x00\x00\x08moof")
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"\x00\x00\x00\x08moof"
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.headers["Content-Type"] == "video/mp4"  # as the origin serves it


class FlakyStorage(FileSystemStorage):
    def __init__(self, failures: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.failures = failures

    def _save(self, name, content):
        if self.failures:
            self.failures -= 1
            raise OSError("connection reset by object store")
        return super()._save(name, content)


def test_transient_errors_are_retried_with_backoff(tmp_path) -> None:
    slept: list[float] = []
    store = SegmentStore(
        FlakyStorage(2, location=tmp_path, allow_overwrite=True),
        retry_delays=(0.1, 0.3, 1.0),
        sleep=slept.append,
    )
    store.save("a/seg.m4s", b"data")
    assert slept == [0.1, 0.3]
    assert store.read("a/seg.m4s") == b"data"


def test_a_store_that_keeps_failing_raises_and_lists_nothing(tmp_path) -> None:
    store = SegmentStore(
        FlakyStorage(99, location=tmp_path, allow_overwrite=True),
        retry_delays=(0.1, 0.2),
        sleep=lambda _: None,
    )
    with pytest.raises(SegmentStoreError, match="could not store"):
        store.save("a/seg.m4s", b"data")
    assert not store.exists("a/seg.m4s")
