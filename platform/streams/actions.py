"""The one write path for streamers, channels and stream keys.

Views, admin, API, management commands and the ingest gatekeeper call these; nothing else
saves these models. Functions that return a stream key in clear return it once: it is
never stored or logged.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from . import keys
from .models import Channel, Streamer, StreamKey

log = logging.getLogger(__name__)

# A key's last use is for people (the admin's list of keys): to the minute is enough, and a
# write per publish would cost every admission a round trip and a commit.
KEY_USE_RESOLUTION = timedelta(minutes=1)


class StreamerError(ValueError):
    """A request to create or change a streamer that cannot be carried out, and why."""


def create_streamer(
    username: str,
    *,
    display_name: str = "",
    email: str = "",
    password: str | None = None,
    partner: bool = False,
    slug: str = "",
) -> tuple[Streamer, str]:
    """Creates a user, their streamer profile, channel and first key.

    Returns the streamer and the stream key in clear (shown once). Raises StreamerError
    when the username or channel slug is taken or unusable.
    """
    User = get_user_model()
    slug = slugify(slug or username)[:40]
    if not slug:
        raise StreamerError(f"{username!r} does not make a usable channel name")
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise StreamerError(f"user {username!r} already exists")
        if Channel.objects.filter(slug=slug).exists():
            raise StreamerError(f"channel {slug!r} already exists")
        user = User.objects.create_user(username=username, email=email, password=password)
        streamer = Streamer.objects.create(user=user, display_name=display_name or username)
        channel = Channel.objects.create(owner=streamer, slug=slug, is_partner=partner)
        plaintext = _issue_key(channel)
    log.info("created streamer %s with channel %s", username, slug)
    return streamer, plaintext


def become_streamer(user: AbstractBaseUser, *, slug: str = "") -> tuple[Streamer, str]:
    """Gives an existing account (a viewer who signed up) a streamer profile, a channel
    and a first key, returned in clear once. Raises StreamerError when the account already
    streams or the channel name is taken or unusable."""
    name = user.get_username()
    slug = slugify(slug or name)[:40]
    if not slug:
        raise StreamerError(f"{name!r} does not make a usable channel name: choose one")
    with transaction.atomic():
        if Streamer.objects.filter(user_id=user.pk).exists():
            raise StreamerError("this account already has a channel")
        if Channel.objects.filter(slug=slug).exists():
            raise StreamerError(f"channel {slug!r} already exists: choose another name")
        streamer = Streamer.objects.create(user_id=user.pk, display_name=name)
        channel = Channel.objects.create(owner=streamer, slug=slug)
        plaintext = _issue_key(channel)
    log.info("user %s opened channel %s", name, slug)
    return streamer, plaintext


def rotate_stream_key(channel: Channel) -> str:
    """Revokes the channel's active key and issues a new one, returned in clear once.

    The old key stops working the moment this commits. Concurrent rotations of the same
    channel are serialised on the channel row.
    """
    with transaction.atomic():
        Channel.objects.select_for_update().filter(pk=channel.pk).get()
        StreamKey.objects.filter(channel=channel, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        plaintext = _issue_key(channel)
    log.info("rotated the stream key of channel %s", channel.slug)
    return plaintext


def _issue_key(channel: Channel) -> str:
    new = keys.generate_key()
    StreamKey.objects.create(channel=channel, prefix=new.prefix, digest=new.digest)
    return new.plaintext


# The channels and active keys of a few prefixes in one statement, written out: it is on
# the way to every publisher's answer, and the ORM's select_related spent three times the
# CPU building it (0.75 ms against 0.22 ms a lookup; a surge of publishes is decided on two
# cores). It also says whether a channel's broadcast is waiting for its publisher to
# reconnect, which admission needs to know first: a query of its own cost every publish a
# round trip. The gatekeeper reads the keys of publishes that arrived together at once.
_ACTIVE_KEYS_SQL = (
    "SELECT c.*, k.prefix AS key_prefix, k.id AS key_id, k.digest AS key_digest,"
    " k.last_used_at AS key_last_used_at,"
    " EXISTS (SELECT 1 FROM streams_livesession s WHERE s.channel_id = c.id"
    " AND s.ended_at IS NULL AND s.disconnected_at IS NOT NULL) AS awaiting_reconnect"
    " FROM streams_streamkey k JOIN streams_channel c ON c.id = k.channel_id"
    " WHERE k.prefix IN ({prefixes}) AND k.revoked_at IS NULL"
)


class _ActiveKeyColumns(Protocol):
    """What `_ACTIVE_KEY_SQL` adds to the channel it returns: `raw` sets a query's columns
    beyond the model's fields as attributes of the object."""

    key_prefix: str
    key_id: int
    key_digest: str
    key_last_used_at: datetime | str | None
    awaiting_reconnect: bool | int


