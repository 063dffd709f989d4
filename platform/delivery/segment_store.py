"""The durable segment store: complete segments, init segments, VOD playlists.

Django's storage API under the alias ``segments`` (``settings.STORAGES``): a local directory
by default, django-storages' S3 backend when ``S3_BUCKET`` is set. Objects are written once
under names that never change meaning, so they are served with a year-long immutable
``Cache-Control`` and a CDN may keep them forever. Writes are retried with backoff; a
caller lists a segment in a playlist only after `save` has returned its URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from .responses import IMMUTABLE  # noqa: F401  (the one constant; the store's users import it here)

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.1, 0.3, 1.0, 3.0)


class SegmentStoreError(OSError):
    """A write that still failed after every retry."""


def segment_storage() -> Storage:
    return storages["segments"]


class SegmentStore:
    def __init__(
        self,
        storage: Storage | None = None,
        *,
        retry_delays: Iterable[float] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.storage = storage if storage is not None else segment_storage()
        self._retry_delays = tuple(retry_delays)
        self._sleep = sleep

    def save(self, name: str, data: bytes) -> str:
        """Stores ``data`` under exactly ``name`` (overwriting: writes are idempotent) and
        returns its public URL. Blocking: call it from a worker thread, never the event loop.

        Raises SegmentStoreError when every attempt failed.
        """
        for attempt, delay in enumerate((*self._retry_delays, None)):
            try:
                stored = self.storage.save(name, ContentFile(data))
            except Exception as error:  # each backend raises its own (OSError, botocore …)
                if delay is None:
                    raise SegmentStoreError(f"could not store {name}: {error}") from error
                log.warning("storing %s failed (attempt %d): %s", name, attempt + 1, error)
                self._sleep(delay)
                continue
            if stored != name:
                raise SegmentStoreError(f"storage renamed {name} to {stored}: overwrite is off")
            return self.url(name)
        raise AssertionError("unreachable")

    def save_once(self, name: str, data: bytes) -> str:
        """One attempt at `save`, for callers that retry by themselves (the upload lanes).
        Raises whatever the backend raised."""
        stored = self.storage.save(name, ContentFile(data))
        if stored != name:
            raise SegmentStoreError(f"storage renamed {name} to {stored}: overwrite is off")
        return self.url(name)

    def listdir(self, folder: str) -> list[str]:
        """The names of the files directly in ``folder`` (none when it does not exist)."""
        try:
            return list(self.storage.listdir(folder)[1])
        except FileNotFoundError:
            return []

    def url(self, name: str) -> str:
        return self.storage.url(name)

    def read(self, name: str) -> bytes:
        with self.storage.open(name, "rb") as file:
            return bytes(file.read())

    def exists(self, name: str) -> bool:
        return self.storage.exists(name)

    def delete_tree(self, prefix: str) -> int:
        """Deletes every object under ``prefix`` (a folder name). Returns how many."""
        count = 0
        folders = [prefix.rstrip("/")]
        while folders:
            folder = folders.pop()
            subfolders, files = self.storage.listdir(folder)
            for file in files:
                self.storage.delete(f"{folder}/{file}")
                count += 1
            folders.extend(f"{folder}/{sub}" for sub in subfolders)
        return count
