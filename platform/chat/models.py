"""Chat rooms (one per channel), their messages, moderators, restrictions and the
moderation log. Rows change only through `chat.actions`."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

MAX_MESSAGE_LENGTH = 500


class RoomSettings(models.Model):
    """A channel's chat modes. No row means every mode is off."""

    channel = models.OneToOneField(
        "streams.Channel", on_delete=models.CASCADE, primary_key=True, related_name="chat_room"
    )
    slow_seconds = models.PositiveIntegerField(
        default=0, help_text="Seconds a viewer waits between messages (0: off)."
    )
    followers_only_minutes = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Only followers of at least this many minutes may write (empty: off).",
    )
    account_age_minutes = models.PositiveIntegerField(
        default=0, help_text="Only accounts at least this many minutes old may write (0: off)."
    )
    links_allowed = models.BooleanField(
        default=False, help_text="Links in messages are clickable."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"chat modes of channel {self.channel_id}"

    def as_state(self) -> dict[str, object]:
        return {
            "slow": self.slow_seconds,
            "followers": self.followers_only_minutes,
            "age": self.account_age_minutes,
            "links": self.links_allowed,
        }


class Moderator(models.Model):
    channel = models.ForeignKey(
        "streams.Channel", on_delete=models.CASCADE, related_name="chat_moderators"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="moderates"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "user"], name="one_moderator_row")
        ]

    def __str__(self) -> str:
        return f"moderator {self.user_id} of channel {self.channel_id}"


class Restriction(models.Model):
    """A timeout (``until`` set) or a ban (``until`` empty) of one user in one room."""

    class Kind(models.TextChoices):
        TIMEOUT = "timeout", "timed out"
        BAN = "ban", "banned"

    channel = models.ForeignKey(
        "streams.Channel", on_delete=models.CASCADE, related_name="chat_restrictions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_restrictions"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["channel", "user"], name="chat_restriction_active",
                condition=Q(lifted_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.user_id} in channel {self.channel_id}"


class Message(models.Model):
    channel = models.ForeignKey(
        "streams.Channel", on_delete=models.CASCADE, related_name="chat_messages"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages"
    )
    text = models.CharField(max_length=MAX_MESSAGE_LENGTH)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )

    class Meta:
        indexes = [models.Index(fields=["channel", "-id"], name="chat_message_recent")]

    def __str__(self) -> str:
        return self.text[:50]


class ModerationEvent(models.Model):
    """Who did what in which room, kept for the streamer and staff."""

    channel = models.ForeignKey(
        "streams.Channel", on_delete=models.CASCADE, related_name="chat_moderation"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=32)
    target = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} in channel {self.channel_id}"