def _key_columns(channel: Channel) -> _ActiveKeyColumns:
    return cast(_ActiveKeyColumns, channel)


def awaits_reconnect(channel: Channel) -> bool:
    """Whether the channel found by `find_channel_by_key` has a broadcast that lost its
    publisher and is within the reconnect grace (as the key was read)."""
    return bool(getattr(channel, "awaiting_reconnect", False))


def find_channel_by_key(candidate: str) -> Channel | None:
    """The channel whose active key this is, or None. Constant time in the secret part.
    Notes the key's use (see `record_key_use`). The channel found has a boolean
    ``awaiting_reconnect``: its broadcast lost its publisher and is within the reconnect
    grace (as the key was read)."""
    return find_channels_by_keys([candidate])[0]


def find_channels_by_keys(candidates: Sequence[str]) -> list[Channel | None]:
    """`find_channel_by_key` for each candidate, in one query."""
    prefixes = [keys.find_prefix(candidate) for candidate in candidates]
    wanted = sorted({prefix for prefix in prefixes if prefix is not None})
    rows: dict[str, Channel] = {}
    if wanted:
        sql = _ACTIVE_KEYS_SQL.format(prefixes=", ".join("%s" for _ in wanted))
        rows = {_key_columns(row).key_prefix: row for row in Channel.objects.raw(sql, wanted)}
    found: list[Channel | None] = []
    for candidate, prefix in zip(candidates, prefixes, strict=True):
        row = rows.get(prefix) if prefix is not None else None
        digest = _key_columns(row).key_digest if row is not None else None
        if not keys.matches(candidate, digest) or row is None:
            found.append(None)
            continue
        # A copy per publish: two publishes of one key must not share the object.
        channel = copy.copy(row) if any(other is row for other in found) else row
        key = _key_columns(channel)
        record_key_use(key.key_id, _as_datetime(key.key_last_used_at))
        key.awaiting_reconnect = bool(key.awaiting_reconnect)  # SQLite says 0 or 1
        found.append(channel)
    return found


def _as_datetime(value: datetime | str | None) -> datetime | None:
    """A raw query's column is not converted by its model field: SQLite gives the stored
    text (UTC, as Django writes it with USE_TZ), PostgreSQL an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


class _KeyUses:
    """Key uses waiting to be written, by key id, where a process defers them."""

    def __init__(self) -> None:
        self.deferred = False
        self._pending: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def add(self, key_id: int, at: datetime) -> None:
        with self._lock:
            self._pending[key_id] = max(at, self._pending.get(key_id, at))

    def take(self) -> dict[int, datetime]:
        with self._lock:
            taken, self._pending = self._pending, {}
        return taken


_key_uses = _KeyUses()


def record_key_use(key_id: int, last_used_at: datetime | None,
                   now: datetime | None = None) -> None:
    """Sets the key's `last_used_at` unless it was set less than `KEY_USE_RESOLUTION`
    ago; where `defer_key_uses()` is on (the ingest), `write_key_uses` writes it later,
    off the admission path."""
    now = now or timezone.now()
    if last_used_at is not None and now - last_used_at < KEY_USE_RESOLUTION:
        return
    if _key_uses.deferred:
        _key_uses.add(key_id, now)
    else:
        StreamKey.objects.filter(pk=key_id).update(last_used_at=now)


def defer_key_uses(on: bool = True) -> None:
    """From now on (in this process) key uses wait for `write_key_uses`."""
    _key_uses.deferred = on


def write_key_uses() -> int:
    """Writes the waiting key uses in one statement (each key stamped with the latest use
    among them: within a second of its own, well inside the resolution); returns how
    many keys. Uses that could not be written wait for the next call."""
    pending = _key_uses.take()
    if not pending:
        return 0
    try:
        return StreamKey.objects.filter(pk__in=list(pending)).update(
            last_used_at=max(pending.values())
        )
    except Exception:
        for key_id, at in pending.items():
            _key_uses.add(key_id, at)
        raise


def update_channel(
    channel: Channel, *, title: str | None = None, category: str | None = None
) -> Channel:
    fields = []
    if title is not None:
        channel.title = title.strip()[:140]
        fields.append("title")
    if category is not None:
        channel.category = " ".join(category.split())[:64]
        fields.append("category")
    if fields:
        channel.save(update_fields=fields)
    return channel


def set_banned(channel: Channel, banned: bool, *, reason: str = "") -> None:
    channel.is_banned = banned
    channel.ban_reason = reason if banned else ""
    channel.save(update_fields=["is_banned", "ban_reason"])
    log.info("channel %s %s", channel.slug, "banned" if banned else "unbanned")
