"""Streamer deals, what each one owes per period, and the ledger that records the money.

Rows change only through `deals.actions`; admin, pages, API, the `payouts` command and the
Celery task call those functions. Money is integer cents (`BigIntegerField`) everywhere.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from streams.models import Streamer

from .calculation import BASIS_POINTS, DealKind, Period, Shortfall, Terms
from .money import CURRENCIES, CURRENCY_CHOICES, Money, format_money

currency_code = RegexValidator(r"^[A-Z]{3}\Z", "A currency is a 3-letter ISO code, e.g. USD.")


def supported_currency(code: str) -> None:
    if code not in CURRENCIES:
        raise ValidationError(
            f"{code!r} is not a currency golive pays in: choose one of {', '.join(CURRENCIES)}."
        )


def _person(related: str = "+") -> Any:
    return models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name=related, editable=False,
    )


class DealQuerySet(models.QuerySet["Deal"]):
    def of_streamer(self, user: Any) -> DealQuerySet:
        """The user's own deals once signed (a draft is still being negotiated)."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(streamer__user_id=user.pk, signed_at__isnull=False)

    def visible_to(self, user: Any) -> DealQuerySet:
        """Everything for staff allowed to view deals; anyone else, their own."""
        if user.is_authenticated and user.is_staff and user.has_perm("deals.view_deal"):
            return self
        return self.of_streamer(user)


