"""Database calls made outside a request (the ingest, housekeeping loops, tasks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from math import inf
from typing import ParamSpec, TypeVar

from django.db import close_old_connections, connections

P = ParamSpec("P")
R = TypeVar("R")

# When this thread's last call through `database_call` returned (monotonic seconds).
_last_success = threading.local()


def database_call(function: Callable[P, R], *, trust_for: float = 0.0) -> Callable[P, R]:
    """``function``, dropping dead or expired connections before each call.

    A long-running process outside any request has no request_started signal to do it:
    without this a connection that died, or outlived CONN_MAX_AGE, fails the next call.
    The check is a round trip (CONN_HEALTH_CHECKS); with ``trust_for``, a thread whose
    last call returned less than that many seconds ago skips it: a burst of calls pays
    it once, and a connection that died within that moment fails one call (which makes
    the next one check).
    """

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if not _trusted(trust_for):
            close_old_connections()
        _last_success.at = -inf
        result = function(*args, **kwargs)
        _last_success.at = time.monotonic()
        return result

    return call


def _trusted(trust_for: float) -> bool:
    if time.monotonic() - getattr(_last_success, "at", -inf) >= trust_for:
        return False
    # An error the function caught (a lost connection among them) ends the trust too.
    return not any(c.errors_occurred for c in connections.all(initialized_only=True))
