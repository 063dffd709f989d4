"""The platform's capacity limits, one row, and the audit trail of every change to it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

QUOTA_ROW_ID = 1


class ServerQuota(models.Model):
    """The live limits. Read at every publish, so raising one needs no restart.

    Exactly one row (id 1) exists, created by migration; change it only through
    `quotas.actions.set_quota`, which writes the audit row in the same transaction.
    """

    max_streams = models.PositiveIntegerField(help_text="Concurrent live streams, all channels.")
    max_transcodes = models.PositiveIntegerField(
        help_text="Streams given the full quality ladder; the rest go out source-only."
    )
    partner_reserve = models.PositiveIntegerField(
        default=0, help_text="Stream slots only partner channels may use."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "server quota"
        constraints = [
            models.CheckConstraint(
                condition=Q(partner_reserve__lte=models.F("max_streams")),
                name="partner_reserve_within_max_streams",
            ),
            models.CheckConstraint(condition=Q(id=QUOTA_ROW_ID), name="single_quota_row"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.max_streams} streams, {self.max_transcodes} transcoded, "
            f"{self.partner_reserve} reserved for partners"
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "max_streams": self.max_streams,
            "max_transcodes": self.max_transcodes,
            "partner_reserve": self.partner_reserve,
        }


class QuotaChange(models.Model):
    """Who changed the quota, when, from what, to what, why and through which door."""

    class Source(models.TextChoices):
        ADMIN = "admin", "admin"
        COMMAND = "command", "management command"
        API = "api", "API"

    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept as text as well so the trail survives the user's deletion.
    changed_by_name = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    reason = models.TextField()
    old = models.JSONField()
    new = models.JSONField()

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.changed_at:%Y-%m-%d %H:%M} by {self.changed_by_name or 'system'}"

    @property
    def summary(self) -> str:
        return ", ".join(
            f"{name} {self.old.get(name)} → {value}"
            for name, value in self.new.items()
            if self.old.get(name) != value
        )


class SlotLease(models.Model):
    """A live stream's hold on one of the quota's slots.

    Taken at admission (under the quota row lock, so leases never outnumber the quota at
    the moment they are taken), renewed by the ingest's heartbeat, given up when the
    broadcast ends. An ingest node that dies stops renewing: once ``expires_at`` passes,
    any node's reaper frees the slot and closes the session as "ingest lost".
    """

    session = models.OneToOneField(
        "streams.LiveSession", primary_key=True, on_delete=models.CASCADE, related_name="lease"
    )
    node = models.CharField(max_length=128)
    partner = models.BooleanField(default=False)
    acquired_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"slot of session {self.session_id} on {self.node} until {self.expires_at:%H:%M:%S}"


class AdmissionTally(models.Model):
    """How publishes fared, counted per hour: admitted, refused (by reason), resumed
    within the reconnect grace, and slots freed by lease expiry or force stop. The sums
    are the monotonic counters /metrics exports; the last 24 hours feed the capacity page.
    """

    class Result(models.TextChoices):
        ADMITTED = "admitted", "admitted"
        RESUMED = "resumed", "resumed after a reconnect"
        REFUSED = "refused", "refused"
        LEASE_EXPIRED = "lease_expired", "lease expired (ingest lost)"
        FORCE_STOPPED = "force_stopped", "force stopped"

    hour = models.DateTimeField()
    result = models.CharField(max_length=16, choices=Result.choices)
    reason = models.CharField(max_length=32, blank=True)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "result", "reason"], name="one_tally_per_hour")
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00 {self.result} {self.reason}: {self.count}"