class Deal(models.Model):
    """An official streamer deal: with whom, over which term, and where it stands.

    What it pays lives in its `DealVersion`s: each is signed by an admin other than the
    ones who wrote it, and a month is paid by the signed version in force in it.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        ACTIVE = "active", "active"
        PAUSED = "paused", "paused"
        ENDED = "ended", "ended"
        TERMINATED = "terminated", "terminated"
        CANCELLED = "cancelled", "cancelled (never signed)"

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
    starts_on = models.DateField(help_text="First day of the term.")
    ends_on = models.DateField(
        help_text="Last day of the term (included): set by the signed terms, cut short by "
        "ending or terminating the deal, never extended by it."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = _person()
    signed_at = models.DateTimeField(null=True, blank=True, editable=False)
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", editable=False, help_text="The golive admin who first signed the deal.",
    )

    objects = DealQuerySet.as_manager()

    # Set by `deals.actions.sign_deal` on the deal it returns: False when nothing was
    # waiting for a signature.
    changed: bool = True

    class Meta:
        ordering = ["-starts_on", "-id"]
        # Steps that move money are permissions of their own, beyond changing a row: finance
        # gives them to the people whose job they are (the groups in migration 0005).
        permissions = [("sign_deal", "Can sign deal terms")]
        constraints = [
            # A deal terminated before its start keeps the day it was terminated as its
            # end: an empty term, before its start, which owes nothing.
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")) | Q(status="terminated"),
                name="deal_term_in_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.streamer} · deal #{self.pk} · {self.starts_on}"

    def clean(self) -> None:
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValidationError(
                {"ends_on": f"The term cannot end ({self.ends_on}) before it starts."}
            )

    # Versions. Each reads ``self.versions.all()``, so a prefetch serves a whole list.

    def signed_versions(self) -> list[DealVersion]:
        return sorted(
            (v for v in self.versions.all() if v.status == DealVersion.Status.SIGNED),
            key=lambda v: v.number,
        )

    def version_on(self, day: date) -> DealVersion | None:
        """The signed terms in force on ``day``: of the signed versions taking effect on or
        before it, the last one signed (a later signature replaces earlier terms from its
        effective day on). None before the first signature."""
        return max(
            (v for v in self.signed_versions() if v.effective_from <= day),
            key=lambda v: v.number,
            default=None,
        )

    def version_for(self, period: Period) -> DealVersion | None:
        """The signed terms a month is paid by (versions take effect on the deal's first
        day or on the first of a month, so one version covers a whole month)."""
        return self.version_on(max(period.first_day, self.starts_on))

    def pending_version(self) -> DealVersion | None:
        return next(
            (v for v in self.versions.all() if v.status == DealVersion.Status.PROPOSED), None
        )

    def shown_version(self, day: date) -> DealVersion | None:
        """The terms to show for ``day``: in force then, else the nearest signed ones (the
        term has not started or has ended), else the proposal of a deal not yet signed."""
        return self.version_on(max(day, self.starts_on)) or self.pending_version()

    @property
    def terms_today(self) -> DealVersion | None:
        """The terms shown for today (see `shown_version`)."""
        return self.shown_version(timezone.now().date())

    def terms_for(self, period: Period) -> Terms | None:
        version = self.version_for(period)
        return version.terms(self) if version is not None else None


class DealVersion(models.Model):
    """One version of a deal's terms: everything that decides what it pays.

    Written by admins as a proposal, signed by another admin; then it is never edited. A
    change to signed terms is a new version, which applies from its ``effective_from``
    once signed; until then the signed terms keep applying.
    """

    class Status(models.TextChoices):
        PROPOSED = "proposed", "proposed (waiting for a signature)"
        SIGNED = "signed", "signed"
        WITHDRAWN = "withdrawn", "withdrawn"

    deal = models.ForeignKey(Deal, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED)
    effective_from = models.DateField(
        help_text="The first day these terms apply: the deal's start, or the 1st of a month."
    )
    ends_on = models.DateField(help_text="The term's last day (included) under these terms.")
    kind = models.CharField(
        max_length=24, choices=Deal.KIND_CHOICES, default=DealKind.FLAT.value
    )
    amount_cents = models.BigIntegerField(
        "amount (cents)",
        help_text="A month's guarantee, or the rate per hour, in cents of the currency.",
    )
    currency = models.CharField(
        max_length=3, default="USD", choices=CURRENCY_CHOICES,
        validators=[currency_code, supported_currency],
    )
    revenue_share_bps = models.PositiveIntegerField(
        "revenue share (basis points)", default=0, validators=[MaxValueValidator(BASIS_POINTS)],
    )
    min_hours = models.DecimalField(
        "minimum hours per period", max_digits=6, decimal_places=2, default=0,
        validators=[MinValueValidator(0)],
    )
    min_streams = models.PositiveIntegerField("minimum streams per period", default=0)
    exclusive = models.BooleanField(default=False, help_text="Streams only on golive.")
    shortfall = models.CharField(
        "when a minimum is missed", max_length=16, choices=Deal.SHORTFALL_CHOICES,
        default=Shortfall.PRO_RATA.value,
    )
    proposed_at = models.DateTimeField(default=timezone.now)
    proposed_by = _person()
    proposed_by_name = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = _person()
    changed_by_name = models.CharField(max_length=150, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    signed_by = _person()
    signed_by_name = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["deal_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["deal", "number"], name="one_version_per_number"),
            # One change at a time: a second proposal would make "the last signed" depend
            # on the order of signatures rather than of writing.
            models.UniqueConstraint(
                fields=["deal"], condition=Q(status="proposed"),
                name="one_pending_version_per_deal",
            ),
            models.CheckConstraint(
                condition=Q(amount_cents__gte=0), name="version_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(revenue_share_bps__lte=BASIS_POINTS),
                name="version_share_at_most_all",
            ),
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("effective_from")), name="version_in_term"
            ),
            models.CheckConstraint(
                condition=~Q(status="signed") | Q(signed_at__isnull=False),
                name="signed_version_has_a_signature",
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.number} · {self.amount_display()} from {self.effective_from}"

    @property
    def unit(self) -> str:
        return "hour" if self.kind == DealKind.PER_HOUR else "month"

    def amount_display(self) -> str:
        return f"{format_money(self.amount_cents, self.currency)} / {self.unit}"

    def terms(self, deal: Deal) -> Terms:
        """These terms over the deal's term as it stands (cut short when terminated)."""
        return Terms(
            kind=DealKind(self.kind),
            amount_cents=self.amount_cents,
            currency=self.currency,
            starts_on=deal.starts_on,
            ends_on=deal.ends_on,
            min_hours=self.min_hours,
            min_streams=self.min_streams,
            shortfall=Shortfall(self.shortfall),
            revenue_share_bps=self.revenue_share_bps,
        )


