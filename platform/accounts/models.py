"""What a viewer keeps with their account: the channels they follow.

Rows change only through `accounts.actions`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Follow(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="follows"
    )
    channel = models.ForeignKey(
        "streams.Channel", on_delete=models.CASCADE, related_name="followers"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "channel"], name="one_follow_per_channel")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} follows {self.channel_id}"
