"""The one write path for deals, payouts and the ledger.

Admin, the earnings API, the `payouts` command and the Celery task call these; nothing else
saves these models. Every transition writes its audit row (`DealEvent`, `PayoutEvent`) and
its ledger rows in the same transaction as the change.

Locking: every payout transition locks the deal's row first (`select_for_update`), then the
payout's. Work on one deal is therefore done one transaction at a time, on any number of
processes, and the unique (deal, period) constraint is the backstop. SQLite ignores
`select_for_update`; there, IMMEDIATE transactions serialise writers instead.

Payout workflow: compute → draft → approve → approved → mark paid → paid; void from draft
or approved. A void payout may be computed again (it becomes a draft); a paid one never
changes again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from . import ledger
from .calculation import Calculation, CalculationError, Money, Period, calculate
from .models import Deal, DealEvent, Payout, PayoutEvent, PayoutLine
from .progress import sessions_of

log = logging.getLogger(__name__)

Account = ledger.Account
Status = Payout.Status
DealStatus = Deal.Status

# Deals whose payouts the period close computes. A paused deal's payments are on hold:
# the close reports it and an admin may still compute it by hand.
CLOSING_STATUSES = [DealStatus.ACTIVE, DealStatus.ENDED, DealStatus.TERMINATED]

DEAL_TRANSITIONS: dict[str, set[str]] = {
    DealStatus.DRAFT: {DealStatus.ACTIVE, DealStatus.TERMINATED},
    DealStatus.ACTIVE: {DealStatus.PAUSED, DealStatus.ENDED, DealStatus.TERMINATED},
    DealStatus.PAUSED: {DealStatus.ACTIVE, DealStatus.ENDED, DealStatus.TERMINATED},
    DealStatus.ENDED: set(),
    DealStatus.TERMINATED: set(),
}


class DealError(ValueError):
    """A deal or payout change that cannot be made, with a sentence saying why."""


class PayoutError(DealError):
    pass


def _who(actor: Any, actor_name: str) -> tuple[Any, str]:
    user = actor if actor is not None and actor.is_authenticated else None
    return user, (user.get_username() if user is not None else actor_name or "system")


def _person(actor: Any, doing: str, error: type[DealError] = PayoutError) -> tuple[Any, str]:
    """The acting admin, for a step only a person may take (no command, no task)."""
    user, name = _who(actor, "")
    if user is None:
        raise error(f"{doing} by a person: log in as an admin")
    return user, name


# --- Deals -------------------------------------------------------------------------------


def save_deal(deal: Deal, *, actor: Any, actor_name: str = "") -> list[str]:
    """Creates a deal (as a draft) or saves changes to its terms, with an audit row.

    Returns warnings worth showing (an amount outside the usual $1,000 to $10,000 range),
    which do not stop the save. Raises django's ValidationError for impossible terms and
    DealError for a deal that has ended or been terminated. Status changes go through
    `sign_deal` and `set_deal_status`, never through here.
    """
    deal.full_clean()
    user, name = _who(actor, actor_name)
    with transaction.atomic():
        if deal.pk is None:
            deal.status = DealStatus.DRAFT
            deal.created_by = user
            deal.save()
            _deal_event(deal, user, name, "", DealStatus.DRAFT, "created")
        else:
            old = Deal.objects.select_for_update().get(pk=deal.pk)
            if old.status in (DealStatus.ENDED, DealStatus.TERMINATED):
                raise DealError(f"a deal that is {old.status} cannot change")
            deal.status = old.status
            before, after = model_to_dict(old), model_to_dict(deal)
            changed = [
                f"{field} {before[field]} → {after[field]}"
                for field in after
                if before.get(field) != after[field]
            ]
            if changed:
                deal.save()
                _deal_event(deal, user, name, deal.status, deal.status, "; ".join(changed))
    return deal.warnings()


def sign_deal(deal: Deal, *, actor: Any, now: datetime | None = None) -> Deal:
    """Draft → active, recording who signed it. Idempotent for a deal already signed."""
    now = now or timezone.now()
    user, name = _person(actor, "a deal is signed", DealError)
    with transaction.atomic():
        locked = Deal.objects.select_for_update().get(pk=deal.pk)
        if locked.signed_at is not None:
            return locked
        if locked.status != DealStatus.DRAFT:
            raise DealError(f"a deal that is {locked.status} cannot be signed")
        locked.status = DealStatus.ACTIVE
        locked.signed_by, locked.signed_at = user, now
        locked.save(update_fields=["status", "signed_by", "signed_at"])
        _deal_event(locked, user, name, DealStatus.DRAFT, DealStatus.ACTIVE, "signed", now)
    return locked


def set_deal_status(
    deal: Deal,
    status: str,
    *,
    actor: Any,
    note: str = "",
    effective_on: Any = None,
    now: datetime | None = None,
) -> Deal:
    """Pauses, resumes, ends or terminates a deal (signing is `sign_deal`).

    Ending or terminating on ``effective_on`` (default today, UTC) cuts the term short to
    that day, so nothing is owed after it; the old end is kept in the audit note.
    Raises DealError for a transition the status does not allow. Idempotent when the
    deal already has that status.
    """
    now = now or timezone.now()
    user, name = _who(actor, "")
    with transaction.atomic():
        locked = Deal.objects.select_for_update().get(pk=deal.pk)
        if locked.status == status:
            return locked
        if status == DealStatus.ACTIVE and locked.status == DealStatus.DRAFT:
            raise DealError("sign the deal to make it active")
        if status not in DEAL_TRANSITIONS[locked.status]:
            raise DealError(f"a deal that is {locked.status} cannot become {status}")
        notes = [note.strip()] if note.strip() else []
        fields = ["status"]
        if status in (DealStatus.ENDED, DealStatus.TERMINATED):
            last_day = effective_on or now.date()
            if last_day < locked.ends_on:
                notes.append(f"term cut short: ends {last_day} instead of {locked.ends_on}")
                locked.ends_on = max(last_day, locked.starts_on)
                fields.append("ends_on")
        old_status, locked.status = locked.status, status
        locked.save(update_fields=fields)
        _deal_event(locked, user, name, old_status, status, "; ".join(notes), now)
    return locked


def _deal_event(
    deal: Deal, user: Any, name: str, from_status: str, to_status: str, note: str,
    at: datetime | None = None,
) -> None:
    DealEvent.objects.create(
        deal=deal, at=at or timezone.now(), actor=user, actor_name=name,
        from_status=from_status, to_status=to_status, note=note,
    )


# --- Payouts ------------------------------------------------------------------------------


def compute_payout(
    deal: Deal,
    period: Period,
    *,
    actor: Any,
    actor_name: str = "",
    now: datetime | None = None,
) -> Payout:
    """Computes the deal's payout for a closed period into a draft, with its lines.

    Idempotent: computing again replaces the draft's figures and lines in the same row
    (a void payout becomes a draft again). Raises PayoutError when the period has not
    ended yet, the deal is unsigned, its term misses the period, or the payout is already
    approved or paid.
    """
    now = now or timezone.now()
    _require_closed(period, now)
    user, name = _who(actor, actor_name)
    with transaction.atomic():
        deal = (
            Deal.objects.select_for_update(of=("self",))
            .select_related("streamer")
            .get(pk=deal.pk)
        )
        if deal.status == DealStatus.DRAFT:
            raise PayoutError(f"the deal with {deal.streamer} is not signed yet")
        try:
            result = calculate(deal.terms(), period, sessions_of(deal, period), now=now)
        except CalculationError as error:
            raise PayoutError(str(error)) from None
        payout = Payout.objects.filter(deal=deal, period_start=period.first_day).first()
        if payout is not None and payout.status in (Status.APPROVED, Status.PAID):
            raise PayoutError(
                f"the {period} payout for {deal.streamer} is already {payout.status}"
                + (": void it first to recompute" if payout.status == Status.APPROVED else "")
            )
        money = Money(result.currency)
        if payout is None:
            payout = Payout(deal=deal, period_start=period.first_day)
            from_status, note = "", f"computed: {money(result.amount_cents)}"
        else:
            from_status = payout.status
            note = f"recomputed: {money(payout.amount_cents)} → {money(result.amount_cents)}"
        _fill(payout, result, user, name, now)
        payout.save()
        payout.lines.all().delete()
        PayoutLine.objects.bulk_create(
            PayoutLine(
                payout=payout, position=position, label=line.label, detail=line.detail,
                amount_cents=line.amount_cents,
            )
            for position, line in enumerate(result.lines, start=1)
        )
        _payout_event(payout, user, name, from_status, Status.DRAFT, note, now)
    log.info("payout %s for %s computed by %s: %d cents", period, deal.streamer, name,
             payout.amount_cents)
    return payout


def _require_closed(period: Period, now: datetime) -> None:
    if period.end_at > now:
        raise PayoutError(f"{period} has not ended yet: it closes {period.end_at:%Y-%m-%d} UTC")


def _fill(payout: Payout, result: Calculation, user: Any, name: str, now: datetime) -> None:
    payout.status = Status.DRAFT
    payout.amount_cents = result.amount_cents
    payout.currency = result.currency
    payout.streamed_seconds = result.activity.seconds
    payout.streams = result.activity.streams
    payout.peak_viewers = result.activity.peak_viewers
    payout.requirements_met = result.requirements_met
    payout.computed_at, payout.computed_by, payout.computed_by_name = now, user, name
    payout.approved_at = payout.approved_by = None
    payout.voided_at = payout.voided_by = None
    payout.void_reason = ""


def approve_payout(payout: Payout, *, actor: Any, now: datetime | None = None) -> Payout:
    """Draft → approved, by an admin other than the one who computed it; posts the accrual
    (Dr deal expense, Cr owed to streamers). Idempotent for an approved payout. Raises
    PayoutError for self-approval, an anonymous actor, or a void or paid payout."""
    now = now or timezone.now()
    user, name = _person(actor, "a payout is approved")
    with transaction.atomic():
        payout = _lock(payout)
        if payout.status == Status.APPROVED:
            return payout
        if payout.status != Status.DRAFT:
            raise PayoutError(f"a {payout.status} payout cannot be approved")
        if payout.computed_by_id == user.pk:
            raise PayoutError(
                f"{name} computed this payout and cannot approve it too: another admin must"
            )
        payout.status, payout.approved_by, payout.approved_at = Status.APPROVED, user, now
        payout.save(update_fields=["status", "approved_by", "approved_at"])
        ledger.post(
            payout, ledger.LedgerEntry.Kind.ACCRUAL, debit=Account.DEAL_EXPENSE,
            credit=Account.STREAMER_PAYABLE, amount_cents=payout.amount_cents, at=now,
        )
        _payout_event(payout, user, name, Status.DRAFT, Status.APPROVED, "approved", now)
    return payout


def mark_paid(
    payout: Payout, *, actor: Any, reference: str, now: datetime | None = None
) -> Payout:
    """Approved → paid with the payment's reference; posts the payment (Dr owed to
    streamers, Cr cash). Idempotent when repeated with the same reference. Raises
    PayoutError without a reference, or for a payout that is not approved."""
    now = now or timezone.now()
    reference = reference.strip()
    if not reference:
        raise PayoutError("give the payment's reference (bank transfer id, invoice number)")
    if len(reference) > 200:
        raise PayoutError("a payment reference is at most 200 characters")
    user, name = _person(actor, "a payout is marked paid")
    with transaction.atomic():
        payout = _lock(payout)
        if payout.status == Status.PAID and payout.payment_reference == reference:
            return payout
        if payout.status != Status.APPROVED:
            raise PayoutError(f"a {payout.status} payout cannot be marked paid")
        payout.status, payout.paid_by, payout.paid_at = Status.PAID, user, now
        payout.payment_reference = reference
        payout.save(update_fields=["status", "paid_by", "paid_at", "payment_reference"])
        ledger.post(
            payout, ledger.LedgerEntry.Kind.PAYMENT, debit=Account.STREAMER_PAYABLE,
            credit=Account.CASH, amount_cents=payout.amount_cents, at=now,
        )
        _payout_event(
            payout, user, name, Status.APPROVED, Status.PAID, f"reference {reference}", now
        )
    return payout


def void_payout(
    payout: Payout, *, actor: Any, reason: str, now: datetime | None = None
) -> Payout:
    """Draft or approved → void, with a reason; an approved payout's accrual is reversed
    (Dr owed to streamers, Cr deal expense). Idempotent for a void payout. Raises
    PayoutError without a reason or for a paid payout."""
    now = now or timezone.now()
    reason = reason.strip()
    if not reason:
        raise PayoutError("say why the payout is voided (a reason is required)")
    user, name = _person(actor, "a payout is voided")
    with transaction.atomic():
        payout = _lock(payout)
        if payout.status == Status.VOID:
            return payout
        if payout.status == Status.PAID:
            raise PayoutError("a paid payout cannot be voided")
        if payout.status == Status.APPROVED:
            ledger.post(
                payout, ledger.LedgerEntry.Kind.REVERSAL, debit=Account.STREAMER_PAYABLE,
                credit=Account.DEAL_EXPENSE, amount_cents=payout.amount_cents, at=now,
            )
        from_status = payout.status
        payout.status, payout.voided_by, payout.voided_at = Status.VOID, user, now
        payout.void_reason = reason
        payout.save(update_fields=["status", "voided_by", "voided_at", "void_reason"])
        _payout_event(payout, user, name, from_status, Status.VOID, reason, now)
    return payout


def _lock(payout: Payout) -> Payout:
    """The payout's row, locked after its deal's (the order every transition uses)."""
    Deal.objects.select_for_update().filter(pk=payout.deal_id).get()
    return (
        Payout.objects.select_for_update(of=("self",))
        .select_related("deal__streamer")
        .get(pk=payout.pk)
    )


def _payout_event(
    payout: Payout, user: Any, name: str, from_status: str, to_status: str, note: str,
    at: datetime,
) -> None:
    PayoutEvent.objects.create(
        payout=payout, at=at, actor=user, actor_name=name, from_status=from_status,
        to_status=to_status, amount_cents=payout.amount_cents, note=note,
    )


# --- Closing a period ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Closing:
    """What closing a period did (or, in a dry run, would do) for one deal."""

    deal: Deal
    outcome: str  # computed, would compute, skipped, failed
    detail: str
    amount_cents: int | None = None


def close_period(
    period: Period,
    *,
    actor: Any = None,
    actor_name: str = "",
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[Closing]:
    """Computes the period's draft payouts for every deal that owes one.

    Deals: active, ended or terminated, with a term overlapping the period. Approved,
    paid and void payouts are left alone, so running it again is harmless. ``dry_run``
    calculates and reports without writing. Raises PayoutError when the period has not
    ended; a failure for one deal is reported and the rest go on.
    """
    now = now or timezone.now()
    _require_closed(period, now)
    deals = (
        Deal.objects.filter(starts_on__lt=period.end_day, ends_on__gte=period.first_day)
        .exclude(status=DealStatus.DRAFT)
        .select_related("streamer")
        .order_by("id")
    )
    existing = {
        payout.deal_id: payout
        for payout in Payout.objects.filter(period_start=period.first_day)
    }
    return [
        _close_one(deal, period, existing.get(deal.pk), actor, actor_name, dry_run, now)
        for deal in deals
    ]


def _close_one(
    deal: Deal, period: Period, payout: Payout | None, actor: Any, actor_name: str,
    dry_run: bool, now: datetime,
) -> Closing:
    if deal.status not in CLOSING_STATUSES:
        return Closing(deal, "skipped", f"the deal is {deal.status}")
    if payout is not None and payout.status != Status.DRAFT:
        return Closing(deal, "skipped", f"the payout is {payout.status}", payout.amount_cents)
    if dry_run:
        result = calculate(deal.terms(), period, sessions_of(deal, period), now=now)
        return Closing(deal, "would compute", _verdict(result.requirements_met),
                       result.amount_cents)
    try:
        computed = compute_payout(deal, period, actor=actor, actor_name=actor_name, now=now)
    except DealError as error:
        log.warning("closing %s: the deal with %s failed: %s", period, deal.streamer, error)
        return Closing(deal, "failed", str(error))
    return Closing(deal, "computed", _verdict(computed.requirements_met),
                   computed.amount_cents)


def _verdict(met: bool) -> str:
    return "requirements met" if met else "a minimum was missed"
