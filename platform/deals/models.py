"""Streamer deals, what each one owes per period, and the ledger that records the money.

Rows change only through `deals.actions`; admin, pages, API, the `payouts` command and the
Celery task call those functions. Money is integer cents (`BigIntegerField`) everywhere.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from streams.models import Streamer

from .calculation import BASIS_POINTS, DealKind, Period, Shortfall, Terms, range_warnings

currency_code = RegexValidator(r"^[A-Z]{3}\Z", "A currency is a 3-letter ISO code, e.g. USD.")


class DealQuerySet(models.QuerySet["Deal"]):
    def of_streamer(self, user: Any) -> DealQuerySet:
        """The user's own deals once signed (a draft is still being negotiated)."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(streamer__user_id=user.pk).exclude(status=Deal.Status.DRAFT)

    def visible_to(self, user: Any) -> DealQuerySet:
        """Everything for staff allowed to view deals; anyone else, their own."""
        if user.is_authenticated and user.is_staff and user.has_perm("deals.view_deal"):
            return self
        return self.of_streamer(user)


class Deal(models.Model):
    """An official streamer deal: what golive pays, for what, over which term."""

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        ACTIVE = "active", "active"
        PAUSED = "paused", "paused"
        ENDED = "ended", "ended"
        TERMINATED = "terminated", "terminated"

    KIND_CHOICES = [
        (DealKind.FLAT.value, "flat monthly guarantee"),
        (DealKind.MINIMUM_PLUS_SHARE.value, "minimum guarantee plus revenue share"),
        (DealKind.PER_HOUR.value, "per-hour rate"),
    ]
    SHORTFALL_CHOICES = [
        (Shortfall.PRO_RATA.value, "pro rata by hours (and streams)"),
        (Shortfall.NOTHING.value, "nothing"),
    ]

    streamer = models.ForeignKey(Streamer, on_delete=models.PROTECT, related_name="deals")
    kind = models.CharField(max_length=24, choices=KIND_CHOICES, default=DealKind.FLAT.value)
    amount_cents = models.BigIntegerField(
        "amount (cents)",
        help_text="A month's guarantee, or the rate per hour for a per-hour deal, in cents.",
    )
    currency = models.CharField(max_length=3, default="USD", validators=[currency_code])
    revenue_share_bps = models.PositiveIntegerField(
        "revenue share (basis points)",
        default=0,
        validators=[MaxValueValidator(BASIS_POINTS)],
        help_text="Minimum-plus-share deals only: 1500 = 15 %.",
    )
    starts_on = models.DateField(help_text="First day of the term.")
    ends_on = models.DateField(help_text="Last day of the term (included).")
    min_hours = models.DecimalField(
        "minimum hours per period",
        max_digits=6,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
    )
    min_streams = models.PositiveIntegerField("minimum streams per period", default=0)
    exclusive = models.BooleanField(default=False, help_text="Streams only on golive.")
    shortfall = models.CharField(
        "when a minimum is missed",
        max_length=16,
        choices=SHORTFALL_CHOICES,
        default=Shortfall.PRO_RATA.value,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", editable=False,
    )
    signed_at = models.DateTimeField(null=True, blank=True, editable=False)
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", editable=False, help_text="The golive admin who signed the deal.",
    )

    objects = DealQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_on", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_cents__gte=0), name="deal_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")), name="deal_term_in_order"
            ),
            models.CheckConstraint(
                condition=Q(revenue_share_bps__lte=BASIS_POINTS), name="deal_share_at_most_all"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.streamer} · {self.get_kind_display()} · {self.starts_on}"

    def clean(self) -> None:
        """Refuses impossible terms. An amount outside the usual range is only a warning."""
        errors: dict[str, str] = {}
        if self.amount_cents is not None and self.amount_cents < 0:
            errors["amount_cents"] = "An amount cannot be negative."
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            errors["ends_on"] = f"The term cannot end ({self.ends_on}) before it starts."
        if self.revenue_share_bps and self.kind != DealKind.MINIMUM_PLUS_SHARE:
            errors["revenue_share_bps"] = (
                "Only a minimum-plus-share deal has a revenue share; set it to 0."
            )
        if errors:
            raise ValidationError(errors)

    def terms(self) -> Terms:
        return Terms(
            kind=DealKind(self.kind),
            amount_cents=self.amount_cents,
            currency=self.currency,
            starts_on=self.starts_on,
            ends_on=self.ends_on,
            min_hours=self.min_hours,
            min_streams=self.min_streams,
            shortfall=Shortfall(self.shortfall),
            revenue_share_bps=self.revenue_share_bps,
        )

    def warnings(self) -> list[str]:
        return range_warnings(self.terms())


