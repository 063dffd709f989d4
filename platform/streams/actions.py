"""The one write path for streamers, channels and stream keys.

Views, admin, API, management commands and the ingest gatekeeper call these; nothing else
saves these models. Functions that return a stream key in clear return it once: it is
never stored or logged.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from . import keys
from .models import Channel, Streamer, StreamKey

log = logging.getLogger(__name__)


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


def find_channel_by_key(candidate: str) -> Channel | None:
    """The channel whose active key this is, or None. Constant time in the secret part."""
    prefix = keys.find_prefix(candidate)
    row = None
    if prefix is not None:
        row = (
            StreamKey.objects.select_related("channel", "channel__owner")
            .filter(prefix=prefix, revoked_at__isnull=True)
            .first()
        )
    if not keys.matches(candidate, row.digest if row else None) or row is None:
        return None
    StreamKey.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return row.channel


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
