"""Segment uploads off the live path: one lane per rendition of a broadcast.

A lane takes a segment the moment the packager cuts it and never blocks the caller: the
bytes wait in memory (up to ``memory_bytes``), then in a spool directory on local disk (up
to ``spool_bytes``), while one task stores them in order, one at a time, retrying each
until the store takes it. Parts meanwhile go to the live index as usual, so an object store
that is away for a minute costs viewers nothing and the recording nothing; only an outage
longer than the spool can hold drops segments (each one logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .segment_store import SegmentStore

log = logging.getLogger(__name__)

# Between attempts at the same object: quick at first (a blip), then every 2 s, so a store
# that comes back is written to again within about two seconds.
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
# Threads that store for every lane of the process. Their own, not the loop's default
# executor: django-storages keeps one S3 client per thread, and building one costs most of
# a second, so a few long-lived threads pay it once instead of each upload paying it on
# whichever fresh thread it lands.
UPLOAD_THREADS = 8
_executor: ThreadPoolExecutor | None = None


def _uploads() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="segment-upload")
    return _executor


class UploadDropped(Exception):
    """The lane was full (memory and spool): this object will not be stored."""


@dataclass(slots=True, eq=False)
class _Upload:
    name: str
    size: int
    data: bytes | None
    spooled: Path | None
    stored: asyncio.Future[str]


class UploadLane:
    """Stores objects in submission order, retrying each until it is stored.

    ``submit`` is called from the lane's event loop and returns at once with a future of
    the object's URL; the future fails with UploadDropped when the object could not even
    be queued. ``sleep`` is injectable for tests. Blocking store calls run in threads.
    """

    def __init__(
        self,
        store: SegmentStore,
        *,
        spool_dir: Path,
        memory_bytes: int,
        spool_bytes: int,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.spool_dir = spool_dir
        self.memory_bytes = memory_bytes
        self.spool_bytes = spool_bytes
        self._delays = retry_delays
        self._sleep = sleep
        self._pending: deque[_Upload] = deque()
        self._wake = asyncio.Event()
        self._in_memory = 0
        self._on_disk = 0
        self._failing = False
        self.dropped = 0
        self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def idle(self) -> bool:
        """Nothing waiting and the store took the last attempt: a new object starts now."""
        return not self._pending and not self._failing

    @property
    def backlog(self) -> int:
        """Objects submitted and not yet stored."""
        return len(self._pending)

    def submit(self, name: str, data: bytes) -> asyncio.Future[str]:
        stored: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        size = len(data)
        if self._in_memory + size <= self.memory_bytes:
            upload = _Upload(name, size, data, None, stored)
            self._in_memory += size
        elif self._on_disk + size <= self.spool_bytes:
            # A synchronous write of one segment (~1 MB, into the page cache) every few
            # seconds, and only while the store is away.
            path = self.spool_dir / name.replace("/", "_")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            upload = _Upload(name, size, None, path, stored)
            self._on_disk += size
        else:
            self.dropped += 1
            log.error("upload lane full (%d bytes in memory, %d spooled): %s dropped",
                      self._in_memory, self._on_disk, name)
            stored.set_exception(UploadDropped(name))
            return stored
        self._pending.append(upload)
        self._wake.set()
        return stored

    async def drain(self) -> None:
        """Waits until every object submitted so far is stored (or was dropped)."""
        futures = [upload.stored for upload in self._pending]
        if futures:
            await asyncio.gather(*(asyncio.shield(f) for f in futures), return_exceptions=True)

    async def aclose(self) -> None:
        """Stops the lane; objects not stored yet stay unstored (their futures cancelled)."""
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        for upload in self._pending:
            upload.stored.cancel()
        self._pending.clear()
        shutil.rmtree(self.spool_dir, ignore_errors=True)

    async def _run(self) -> None:
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            upload = self._pending[0]
            url = await self._store(upload)
            self._pending.popleft()
            self._release(upload)
            if not upload.stored.done():
                upload.stored.set_result(url)

    async def _store(self, upload: _Upload) -> str:
        attempt = 0
        while True:
            try:
                url = await asyncio.get_running_loop().run_in_executor(
                    _uploads(), self._save, upload
                )
            except Exception as error:  # each backend raises its own (OSError, botocore …)
                if not self._failing or attempt % 10 == 0:
                    log.warning("storing %s failed (attempt %d), retrying: %s",
                                upload.name, attempt + 1, error)
                self._failing = True
                await self._sleep(self._delays[min(attempt, len(self._delays) - 1)])
                attempt += 1
                continue
            if self._failing:
                log.warning("segment store is back: %s stored after %d attempt(s)",
                            upload.name, attempt + 1)
            self._failing = False
            return url

    def _save(self, upload: _Upload) -> str:
        data = upload.data
        if data is None:
            assert upload.spooled is not None
            data = upload.spooled.read_bytes()
        return self.store.save_once(upload.name, data)

    def _release(self, upload: _Upload) -> None:
        if upload.spooled is not None:
            upload.spooled.unlink(missing_ok=True)
            self._on_disk -= upload.size
        else:
            self._in_memory -= upload.size
