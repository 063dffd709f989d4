"""Streamers, their channels and stream keys, and live sessions.

Rows change only through `streams.actions`; admin, API, commands and the ingest
gatekeeper call those functions.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .ladders import MAX_LENGTH as LADDER_MAX_LENGTH
from .ladders import validate_ladder


class Streamer(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="streamer"
    )
    display_name = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name


class Channel(models.Model):
    """What viewers watch. The slug is the public stream name; the key never is."""

    owner = models.OneToOneField(Streamer, on_delete=models.CASCADE, related_name="channel")
    slug = models.SlugField(max_length=40, unique=True)
    title = models.CharField(max_length=140, blank=True)
    category = models.CharField(max_length=64, blank=True)
    is_partner = models.BooleanField(
        "partner", default=False, help_text="Partner channels may use reserved capacity."
    )
    is_banned = models.BooleanField("banned", default=False)
    ban_reason = models.CharField(max_length=200, blank=True)
    # After a force stop, publishes are refused until then (settings.GOLIVE_FORCE_STOP_COOLDOWN).
    stopped_until = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=200, blank=True)
    # A partner on a fat pipe may be allowed more, a channel viewers struggle with less.
    max_bitrate_kbps = models.PositiveIntegerField(
        "bitrate cap (kb/s)", null=True, blank=True,
        validators=[MinValueValidator(100), MaxValueValidator(100_000)],
        help_text="The bitrate this channel's streamer is told to send and warned past."
                  " Empty: the platform's GOLIVE_MAX_BITRATE_KBPS.",
    )
    # `streams.ladders`: blank is the platform's ladder, "none" source only.
    transcode_ladder = models.CharField(
        "quality ladder", max_length=LADDER_MAX_LENGTH, blank=True,
        validators=[validate_ladder],
        help_text="Rungs NAME:WIDTHxHEIGHT@FPS:BITRATE[:PROFILE], comma separated;"
                  " \"none\": source only. Empty: the platform's GOLIVE_TRANSCODE_LADDER.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def bitrate_cap_kbps(self) -> int:
        """This channel's cap, else the platform's."""
        if self.max_bitrate_kbps is not None:
            return self.max_bitrate_kbps
        return int(settings.GOLIVE_MAX_BITRATE_KBPS)


class StreamKey(models.Model):
    """A channel's publishing secret, stored as a digest (see `streams.keys`)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="keys")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel"],
                condition=Q(revoked_at__isnull=True),
                name="one_active_key_per_channel",
            )
        ]

    def __str__(self) -> str:
        return f"gl_{self.prefix}_…"


class LiveSession(models.Model):
    """One broadcast: from an admitted publish to its end, whatever ended it."""

    class EndReason(models.TextChoices):
        PUBLISHER_STOPPED = "publisher_stopped", "publisher stopped"
        CONNECTION_LOST = "connection_lost", "connection lost"
        NO_MEDIA = "no_media", "no media received"
        PROTOCOL_ERROR = "protocol_error", "protocol error"
        SERVER_SHUTDOWN = "server_shutdown", "server shutdown"
        INGEST_LOST = "ingest_lost", "ingest lost"
        FORCE_STOPPED = "force_stopped", "force stopped"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="sessions")
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    ingest_node = models.CharField(max_length=128, blank=True)
    bytes_in = models.BigIntegerField(default=0)
    video_codec = models.CharField(max_length=64, blank=True)
    audio_codec = models.CharField(max_length=64, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    frame_rate = models.DecimalField(max_digits=7, decimal_places=3, null=True, blank=True)
    peak_viewers = models.PositiveIntegerField(default=0)
    transcoded = models.BooleanField(
        default=False, help_text="Given the quality ladder (else source only)."
    )
    # The channel's ladder as the broadcast started: it keeps it, whatever is edited meanwhile.
    transcode_ladder = models.CharField(
        "quality ladder", max_length=LADDER_MAX_LENGTH, blank=True,
        help_text="The channel's as the broadcast started; empty: the platform's.",
    )
    video_frames = models.BigIntegerField(default=0)
    audio_frames = models.BigIntegerField(default=0)
    media_duration_ms = models.BigIntegerField(
        default=0, help_text="Media time received, first to last video frame."
    )
    # The ingest's latest stream-health snapshot: bitrate, frame rate, keyframe interval,
    # lag behind the wall clock, timestamp regressions.
    health = models.JSONField(default=dict, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The recording's VOD playlist in the segment store, once the broadcast has ended.
    vod_path = models.CharField(max_length=255, blank=True)
    # True when the ingest node died mid-broadcast: the figures above are those of its
    # last heartbeat, not a final count (and the VOD was built from the segment store).
    figures_last_known = models.BooleanField(
        "figures are the last known", default=False,
        help_text="The ingest died: counts are those of its last heartbeat.",
    )
    # When retention (GOLIVE_VOD_RETENTION_DAYS) deleted the recording's files.
    recording_deleted_at = models.DateTimeField(null=True, blank=True)
    # Set while the publisher is gone but may reconnect into this session (the reconnect
    # grace, settings.GOLIVE_RECONNECT_GRACE); ``end_reason`` then says why it left.
    disconnected_at = models.DateTimeField(null=True, blank=True)
    reconnects = models.PositiveIntegerField(
        default=0, help_text="Times the publisher reconnected into this session."
    )
    # Byte and frame counts of the connections before the last reconnect; the columns
    # above hold their sum with the current connection's.
    earlier = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # The database itself refuses a second live session on a channel.
            models.UniqueConstraint(
                fields=["channel"],
                condition=Q(ended_at__isnull=True),
                name="one_live_session_per_channel",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel.slug} @ {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def is_live(self) -> bool:
        return self.ended_at is None

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}" if self.width and self.height else ""
