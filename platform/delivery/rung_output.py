"""A rung's delivery, fed from a transcode session's threads: `LoopOutput`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from transcoder.cmaf.packager import InitInfo, PartInfo, SegmentInfo

from .pipeline import DeliveryOutput


class LoopOutput:
    """A rung's `PackagerOutput`, callable from any thread: each call is carried out on
    the event loop, in order, by the rung's `DeliveryOutput` (made there at the first
    call, as it needs the running loop). Once abandoned (a cluster session that lost its
    lease), calls are dropped. While held (`hold`, on the loop), calls wait, in order,
    for `release`: a session carrying on a rung after a reconnect waits so for the one
    before it to have delivered its last."""

    def __init__(self, loop: asyncio.AbstractEventLoop, make: Callable[[], DeliveryOutput]):
        self._loop = loop
        self._make = make
        self.output: DeliveryOutput | None = None
        self.abandoned = False
        self._held: list[tuple[str, tuple[Any, ...]]] | None = None

    def hold(self) -> None:
        if self._held is None:
            self._held = []

    def release(self) -> None:
        held, self._held = self._held, None
        for method, args in held or ():
            self._apply(method, args)

    def init(self, info: InitInfo, data: bytes) -> None:
        self._call("init", info, data)

    def part(self, info: PartInfo, data: bytes) -> None:
        self._call("part", info, data)

    def segment(self, info: SegmentInfo, data: bytes) -> None:
        self._call("segment", info, data)

    def end(self) -> None:
        self._call("end")

    def _call(self, method: str, *args: Any) -> None:
        if self.abandoned:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to do
            self._loop.call_soon_threadsafe(self._apply, method, args)

    def _apply(self, method: str, args: tuple[Any, ...]) -> None:
        if self.abandoned:
            return
        if self._held is not None:
            self._held.append((method, args))
            return
        if self.output is None:
            self.output = self._make()
        getattr(self.output, method)(*args)

    async def abandon(self) -> None:
        """Stops delivering now: nothing more reaches the index or the store."""
        self.abandoned = True
        output = self.output
        if output is not None:
            output.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await output.worker
            await output.lane.aclose()