class DealEvent(models.Model):
    """Who created, changed, signed, paused, ended or terminated a deal, and when; and who
    tried something that was refused."""

    class Action(models.TextChoices):
        CREATED = "created", "created"
        CHANGED = "changed", "terms changed"
        PROPOSED = "proposed", "change proposed"
        SIGNED = "signed", "signed"
        WITHDRAWN = "withdrawn", "proposal withdrawn"
        STATUS = "status", "status changed"
        NOTES = "notes", "notes changed"

    deal = models.ForeignKey(Deal, on_delete=models.PROTECT, related_name="events")
    version = models.ForeignKey(
        DealVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept as text as well so the trail survives the user's deletion.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.STATUS)
    refused = models.BooleanField(
        default=False, help_text="An attempt that was refused: nothing changed."
    )
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        refused = "refused: " if self.refused else ""
        return f"{self.at:%Y-%m-%d %H:%M} {refused}{self.from_status or '—'} → {self.to_status}"


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
    """What one deal owes for one period, and where it is in compute → approve → pay.

    A regular payout is computed from the period's sessions, one per deal and month. A
    paid payout is never edited: it is corrected by an adjustment (more is owed) or a
    clawback (too much was paid), each a payout of its own through the same approval.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        APPROVED = "approved", "approved"
        PAID = "paid", "paid"
        VOID = "void", "void"

    class Kind(models.TextChoices):
        REGULAR = "regular", "monthly"
        ADJUSTMENT = "adjustment", "adjustment"
        CLAWBACK = "clawback", "clawback"

    deal = models.ForeignKey(Deal, on_delete=models.PROTECT, related_name="payouts")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.REGULAR)
    corrects = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="corrections",
        help_text="The paid payout this adjustment or clawback corrects.",
    )
    version = models.ForeignKey(
        DealVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="payouts",
        help_text="The signed terms the amount was computed with.",
    )
    reason = models.TextField(blank=True, help_text="Why a correction was made.")
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

    # Set by `deals.actions` on the payout it returns: False when the call found the work
    # already done (approving an approved payout) and changed nothing.
    changed: bool = True

    class Meta:
        ordering = ["-period_start", "deal_id", "id"]
        permissions = [
            ("approve_payout", "Can approve or void payouts"),
            ("pay_payout", "Can mark payouts paid or recovered"),
        ]
        constraints = [
            # However many admins, workers and cron jobs compute at once: one row.
            models.UniqueConstraint(
                fields=["deal", "period_start"], condition=Q(kind="regular"),
                name="one_payout_per_deal_and_period",
            ),
            models.CheckConstraint(
                condition=Q(amount_cents__gte=0), name="payout_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | ~Q(payment_reference=""),
                name="paid_payout_has_a_reference",
            ),
            models.CheckConstraint(
                condition=Q(kind="regular", corrects__isnull=True)
                | (~Q(kind="regular") & Q(corrects__isnull=False)),
                name="a_correction_names_what_it_corrects",
            ),
        ]

    def __str__(self) -> str:
        what = "" if self.kind == self.Kind.REGULAR else f" {self.kind}"
        return f"{self.deal.streamer} · {self.period}{what} · {self.amount_display} ({self.status})"

    @property
    def period(self) -> Period:
        return Period.of(self.period_start)

    @property
    def net_cents(self) -> int:
        """What the payout moves to the streamer: negative for a clawback."""
        return -self.amount_cents if self.kind == self.Kind.CLAWBACK else self.amount_cents

    @property
    def amount_display(self) -> str:
        money = Money(self.currency)
        return money(self.amount_cents) if self.kind == self.Kind.REGULAR else money.signed(
            self.net_cents
        )

    @property
    def status_display(self) -> str:
        """A clawback that is "paid" has been recovered from the streamer."""
        if self.kind == self.Kind.CLAWBACK and self.status == self.Status.PAID:
            return "recovered"
        return self.status


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
    """Every transition of a payout: who, when, from, to, and a note (amount, reason…); and
    every attempt that was refused (``refused``), with the reason it was refused."""

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    refused = models.BooleanField(
        default=False, help_text="An attempt that was refused: nothing changed."
    )
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    amount_cents = models.BigIntegerField()
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        refused = "refused: " if self.refused else ""
        return f"{self.at:%Y-%m-%d %H:%M} {refused}{self.from_status or '—'} → {self.to_status}"


class LedgerEntry(models.Model):
    """One side of a double-entry transaction. Rows sharing a ``transaction_id`` balance:
    their debits equal their credits (written by `deals.ledger.post`, and only there)."""

    class Account(models.TextChoices):
        DEAL_EXPENSE = "deal_expense", "expense: streamer deals"
        STREAMER_PAYABLE = "streamer_payable", "liability: owed to streamers"
        STREAMER_RECEIVABLE = "streamer_receivable", "asset: owed back by streamers"
        CASH = "cash", "asset: cash"

    class Kind(models.TextChoices):
        ACCRUAL = "accrual", "accrual (approved)"
        PAYMENT = "payment", "payment (paid)"
        REVERSAL = "reversal", "reversal (voided after approval)"
        CLAWBACK = "clawback", "clawback (approved)"
        RECOVERY = "recovery", "recovery (clawback received)"

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
        money = Money(self.currency)
        side = f"Dr {money(self.debit_cents)}" if self.debit_cents else (
            f"Cr {money(self.credit_cents)}"
        )
        return f"{self.get_account_display()} {side}"
