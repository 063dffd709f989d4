"""The public addresses streamers and viewers are given."""

from __future__ import annotations

from django.conf import settings

from .models import Channel


def rtmp_url() -> str:
    """What goes in OBS's Server field; the key goes in Stream Key, never in this URL."""
    return settings.GOLIVE_RTMP_URL


def watch_url(channel: Channel) -> str:
    return f"{settings.GOLIVE_PUBLIC_URL}/c/{channel.slug}"
