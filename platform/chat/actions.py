"""The one write path for chat: post, delete, time out, ban, modes, moderators.

Each function checks who may do it, writes its rows (and a `ModerationEvent` for every
moderation) and returns the event to broadcast to the room (a plain dict, sent as JSON
by `chat.hub`), or a `Refused` with the sentence to show the person who asked. They are
synchronous (ORM) and run on the chat's worker threads, never the event loop.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Follow
from streams.models import Channel

from .limits import Limiter, Limits, retry_words, sampled
from .models import (
    MAX_MESSAGE_LENGTH,
    Message,
    ModerationEvent,
    Moderator,
    Restriction,
    RoomSettings,
)

log = logging.getLogger(__name__)

HISTORY = 50
DEFAULT_LIMITS = Limits()
MAX_TIMEOUT_SECONDS = 14 * 24 * 3600
MAX_MODE_MINUTES = 90 * 24 * 60
MAX_SLOW_SECONDS = 3600


class Role:
    VIEWER = "viewer"
    MODERATOR = "moderator"
    STREAMER = "streamer"
    STAFF = "staff"


MODERATING = frozenset({Role.MODERATOR, Role.STREAMER, Role.STAFF})


@dataclass(frozen=True, slots=True)
class Room:
    channel_id: int
    slug: str
    owner_user_id: int


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    code: str
    retry_after: float | None = None

    def as_event(self, nonce: str = "") -> dict[str, object]:
        event: dict[str, object] = {"t": "refused", "code": self.code, "reason": self.reason}
        if self.retry_after is not None:
            event["retry"] = round(self.retry_after, 1)
        if nonce:
            event["nonce"] = nonce
        return event


def find_room(slug: str) -> Room | None:
    row = (
        Channel.objects.filter(slug=slug, is_banned=False)
        .values_list("pk", "slug", "owner__user_id")
        .first()
    )
    return Room(*row) if row else None


def role_of(room: Room, user: Any) -> str:
    if user is None or not user.is_authenticated:
        return Role.VIEWER
    if user.pk == room.owner_user_id:
        return Role.STREAMER
    if user.is_staff:
        return Role.STAFF
    if Moderator.objects.filter(channel_id=room.channel_id, user_id=user.pk).exists():
        return Role.MODERATOR
    return Role.VIEWER


def room_state(room: Room) -> dict[str, object]:
    settings_row = RoomSettings.objects.filter(channel_id=room.channel_id).first()
    return {"t": "state", **(settings_row or RoomSettings()).as_state()}


# Control characters (C0, C1, bidi overrides) would let a message hide or reorder text.
_CONTROL = re.compile(
    "[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str | Refused:
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text)).replace("\n", " ").strip()
    if not text:
        return Refused("Write something first.", "empty")
    if len(text) > MAX_MESSAGE_LENGTH:
        return Refused(
            f"Messages are at most {MAX_MESSAGE_LENGTH} characters (this one has {len(text)}).",
            "too_long",
        )
    return text


def message_event(message: Message, username: str, role: str) -> dict[str, object]:
    return {
        "t": "msg",
        "id": message.pk,
        "user": username,
        "role": role,
        "text": message.text,
        "at": int(message.created_at.timestamp() * 1000),
    }


def _refusal_for(restriction: Restriction) -> Refused:
    why = f" Reason: {restriction.reason}" if restriction.reason else ""
    if restriction.until is None:
        return Refused(f"You are banned from this chat.{why}", "banned")
    left = (restriction.until - timezone.now()).total_seconds()
    return Refused(
        f"You are timed out for {retry_words(left)} more.{why}", "timed_out", retry_after=left
    )


def post_message(
    room: Room, user: Any, text: str, limiter: Limiter, limits: Limits = DEFAULT_LIMITS
) -> dict[str, object] | Refused:
    """A signed-in user's message, checked against (in order) its length, the user's rate
    limit, a ban or timeout, followers-only and account-age modes, slow mode and the room's
    cap. Moderators, the streamer and staff skip the modes and the room cap, and have a
    higher rate limit."""
    if user is None or not user.is_authenticated:
        return Refused("Sign in to chat.", "sign_in")
    cleaned = clean_text(text)
    if isinstance(cleaned, Refused):
        return cleaned
    role = role_of(room, user)
    moderating = role in MODERATING
    limit = limits.moderator_limit if moderating else limits.viewer_limit
    wait = limiter.hit(f"u:{room.channel_id}:{user.pk}", limit, limits.user_window)
    if wait is not None:
        return Refused(
            f"You are sending messages too fast: {limit} per {int(limits.user_window)} s."
            f" Try again in {retry_words(wait)}.", "rate_limited", retry_after=wait,
        )
    if not moderating:
        restriction = _active_restriction(room, user.pk)
        if restriction is not None:
            return _refusal_for(restriction)
        modes = RoomSettings.objects.filter(channel_id=room.channel_id).first()
        if modes is not None:
            refusal = _check_modes(room, user, modes, limiter)
            if refusal is not None:
                return refusal
        if not sampled(limiter, str(room.channel_id), limits.room_per_second):
            return Refused(
                "Chat is very busy: your message was not shown. Try again in a moment.",
                "room_busy", retry_after=1.0,
            )
    message = Message.objects.create(channel_id=room.channel_id, user_id=user.pk, text=cleaned)
    return message_event(message, user.get_username(), role)


def _active_restriction(room: Room, user_id: int) -> Restriction | None:
    now = timezone.now()
    rows = list(
        Restriction.objects.filter(
            channel_id=room.channel_id, user_id=user_id, lifted_at__isnull=True
        ).filter(Q(until__isnull=True) | Q(until__gt=now))[:5]
    )
    if not rows:
        return None
    # A ban outranks any timeout; among timeouts the longest tells the truth.
    return min(rows, key=lambda r: (r.until is not None, -(r.until or now).timestamp()))


def _check_modes(room: Room, user: Any, modes: RoomSettings, limiter: Limiter) -> Refused | None:
    now = timezone.now()
    if modes.account_age_minutes:
        old_enough = user.date_joined + timedelta(minutes=modes.account_age_minutes)
        if old_enough > now:
            return Refused(
                f"This chat is for accounts older than {modes.account_age_minutes} minutes:"
                f" you can write in {retry_words((old_enough - now).total_seconds())}.",
                "account_age", retry_after=(old_enough - now).total_seconds(),
            )
    if modes.followers_only_minutes is not None:
        since = (
            Follow.objects.filter(user_id=user.pk, channel_id=room.channel_id)
            .values_list("created_at", flat=True)
            .first()
        )
        need = timedelta(minutes=modes.followers_only_minutes)
        if since is None:
            return Refused("This chat is in followers-only mode: follow the channel to write.",
                           "followers_only")
        if since + need > now:
            return Refused(
                f"This chat is for followers of at least {modes.followers_only_minutes}"
                f" minutes: you can write in {retry_words((since + need - now).total_seconds())}.",
                "followers_only", retry_after=(since + need - now).total_seconds(),
            )
    if modes.slow_seconds:
        wait = limiter.claim(f"{room.channel_id}:{user.pk}", modes.slow_seconds)
        if wait is not None:
            return Refused(
                f"Slow mode is on: one message every {modes.slow_seconds} s. You can write"
                f" again in {retry_words(wait)}.", "slow_mode", retry_after=wait,
            )
    return None


def _require_moderator(room: Room, actor: Any) -> Refused | None:
    if role_of(room, actor) not in MODERATING:
        return Refused("Only the streamer, their moderators and staff can do that.",
                       "not_moderator")
    return None


def _target(room: Room, username: str) -> Any:
    user = get_user_model().objects.filter(username=username).first()
    return user


def _log(room: Room, actor: Any, action: str, target: Any = None, detail: str = "") -> None:
    ModerationEvent.objects.create(
        channel_id=room.channel_id, actor_id=actor.pk, action=action,
        target_id=target.pk if target is not None else None, detail=detail[:300],
    )
    log.info("chat %s: %s %s %s", room.slug, actor.get_username(), action,
             target.get_username() if target is not None else detail)


def delete_message(room: Room, actor: Any, message_id: int) -> dict[str, object] | Refused:
    refusal = _require_moderator(room, actor)
    if refusal is not None:
        return refusal
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(pk=message_id, channel_id=room.channel_id).first()
        )
        if message is None:
            return Refused("That message is not in this chat.", "not_found")
        if message.deleted_at is None:
            message.deleted_at = timezone.now()
            message.deleted_by_id = actor.pk
            message.save(update_fields=["deleted_at", "deleted_by"])
            _log(room, actor, "delete", message.user, message.text)
    return {"t": "del", "id": message_id}


def _restrict(
    room: Room, actor: Any, username: str, kind: str, seconds: int | None, reason: str
) -> dict[str, object] | Refused:
    refusal = _require_moderator(room, actor)
    if refusal is not None:
        return refusal
    target = _target(room, username)
    if target is None:
        return Refused(f"There is no user {username!r}.", "not_found")
    if role_of(room, target) in (Role.STREAMER, Role.STAFF) or (
        role_of(room, target) == Role.MODERATOR and role_of(room, actor) == Role.MODERATOR
    ):
        return Refused(f"{username} cannot be {kind}ned here." if kind == "ban"
                       else f"{username} cannot be timed out here.", "protected")
    now = timezone.now()
    until = now + timedelta(seconds=seconds) if seconds is not None else None
    with transaction.atomic():
        Restriction.objects.create(
            channel_id=room.channel_id, user=target, kind=kind, until=until,
            reason=reason[:200], created_by_id=actor.pk,
        )
        # Their recent messages go with them, as on Twitch.
        Message.objects.filter(
            channel_id=room.channel_id, user=target, deleted_at__isnull=True,
            created_at__gte=now - timedelta(minutes=10),
        ).update(deleted_at=now, deleted_by_id=actor.pk)
        _log(room, actor, kind, target, f"{seconds} s: {reason}" if seconds else reason)
    return {"t": "purge", "user": target.get_username(), "kind": kind,
            "seconds": seconds, "reason": reason[:200]}


def timeout_user(
    room: Room, actor: Any, username: str, seconds: int, reason: str = ""
) -> dict[str, object] | Refused:
    if not 1 <= seconds <= MAX_TIMEOUT_SECONDS:
        return Refused(f"A timeout lasts 1 s to {MAX_TIMEOUT_SECONDS // 86400} days.",
                       "bad_value")
    return _restrict(room, actor, username, Restriction.Kind.TIMEOUT, seconds, reason)


def ban_user(
    room: Room, actor: Any, username: str, reason: str = ""
) -> dict[str, object] | Refused:
    return _restrict(room, actor, username, Restriction.Kind.BAN, None, reason)


def lift_restrictions(room: Room, actor: Any, username: str) -> dict[str, object] | Refused:
    """Unban and un-timeout."""
    refusal = _require_moderator(room, actor)
    if refusal is not None:
        return refusal
    target = _target(room, username)
    if target is None:
        return Refused(f"There is no user {username!r}.", "not_found")
    lifted = Restriction.objects.filter(
        channel_id=room.channel_id, user=target, lifted_at__isnull=True
    ).update(lifted_at=timezone.now())
    if lifted:
        _log(room, actor, "unban", target)
    return {"t": "notice", "text": f"{username} may chat again."}


def set_modes(
    room: Room,
    actor: Any,
    *,
    slow_seconds: int | None = None,
    followers_only_minutes: int | bool | None = False,
    account_age_minutes: int | None = None,
    links_allowed: bool | None = None,
) -> dict[str, object] | Refused:
    """Changes the room's modes; an argument left out keeps its mode (for
    ``followers_only_minutes`` False means "keep", None means "off")."""
    refusal = _require_moderator(room, actor)
    if refusal is not None:
        return refusal
    if slow_seconds is not None and not 0 <= slow_seconds <= MAX_SLOW_SECONDS:
        return Refused(f"Slow mode is 0 to {MAX_SLOW_SECONDS} seconds.", "bad_value")
    for minutes in (account_age_minutes, followers_only_minutes):
        if isinstance(minutes, int) and not isinstance(minutes, bool) and not (
            0 <= minutes <= MAX_MODE_MINUTES
        ):
            return Refused("Minutes must be between 0 and 90 days.", "bad_value")
    with transaction.atomic():
        modes, _ = RoomSettings.objects.select_for_update().get_or_create(
            channel_id=room.channel_id
        )
        if slow_seconds is not None:
            modes.slow_seconds = slow_seconds
        if followers_only_minutes is not False:
            modes.followers_only_minutes = followers_only_minutes
        if account_age_minutes is not None:
            modes.account_age_minutes = account_age_minutes
        if links_allowed is not None:
            modes.links_allowed = links_allowed
        modes.save()
        _log(room, actor, "modes", detail=str(modes.as_state()))
    return {"t": "state", **modes.as_state()}


def add_moderator(room: Room, actor: Any, username: str) -> Refused | None:
    """The streamer (or staff) names a moderator."""
    if role_of(room, actor) not in (Role.STREAMER, Role.STAFF):
        return Refused("Only the streamer and staff can name moderators.", "not_streamer")
    target = _target(room, username)
    if target is None:
        return Refused(f"There is no user {username!r}.", "not_found")
    _, created = Moderator.objects.get_or_create(channel_id=room.channel_id, user=target)
    if created:
        _log(room, actor, "mod", target)
    return None


def remove_moderator(room: Room, actor: Any, username: str) -> Refused | None:
    if role_of(room, actor) not in (Role.STREAMER, Role.STAFF):
        return Refused("Only the streamer and staff can remove moderators.", "not_streamer")
    deleted, _ = Moderator.objects.filter(
        channel_id=room.channel_id, user__username=username
    ).delete()
    if deleted:
        _log(room, actor, "unmod", detail=username)
    return None


def recent_messages(room: Room, limit: int = HISTORY) -> list[dict[str, object]]:
    """The room's last ``limit`` messages not deleted, oldest first: one query."""
    owner = room.owner_user_id
    mods = set(
        Moderator.objects.filter(channel_id=room.channel_id).values_list("user_id", flat=True)
    )
    rows = list(
        Message.objects.filter(channel_id=room.channel_id, deleted_at__isnull=True)
        .select_related("user")
        .order_by("-id")[:limit]
    )
    events = []
    for message in reversed(rows):
        user = message.user
        role = (
            Role.STREAMER if user.pk == owner else Role.STAFF if user.is_staff
            else Role.MODERATOR if user.pk in mods else Role.VIEWER
        )
        events.append(message_event(message, user.get_username(), role))
    return events