class DealEvent(models.Model):
    """Who created, changed, signed, paused, ended or terminated a deal, and when."""

    deal = models.ForeignKey(Deal, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept as text as well so the trail survives the user's deletion.
    actor_name = models.CharField(max_length=150, blank=True)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.from_status or '—'} → {self.to_status}"


class PayoutQuerySet(models.QuerySet["Payout"]):
    def of_streamer(self, user: Any) -> PayoutQuerySet:
        """The user's own approved and paid payouts: a draft is not a promise until another
        admin approves it, and a void one was never owed."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(
            deal__streamer__user_id=user.pk,
            status__in=[Payout.Status.APPROVED, Payout.Status.PAID],
        )

    def visible_to(self, user: Any) -> PayoutQuerySet:
        """Everything for staff allowed to view payouts; anyone else, their own."""
        if user.is_authenticated and user.is_staff and user.has_perm("deals.view_payout"):
            return self
        return self.of_streamer(user)


class Payout(models.Model):
    """What one deal owes for one period, and where it is in compute → approve → pay."""

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        APPROVED = "approved", "approved"
        PAID = "paid", "paid"
        VOID = "void", "void"

    deal = models.ForeignKey(Deal, on_delete=models.PROTECT, related_name="payouts")
    period_start = models.DateField(help_text="The first day of the period (a calendar month).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    amount_cents = models.BigIntegerField("amount (cents)")
    currency = models.CharField(max_length=3, validators=[currency_code])
    streamed_seconds = models.BigIntegerField(default=0)
    streams = models.PositiveIntegerField(default=0)
    peak_viewers = models.PositiveIntegerField(null=True, blank=True)
    requirements_met = models.BooleanField(default=False)
    computed_at = models.DateTimeField()
    computed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    computed_by_name = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    payment_reference = models.CharField(max_length=200, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    void_reason = models.TextField(blank=True)

    objects = PayoutQuerySet.as_manager()

    class Meta:
        ordering = ["-period_start", "deal_id"]
        constraints = [
            # However many admins, workers and cron jobs compute at once: one row.
            models.UniqueConstraint(
                fields=["deal", "period_start"], name="one_payout_per_deal_and_period"
            ),
            models.CheckConstraint(
                condition=Q(amount_cents__gte=0), name="payout_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | ~Q(payment_reference=""),
                name="paid_payout_has_a_reference",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deal.streamer} · {self.period}"

    @property
    def period(self) -> Period:
        return Period.of(self.period_start)


class PayoutLine(models.Model):
    """One step of a payout's calculation, in order: why the amount is what it is."""

    payout = models.ForeignKey(Payout, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=64)
    detail = models.TextField()
    amount_cents = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["payout", "position"], name="one_line_per_position")
        ]

    def __str__(self) -> str:
        # Short: admin's inline shows it above each line, whose detail follows in full.
        return f"{self.position}. {self.label}"


class PayoutEvent(models.Model):
    """Every transition of a payout: who, when, from, to, and a note (amount, reason…)."""

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    amount_cents = models.BigIntegerField()
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.from_status or '—'} → {self.to_status}"


class LedgerEntry(models.Model):
    """One side of a double-entry transaction. Rows sharing a ``transaction_id`` balance:
    their debits equal their credits (written by `deals.ledger.post`, and only there)."""

    class Account(models.TextChoices):
        DEAL_EXPENSE = "deal_expense", "expense: streamer deals"
        STREAMER_PAYABLE = "streamer_payable", "liability: owed to streamers"
        CASH = "cash", "asset: cash"

    class Kind(models.TextChoices):
        ACCRUAL = "accrual", "accrual (approved)"
        PAYMENT = "payment", "payment (paid)"
        REVERSAL = "reversal", "reversal (voided after approval)"

    transaction_id = models.UUIDField(db_index=True)
    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    account = models.CharField(max_length=32, choices=Account.choices)
    debit_cents = models.BigIntegerField(default=0)
    credit_cents = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, validators=[currency_code])
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(
                condition=Q(debit_cents__gt=0, credit_cents=0)
                | Q(debit_cents=0, credit_cents__gt=0),
                name="ledger_entry_is_one_positive_side",
            ),
            models.UniqueConstraint(
                fields=["transaction_id", "account"], name="one_entry_per_account_per_transaction"
            ),
        ]

    def __str__(self) -> str:
        side = f"Dr {self.debit_cents}" if self.debit_cents else f"Cr {self.credit_cents}"
        return f"{self.get_account_display()} {side} {self.currency}"
