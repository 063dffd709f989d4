"""A channel's own transcode ladder, overriding the platform's (GOLIVE_TRANSCODE_LADDER).

An admin writes it on the channel as `transcoder.ladder.parse_ladder` text; blank is the
platform's ladder, ``none`` source only (the channel never takes a transcode slot). It is
checked when saved (`validate_ladder`), copied onto each broadcast's session row when the
broadcast starts (so one broadcast keeps one ladder, whatever is edited meanwhile or
wherever its transcode session restarts), and read at admission with the channel, in the
query that finds the key: the `Grant` carries it to the transcoder, and no query is
added on the way to the publisher's answer nor on the media path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError

from transcoder.ladder import LadderError, Rung, format_ladder, parse_ladder

log = logging.getLogger(__name__)

# Eight rungs of "1080p60:1920x1080@60:6000k:baseline" with separators fit in 300.
MAX_LENGTH = 500


def validate_ladder(text: str) -> None:
    """A model field validator: raises ValidationError with `parse_ladder`'s message (which
    names the rung at fault). Text over MAX_LENGTH is left to the length check."""
    if len(text) > MAX_LENGTH:
        return
    try:
        parse_ladder(text)
    except LadderError as error:
        raise ValidationError(f"Not a usable ladder: {error}.", code="ladder") from None


@lru_cache(maxsize=256)
def ladder_override(text: str) -> tuple[Rung, ...] | None:
    """The ladder a channel's (or a session's) text sets: None when blank (the platform's
    default), no rungs for ``none``. Text that does not read (written around the admin's
    check) is logged and taken as blank: a publish is never refused for it. Cached: it is
    read at every admission."""
    if not text.strip():
        return None
    try:
        return parse_ladder(text)
    except LadderError as error:
        log.warning("ignoring a channel's transcode ladder %r: %s", text, error)
        return None


def effective_ladder(override: Sequence[Rung] | None) -> tuple[Rung, ...]:
    """The rungs a broadcast with this override gets: its own, else the platform's."""
    return tuple(settings.GOLIVE_TRANSCODE_LADDER if override is None else override)


def ladder_help() -> str:
    """The admin's help for the field: the syntax, and what blank means here."""
    default = format_ladder(settings.GOLIVE_TRANSCODE_LADDER)
    return (
        "This channel's quality ladder: rungs NAME:WIDTHxHEIGHT@FPS:BITRATE[:PROFILE], comma"
        " or newline separated, e.g. 480p30:852x480@30:1400k, 360p30:640x360@30:630k"
        " (bit rate in bit/s or with k or M; profile baseline, main or high, main if left"
        " out; at most 8 rungs, names and heights distinct). Rungs as tall as the source or"
        " taller are left out; the source is always the top quality."
        " \"none\": source only (the channel never takes a transcode slot)."
        f" Empty: the platform's ladder (GOLIVE_TRANSCODE_LADDER), now {default}."
        " A change applies from the channel's next broadcast."
    )
