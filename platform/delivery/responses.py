"""What the origin answers with: media types, caching, and errors an edge cache can share.

Every answer under /live/ and /media/ is public and cacheable per URL, errors included: a
collapsing edge cache (deploy/varnish) parks every viewer asking for one URL on one origin
request, and an uncacheable answer ("no-store") would send them to the origin one after
another. So each error says for how long it stays true, and the bodies are one line of the
origin's own text (never a framework's error page).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse

log = logging.getLogger(__name__)
P = ParamSpec("P")

M3U8 = "application/vnd.apple.mpegurl"
# Init segments, parts and segments alike. They are ISO BMFF (CMAF fragments), which the
# HLS specification describes as fragmented MPEG-4 (RFC 8216bis, 3.1.2) and whose media
# type is video/mp4 (RFC 4337); video/iso.segment is the registration for MPEG-DASH's
# media segments (ISO/IEC 23009-1) that some CDNs and proxies do not recognise as video.
# Players go by the playlist, not the type, so one type for every object of a rendition.
CMAF = "video/mp4"
# Objects named by a session never change: a CDN may keep them for good.
IMMUTABLE = "public, max-age=31536000, immutable"
# An error that may stop being true within a part or two (a part not there yet, a request
# ahead of the live edge, an outage): shared for the shortest time Cache-Control can say.
MOMENTARY = "public, max-age=1"
# An error that can never become a success for this URL (malformed parameters, a name the
# origin refuses): a crowd repeating it costs one origin request a minute.
SETTLED = "public, max-age=60"
# Seconds a client waits before asking again while a dependency is down: an outage lasts
# seconds at least, and the watch page doubles it on each further 503.
DEPENDENCY_RETRY_AFTER = 2
# While a dependency stays down, one warning per dependency this often (not one a request).
WARN_EVERY = 10.0

# Redis or the database cannot be reached: connection refused or reset, a timeout, the
# pool out of connections, a server still loading its data.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# The origin's views do no I/O but the live index's: any OSError there is the index's.
REDIS_DOWN = (*REDIS_ERRORS, OSError)
DATABASE_DOWN = (OperationalError, InterfaceError)

_warned: dict[str, tuple[float, int]] = {}


def content_type(name: str) -> str:
    """The media type of a stored object, by its name."""
    if name.endswith(".m3u8"):
        return M3U8
    if name.endswith((".m4s", ".mp4")):
        return CMAF
    if name.endswith(".jpg"):
        return "image/jpeg"
    return "application/octet-stream"


def response(body: bytes | str, kind: str, cache: str, status: int = 200) -> HttpResponse:
    answer = HttpResponse(body, content_type=kind, status=status)
    answer["Cache-Control"] = cache
    answer["Access-Control-Allow-Origin"] = "*"
    # Served without Django's middleware (delivery/asgi.py): what SecurityMiddleware adds.
    answer["X-Content-Type-Options"] = "nosniff"
    return answer


def error(status: int, message: str, cache: str) -> HttpResponse:
    return response(message + "\n", "text/plain; charset=utf-8", cache, status)


def unavailable(message: str, retry_after: int, cache: str = MOMENTARY) -> HttpResponse:
    answer = error(503, message, cache)
    answer["Retry-After"] = str(retry_after)
    return answer


def dependency_down(what: str, problem: BaseException) -> HttpResponse:
    """503 + Retry-After, and a one-line warning at most every WARN_EVERY seconds."""
    _warn(what, problem)
    return unavailable(f"{what} is unavailable: retry shortly", DEPENDENCY_RETRY_AFTER)


def answers_503_while_down(
    view: Callable[P, Coroutine[Any, Any, HttpResponse]],
) -> Callable[P, Coroutine[Any, Any, HttpResponse]]:
    """``view``, answering 503 + Retry-After (not 500 and a traceback) while Redis or the
    database cannot be reached."""

    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        try:
            return await view(*args, **kwargs)
        except DATABASE_DOWN as problem:
            return dependency_down("the database", problem)
        except REDIS_DOWN as problem:
            return dependency_down("the live index", problem)

    return wrapper


def _warn(what: str, problem: BaseException) -> None:
    now = time.monotonic()
    since, quiet = _warned.get(what, (-WARN_EVERY, 0))
    if now - since < WARN_EVERY:
        _warned[what] = (since, quiet + 1)
        return
    _warned[what] = (now, 0)
    more = f" ({quiet} more since the last warning)" if quiet else ""
    detail = str(problem).splitlines()[0] if str(problem) else ""
    log.warning(
        "%s is unavailable, answering 503: %s: %s%s",
        what, type(problem).__name__, detail, more,
    )
