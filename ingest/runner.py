"""How an ingest process runs its event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main`` on uvloop when it is installed (a publisher's encoder writes each
    RTMP chunk on its own, so the ingest wakes for every few kilobytes and the event loop's
    own overhead dominates its CPU time; uvloop's is several times lower), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
