"""The directory's thumbnails: the latest still of each live broadcast."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Thumbnail(models.Model):
    """Where the newest thumbnail of a broadcast is in the segment store. Its name
    changes with every new picture (objects there are cached as immutable)."""

    session = models.OneToOneField(
        "streams.LiveSession", on_delete=models.CASCADE, primary_key=True,
        related_name="thumbnail",
    )
    path = models.CharField(max_length=255)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.path
