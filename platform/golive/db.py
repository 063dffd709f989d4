"""Database calls made outside a request (the ingest, housekeeping loops, tasks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def database_call(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, dropping dead or expired connections before each call.

    A long-running process outside any request has no request_started signal to do it:
    without this a connection that died, or outlived CONN_MAX_AGE, fails the next call.
    """

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        return function(*args, **kwargs)

    return call
