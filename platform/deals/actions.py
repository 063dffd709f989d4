"""The one write path for deals, their terms, payouts and the ledger.

Admin, the earnings API, the `payouts` command and the Celery task call these; nothing else
saves these models. Every change writes its audit row (`DealEvent`, `PayoutEvent`) and its
ledger rows in the same transaction as the change; an attempt that is refused writes a
refused audit row after its transaction has rolled back.

Four eyes wherever money moves:
- a deal's terms (a `DealVersion`) are signed by an admin who wrote no part of them;
  changing signed terms writes a new version, which applies (from its first day) only
  once another admin signs it;
- a payout is approved by an admin other than the one who computed it (the system, for
  the period close, counts as nobody: any admin may approve), and marked paid by an admin
  other than the one who approved it. ``GOLIVE_SINGLE_APPROVER_BELOW`` may let one admin
  do both for small amounts; by default it is empty and two admins are always needed.

Locking: every payout transition locks the deal's row first (`select_for_update`), then
the payout's; saving or signing terms locks the streamer's row first (the overlap check),
then the deal's. Work on one deal is therefore done one transaction at a time, on any
number of processes, and the unique (deal, period) constraint is the backstop. SQLite
ignores `select_for_update`; there, IMMEDIATE transactions serialise writers instead.

Payout workflow: compute → draft → approve → approved → mark paid → paid; void from draft
or approved. A void payout may be computed again (it becomes a draft); a paid one never
changes again: it is corrected by an adjustment or clawback (`correct_payout`), a payout
of its own through the same workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from streams.models import Streamer

from . import ledger
from .calculation import (
    Calculation,
    CalculationError,
    DealKind,
    Line,
    Period,
    Shortfall,
    Terms,
    calculate,
)
from .models import (
    Deal,
    DealEvent,
    DealVersion,
    LedgerEntry,
    Payout,
    PayoutEvent,
    PayoutLine,
)
from .money import CURRENCIES, AmountError, Money, parse_thresholds, percent
from .plausibility import Review, review
from .progress import sessions_of

log = logging.getLogger(__name__)

Account = ledger.Account
Entry = LedgerEntry.Kind
Status = Payout.Status
Kind = Payout.Kind
DealStatus = Deal.Status
VersionStatus = DealVersion.Status
Action = DealEvent.Action

# Deals whose payouts the period close computes. A paused deal's payments are on hold:
# the close reports it and an admin may still compute it by hand.
CLOSING_STATUSES = [DealStatus.ACTIVE, DealStatus.ENDED, DealStatus.TERMINATED]
# A payout in one of these is decided: its month's terms and term can no longer change.
DECIDED = [Status.APPROVED, Status.PAID]

DEAL_TRANSITIONS: dict[str, set[str]] = {
    DealStatus.DRAFT: {DealStatus.ACTIVE, DealStatus.CANCELLED},
    DealStatus.ACTIVE: {DealStatus.PAUSED, DealStatus.ENDED, DealStatus.TERMINATED},
    DealStatus.PAUSED: {DealStatus.ACTIVE, DealStatus.ENDED, DealStatus.TERMINATED},
    DealStatus.ENDED: set(),
    DealStatus.TERMINATED: set(),
    DealStatus.CANCELLED: set(),
}


class DealError(ValueError):
    """A deal or payout change that cannot be made, with a sentence saying why."""


class PayoutError(DealError):
    pass


class UnconfirmedWarnings(DealError):
    """Terms with warnings that the admin has not confirmed."""

    def __init__(self, warnings: tuple[str, ...]) -> None:
        super().__init__("check these figures and confirm them: " + " ".join(warnings))
        self.warnings = warnings


def _who(actor: Any, actor_name: str) -> tuple[Any, str]:
    user = actor if actor is not None and actor.is_authenticated else None
    return user, (user.get_username() if user is not None else actor_name or "system")


def _person(actor: Any, doing: str, error: type[DealError] = PayoutError) -> tuple[Any, str]:
    """The acting admin, for a step only a person may take (no command, no task)."""
    user, name = _who(actor, "")
    if user is None:
        raise error(f"{doing} by a person: log in as an admin")
    return user, name


# What each money step asks of the person, beyond the change permission the admin pages
# already ask for (superusers have every permission).
SIGN, APPROVE, PAY = "deals.sign_deal", "deals.approve_payout", "deals.pay_payout"
_STEP_NAMES = {SIGN: "sign deal terms", APPROVE: "approve or void payouts",
               PAY: "mark payouts paid or recovered"}


def _require(user: Any, permission: str, error: type[DealError] = PayoutError) -> None:
    """Raises ``error`` unless ``user`` holds ``permission``; called inside the refusal
    context, so the attempt is in the audit trail."""
    if not user.has_perm(permission):
        raise error(f"{user.get_username()} may not {_STEP_NAMES[permission]}: "
                    f"that permission is given in admin (group or user)")


# --- Terms --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DealTerms:
    """A deal's terms as an admin writes them: what a `DealVersion` holds."""

    kind: str
    amount_cents: int
    ends_on: date
    currency: str = "USD"
    revenue_share_bps: int = 0
    min_hours: Decimal = Decimal(0)
    min_streams: int = 0
    exclusive: bool = False
    shortfall: str = Shortfall.PRO_RATA.value

    @classmethod
    def of(cls, version: DealVersion) -> DealTerms:
        return cls(**{f.name: getattr(version, f.name) for f in fields(cls)})

    def normalised(self) -> DealTerms:
        return replace(self, min_hours=Decimal(self.min_hours).quantize(Decimal("0.01")))

    def calculation_terms(self, starts_on: date) -> Terms:
        return Terms(
            kind=DealKind(self.kind), amount_cents=self.amount_cents, currency=self.currency,
            starts_on=starts_on, ends_on=self.ends_on, min_hours=Decimal(self.min_hours),
            min_streams=self.min_streams, shortfall=Shortfall(self.shortfall),
            revenue_share_bps=self.revenue_share_bps,
        )

    def describe(self) -> str:
        money = Money(self.currency)
        unit = "an hour" if self.kind == DealKind.PER_HOUR else "a month"
        kind = dict(Deal.KIND_CHOICES).get(self.kind, self.kind)
        share = (
            f" plus {percent(self.revenue_share_bps)}% of revenue"
            if self.kind == DealKind.MINIMUM_PLUS_SHARE else ""
        )
        return (
            f"{kind} {money(self.amount_cents)} {unit}{share}; at least {self.min_hours} h and "
            f"{self.min_streams} streams a month (missed: "
            f"{dict(Deal.SHORTFALL_CHOICES).get(self.shortfall, self.shortfall)})"
            f"{'; exclusive' if self.exclusive else ''}; ends {self.ends_on}"
        )

    def differences(self, before: DealTerms) -> list[str]:
        """Each changed term as "what before → after", amounts formatted."""
        changes: list[str] = []
        money_before, money_after = Money(before.currency), Money(self.currency)
        kinds = dict(Deal.KIND_CHOICES)
        shortfalls = dict(Deal.SHORTFALL_CHOICES)
        shown = {
            "kind": lambda t: kinds.get(t.kind, t.kind),
            "amount_cents": None,
            "currency": lambda t: t.currency,
            "revenue_share_bps": lambda t: f"{percent(t.revenue_share_bps)}%",
            "min_hours": lambda t: f"{Decimal(t.min_hours):.2f} h",
            "min_streams": lambda t: str(t.min_streams),
            "exclusive": lambda t: "yes" if t.exclusive else "no",
            "shortfall": lambda t: shortfalls.get(t.shortfall, t.shortfall),
            "ends_on": lambda t: str(t.ends_on),
        }
        names = {
            "kind": "kind", "amount_cents": "amount", "currency": "currency",
            "revenue_share_bps": "revenue share", "min_hours": "minimum hours",
            "min_streams": "minimum streams", "exclusive": "exclusive",
            "shortfall": "when a minimum is missed", "ends_on": "term ends",
        }
        for name, show in shown.items():
            old, new = getattr(before.normalised(), name), getattr(self.normalised(), name)
            if old == new and not (name == "amount_cents" and before.currency != self.currency):
                continue
            if show is None:
                text = f"{money_before(old)} → {money_after(new)}"
            else:
                text = f"{show(before)} → {show(self)}"
            changes.append(f"{names[name]} {text}")
        return changes


@dataclass(frozen=True, slots=True)
class SavedDeal:
    """What `save_deal` did: ``outcome`` is created, changed (a draft's or a pending
    proposal's terms), proposed (a new version of signed terms), notes, or unchanged."""

    deal: Deal
    version: DealVersion | None
    outcome: str
    warnings: tuple[str, ...] = ()


def earliest_change(deal: Deal) -> date:
    """The first day whose terms may still change: the deal's start, or the day after the
    last month with an approved or paid payout (a decided month keeps its terms)."""
    if deal.pk is None:
        return deal.starts_on
    last = Payout.objects.filter(deal=deal, kind=Kind.REGULAR, status__in=DECIDED).aggregate(
        last=Max("period_start")
    )["last"]
    if last is None:
        return deal.starts_on
    return max(deal.starts_on, Period.of(last).end_day)


def default_effective_from(deal: Deal, today: date) -> date:
    """Where a change to signed terms starts unless the admin says otherwise: the 1st of
    next month (nothing retroactive), or the earliest allowed day when that is later."""
    earliest = _first_allowed(deal, earliest_change(deal))
    return max(Period.of(today).end_day, earliest)


def _first_allowed(deal: Deal, day: date) -> date:
    """``day`` if a version may start on it (the deal's start or a 1st), else the next 1st."""
    if day == deal.starts_on or day.day == 1:
        return day
    return Period.of(day).end_day


def review_deal(
    deal: Deal, terms: DealTerms, *, effective_from: date | None = None
) -> Review:
    """Everything wrong with saving ``terms`` for ``deal`` (errors keyed by the admin
    form's fields) and what deserves a second look (warnings). Reads the database (other
    deals of the streamer, decided months) but writes nothing.

    ``effective_from`` matters for a signed deal only: when a change of its terms starts.
    """
    errors: dict[str, str] = {}
    if terms.currency not in CURRENCIES:
        errors["currency"] = (
            f"{terms.currency!r} is not a currency golive pays in: choose one of "
            f"{', '.join(CURRENCIES)}."
        )
    if terms.kind not in {kind.value for kind in DealKind}:
        errors["kind"] = f"{terms.kind!r} is not a kind of deal."
    if terms.shortfall not in {rule.value for rule in Shortfall}:
        errors["shortfall"] = f"{terms.shortfall!r} is not a shortfall rule."
    if terms.revenue_share_bps and terms.kind != DealKind.MINIMUM_PLUS_SHARE:
        errors["revenue_share"] = "Only a minimum-plus-share deal has a revenue share; set it to 0."
    if terms.amount_cents < 0:
        errors["amount"] = "An amount cannot be negative."
    starts_on = deal.starts_on
    if terms.ends_on < starts_on:
        errors["ends_on"] = f"The term cannot end ({terms.ends_on}) before it starts ({starts_on})."
    if errors:
        return Review(errors)
    checked = review(terms.calculation_terms(starts_on))
    errors.update(checked.errors)
    if deal.signed_at is not None:
        errors.update(_change_errors(deal, terms, effective_from))
    overlap = _overlap(deal, starts_on, terms.ends_on)
    if overlap:
        errors[NON_FIELD_ERRORS] = overlap
    return Review(errors, checked.warnings)


def _change_errors(deal: Deal, terms: DealTerms, effective_from: date | None) -> dict[str, str]:
    earliest = earliest_change(deal)
    if effective_from is None:
        return {"effective_from": "Say from which day the new terms apply."}
    if effective_from != deal.starts_on and effective_from.day != 1:
        return {"effective_from": (
            f"New terms apply from the deal's start ({deal.starts_on}) or from the 1st of a "
            f"month, so that one version pays a whole month; not from {effective_from}."
        )}
    if effective_from < earliest:
        decided = Period.of(earliest - timedelta(days=1))
        return {"effective_from": (
            f"{decided} is already approved or paid and keeps the terms it was decided with: "
            f"new terms can apply from {_first_allowed(deal, earliest)} at the earliest "
            "(a paid month is corrected with an adjustment or a clawback)."
        )}
    if effective_from > terms.ends_on:
        return {"effective_from": f"The term ends on {terms.ends_on}, before {effective_from}."}
    if terms.ends_on < earliest - timedelta(days=1):
        return {"ends_on": (
            f"{Period.of(earliest - timedelta(days=1))} is already approved or paid: the "
            f"term cannot end before {earliest - timedelta(days=1)}."
        )}
    return {}


def _overlap(deal: Deal, starts_on: date, ends_on: date) -> str:
    """A sentence naming another deal of the streamer whose term overlaps, or ""."""
    other = (
        Deal.objects.filter(streamer_id=deal.streamer_id)
        .exclude(pk=deal.pk)
        .exclude(status=DealStatus.CANCELLED)
        .filter(starts_on__lte=ends_on, ends_on__gte=starts_on)
        .select_related("streamer")
        .order_by("starts_on")
        .first()
    )
    if other is None:
        return ""
    return (
        f"{other.streamer} already has deal #{other.pk} ({other.status}) for "
        f"{other.starts_on} → {other.ends_on}, which overlaps {starts_on} → {ends_on}: a "
        "streamer has one deal at a time. Change that deal's terms instead (a new version), "
        "or end it and start this one the day after."
    )


def save_deal(
    deal: Deal,
    terms: DealTerms,
    *,
    actor: Any,
    actor_name: str = "",
    effective_from: date | None = None,
    confirmed: bool = False,
    now: datetime | None = None,
) -> SavedDeal:
    """Creates a deal (a draft with its proposed terms, version 1) or saves changes.

    A draft's terms change in place. A signed deal's terms never do: a change becomes a
    new proposed version applying from ``effective_from`` once another admin signs it
    (a change to a pending proposal updates it). Notes change without a signature.

    Raises django's ValidationError (keyed by the admin form's fields) for impossible
    terms, an overlapping deal of the same streamer, or a change reaching into a month
    already approved or paid; UnconfirmedWarnings when the terms deserve a second look
    and ``confirmed`` is false; DealError for a deal that is over.
    """
    now = now or timezone.now()
    user, name = _who(actor, actor_name)
    terms = terms.normalised()
    with transaction.atomic():
        Streamer.objects.select_for_update().filter(pk=deal.streamer_id).get()
        if deal.pk is None:
            return _create(deal, terms, user, name, confirmed, now)
        old = Deal.objects.select_for_update().get(pk=deal.pk)
        if old.status in (DealStatus.ENDED, DealStatus.TERMINATED, DealStatus.CANCELLED):
            raise DealError(f"a deal that is {old.status} cannot change")
        if old.signed_at is None:
            saved = _change_draft(old, deal, terms, user, name, confirmed, now)
        else:
            if (deal.streamer_id, deal.starts_on) != (old.streamer_id, old.starts_on):
                raise ValidationError(
                    "A signed deal keeps its streamer and its first day; terminate it and "
                    "create a new deal instead."
                )
            saved = _propose(old, terms, effective_from, user, name, confirmed, now)
        if deal.notes != old.notes:
            Deal.objects.filter(pk=old.pk).update(notes=deal.notes)
            _deal_event(old, user, name, Action.NOTES, old.status, old.status,
                        "notes changed", now)
            if saved.outcome == "unchanged":
                saved = replace(saved, outcome="notes")
    deal.refresh_from_db()
    return replace(saved, deal=deal)


def _checked(deal: Deal, terms: DealTerms, effective_from: date | None, confirmed: bool) -> Review:
    result = review_deal(deal, terms, effective_from=effective_from)
    if result.errors:
        raise ValidationError(result.errors)
    if result.warnings and not confirmed:
        raise UnconfirmedWarnings(result.warnings)
    return result


def _confirmed_note(result: Review) -> str:
    return ("; confirmed despite: " + " ".join(result.warnings)) if result.warnings else ""


def _create(
    deal: Deal, terms: DealTerms, user: Any, name: str, confirmed: bool, now: datetime
) -> SavedDeal:
    result = _checked(deal, terms, None, confirmed)
    deal.status = DealStatus.DRAFT
    deal.created_by, deal.created_at = user, now
    deal.ends_on = terms.ends_on
    deal.signed_at = deal.signed_by = None
    deal.save()
    version = DealVersion.objects.create(
        deal=deal, number=1, effective_from=deal.starts_on, **_version_fields(terms),
        proposed_at=now, proposed_by=user, proposed_by_name=name,
        changed_at=now, changed_by=user, changed_by_name=name,
    )
    _deal_event(deal, user, name, Action.CREATED, "", DealStatus.DRAFT,
                f"created with terms v1: {terms.describe()}{_confirmed_note(result)}", now,
                version)
    return SavedDeal(deal, version, "created", result.warnings)


def _version_fields(terms: DealTerms) -> dict[str, Any]:
    return {f.name: getattr(terms, f.name) for f in fields(DealTerms)}


def _change_draft(
    old: Deal, deal: Deal, terms: DealTerms, user: Any, name: str, confirmed: bool,
    now: datetime,
) -> SavedDeal:
    version = old.pending_version()
    if version is None:  # a draft always has its proposal; refuse rather than guess
        raise DealError("this draft has no terms to change")
    changes = terms.differences(DealTerms.of(version))
    if deal.streamer_id != old.streamer_id:
        changes.insert(0, f"streamer {old.streamer} → {deal.streamer}")
    if deal.starts_on != old.starts_on:
        changes.insert(0, f"term starts {old.starts_on} → {deal.starts_on}")
    if not changes:
        return SavedDeal(old, version, "unchanged")
    old.streamer_id, old.starts_on = deal.streamer_id, deal.starts_on
    result = _checked(old, terms, None, confirmed)
    old.ends_on = terms.ends_on
    old.save(update_fields=["streamer", "starts_on", "ends_on"])
    _write_version(version, terms, old.starts_on, user, name, now)
    _deal_event(old, user, name, Action.CHANGED, old.status, old.status,
                f"v{version.number} changed: {'; '.join(changes)}{_confirmed_note(result)}",
                now, version)
    return SavedDeal(old, version, "changed", result.warnings)


def _write_version(
    version: DealVersion, terms: DealTerms, effective_from: date, user: Any, name: str,
    now: datetime,
) -> None:
    for key, value in _version_fields(terms).items():
        setattr(version, key, value)
    version.effective_from = effective_from
    version.changed_at, version.changed_by, version.changed_by_name = now, user, name
    version.save()


def _propose(
    deal: Deal, terms: DealTerms, effective_from: date | None, user: Any, name: str,
    confirmed: bool, now: datetime,
) -> SavedDeal:
    pending = deal.pending_version()
    signed = deal.signed_versions()
    base = pending or signed[-1]
    if effective_from is None and pending is not None:
        effective_from = pending.effective_from
    same_start = effective_from is None or effective_from == base.effective_from
    if terms == DealTerms.of(base).normalised() and (pending is None or same_start):
        return SavedDeal(deal, pending, "unchanged")
    result = _checked(deal, terms, effective_from, confirmed)
    assert effective_from is not None  # _checked refused a missing one
    if pending is not None:
        changes = terms.differences(DealTerms.of(pending))
        if effective_from != pending.effective_from:
            changes.append(f"applies from {pending.effective_from} → {effective_from}")
        _write_version(pending, terms, effective_from, user, name, now)
        _deal_event(deal, user, name, Action.CHANGED, deal.status, deal.status,
                    f"proposed v{pending.number} changed: {'; '.join(changes)}"
                    f"{_confirmed_note(result)}", now, pending)
        return SavedDeal(deal, pending, "changed", result.warnings)
    number = max(v.number for v in deal.versions.all()) + 1
    version = DealVersion.objects.create(
        deal=deal, number=number, effective_from=effective_from, **_version_fields(terms),
        proposed_at=now, proposed_by=user, proposed_by_name=name,
        changed_at=now, changed_by=user, changed_by_name=name,
    )
    changes = terms.differences(DealTerms.of(signed[-1]))
    _deal_event(
        deal, user, name, Action.PROPOSED, deal.status, deal.status,
        f"proposed v{number}, from {effective_from}, to replace v{signed[-1].number}: "
        f"{'; '.join(changes)}; v{signed[-1].number} applies until another admin signs"
        f"{_confirmed_note(result)}",
        now, version,
    )
    return SavedDeal(deal, version, "proposed", result.warnings)


def authors(version: DealVersion) -> set[int]:
    """The ids of everyone who wrote any part of these terms."""
    ids = set(
        DealEvent.objects.filter(
            version=version, refused=False,
            action__in=[Action.CREATED, Action.CHANGED, Action.PROPOSED],
            actor__isnull=False,
        ).values_list("actor_id", flat=True)
    )
    ids.update(i for i in (version.proposed_by_id, version.changed_by_id) if i is not None)
    return ids


@contextmanager
def _deal_refusals(
    deal: Deal, user: Any, name: str, attempted: str, action: str
) -> Iterator[None]:
    """Records a refused attempt in the deal's trail once its transaction rolled back."""
    try:
        yield
    except DealError as error:
        current = Deal.objects.filter(pk=deal.pk).values_list("status", flat=True).first()
        if current is not None:
            DealEvent.objects.create(
                deal_id=deal.pk, actor=user, actor_name=name, action=action, refused=True,
                from_status=current, to_status=attempted, note=str(error),
            )
        raise


def sign_deal(deal: Deal, *, actor: Any, now: datetime | None = None) -> Deal:
    """Signs the deal's proposed terms: a draft becomes active; a change to signed terms
    applies from its first day. The signer must not have written any part of them.

    Idempotent: a deal with nothing waiting to be signed is returned unchanged (``changed``
    is False on it). Raises DealError for the terms' own author, terms that have become
    impossible (an overlapping deal, a month decided since), or a deal that is over.
    """
    now = now or timezone.now()
    user, name = _person(actor, "a deal is signed", DealError)
    with _deal_refusals(deal, user, name, DealStatus.ACTIVE, Action.SIGNED), transaction.atomic():
        _require(user, SIGN, DealError)
        Streamer.objects.select_for_update().filter(pk=deal.streamer_id).get()
        locked = Deal.objects.select_for_update().get(pk=deal.pk)
        pending = locked.pending_version()
        if pending is None:
            if locked.signed_at is None:
                raise DealError(f"a deal that is {locked.status} cannot be signed")
            locked.changed = False
            return locked
        if locked.status not in (DealStatus.DRAFT, DealStatus.ACTIVE, DealStatus.PAUSED):
            raise DealError(f"a deal that is {locked.status} cannot be signed")
        if user.pk in authors(pending):
            raise DealError(
                f"{name} wrote these terms (v{pending.number}) and cannot sign them too: "
                "another admin must"
            )
        terms = DealTerms.of(pending)
        effective = pending.effective_from if locked.signed_at is not None else None
        result = review_deal(locked, terms, effective_from=effective)
        if result.errors:
            raise DealError(" ".join(result.errors.values()))
        pending.status = VersionStatus.SIGNED
        pending.signed_at, pending.signed_by, pending.signed_by_name = now, user, name
        pending.save(update_fields=["status", "signed_at", "signed_by", "signed_by_name"])
        old_status = locked.status
        locked.ends_on = pending.ends_on
        fields_ = ["ends_on"]
        if locked.signed_at is None:
            locked.status = DealStatus.ACTIVE
            locked.signed_by, locked.signed_at = user, now
            fields_ += ["status", "signed_by", "signed_at"]
            note = f"signed v1: {terms.describe()}"
        else:
            note = f"signed v{pending.number}: applies from {pending.effective_from}"
        if result.warnings:
            note += "; signed despite: " + " ".join(result.warnings)
        locked.save(update_fields=fields_)
        _deal_event(locked, user, name, Action.SIGNED, old_status, locked.status, note,
                    now, pending)
    locked.changed = True
    return locked


def withdraw_proposal(
    deal: Deal, *, actor: Any, reason: str = "", now: datetime | None = None
) -> Deal:
    """Drops a signed deal's pending change; the signed terms go on applying. Idempotent
    when nothing is pending. Raises DealError for a draft (cancel it instead)."""
    now = now or timezone.now()
    user, name = _person(actor, "a proposal is withdrawn", DealError)
    with transaction.atomic():
        locked = Deal.objects.select_for_update().get(pk=deal.pk)
        pending = locked.pending_version()
        if pending is None:
            return locked
        if locked.signed_at is None or not locked.signed_versions():
            raise DealError(
                "these are the deal's only terms: cancel or terminate the deal instead"
            )
        _withdraw(locked, pending, user, name, reason.strip() or "withdrawn", now)
    return locked


def _withdraw(
    deal: Deal, version: DealVersion, user: Any, name: str, why: str, now: datetime
) -> None:
    version.status = VersionStatus.WITHDRAWN
    version.save(update_fields=["status"])
    _deal_event(deal, user, name, Action.WITHDRAWN, deal.status, deal.status,
                f"v{version.number} withdrawn: {why}", now, version)


def set_deal_status(
    deal: Deal,
    status: str,
    *,
    actor: Any,
    note: str = "",
    effective_on: date | None = None,
    now: datetime | None = None,
) -> Deal:
    """Pauses, resumes, ends or terminates a deal (signing is `sign_deal`).

    A deal never signed owes nothing: ending, terminating or cancelling it cancels it.
    Ending or terminating a signed deal on ``effective_on`` (default today, UTC) makes
    that day its last, if earlier than its end: the term is never extended or restarted,
    and a deal terminated before its start keeps that day as its end, before its start,
    so no day is owed. The audit note states the stored end. Raises DealError for a
    transition the status does not allow, or a last day inside a month already approved
    or paid. Idempotent when the deal already has that status.
    """
    now = now or timezone.now()
    user, name = _who(actor, "")
    with _deal_refusals(deal, user, name, status, Action.STATUS), transaction.atomic():
        locked = Deal.objects.select_for_update().get(pk=deal.pk)
        target = status
        if locked.signed_at is None and status in (
            DealStatus.ENDED, DealStatus.TERMINATED, DealStatus.CANCELLED
        ):
            target = DealStatus.CANCELLED
        if locked.status == target:
            return locked
        if target == DealStatus.ACTIVE and locked.status == DealStatus.DRAFT:
            raise DealError("sign the deal to make it active")
        if target not in DEAL_TRANSITIONS[locked.status]:
            raise DealError(f"a deal that is {locked.status} cannot become {status}")
        notes = [note.strip()] if note.strip() else []
        fields_ = ["status"]
        if target == DealStatus.CANCELLED:
            notes.append("cancelled before anyone signed it: it never owed anything")
        elif target in (DealStatus.ENDED, DealStatus.TERMINATED):
            notes.append(_cut_term(locked, target, effective_on or now.date()))
            fields_.append("ends_on")
        pending = locked.pending_version()
        if pending is not None and target in (
            DealStatus.ENDED, DealStatus.TERMINATED, DealStatus.CANCELLED
        ):
            _withdraw(locked, pending, user, name, f"the deal is {target}", now)
        old_status, locked.status = locked.status, target
        locked.save(update_fields=fields_)
        _deal_event(locked, user, name, Action.STATUS, old_status, target,
                    "; ".join(notes), now)
    return locked


def _cut_term(deal: Deal, status: str, last_day: date) -> str:
    """Sets the deal's last day for ending or terminating it; returns the audit sentence."""
    decided = earliest_change(deal) - timedelta(days=1)
    if deal.signed_at is not None and last_day < decided and decided >= deal.starts_on:
        raise DealError(
            f"{Period.of(decided)} is already approved or paid: the last day cannot be before "
            f"{decided} (a paid month is corrected with a clawback)"
        )
    if last_day >= deal.ends_on:
        return f"the term already ends on {deal.ends_on}: its end is unchanged"
    if last_day < deal.starts_on and status != DealStatus.TERMINATED:
        raise DealError(f"the deal starts on {deal.starts_on}: terminate it instead of ending it")
    old_end, deal.ends_on = deal.ends_on, last_day
    sentence = f"term cut short: ends {last_day} instead of {old_end}"
    if last_day < deal.starts_on:
        sentence += f", before its start on {deal.starts_on}: no day of the term is owed"
    return sentence


def _deal_event(
    deal: Deal, user: Any, name: str, action: str, from_status: str, to_status: str,
    note: str, at: datetime | None = None, version: DealVersion | None = None,
) -> None:
    DealEvent.objects.create(
        deal=deal, version=version, at=at or timezone.now(), actor=user, actor_name=name,
        action=action, from_status=from_status, to_status=to_status, note=note,
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
    """Computes the deal's payout for a closed period into a draft, with its lines, using
    the signed terms in force in that period.

    Idempotent: computing again replaces the draft's figures and lines in the same row
    (a void payout becomes a draft again). Raises PayoutError when the period has not
    ended yet, the deal was never signed, its term misses the period, or the payout is
    already approved or paid.
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
        if deal.signed_at is None:
            raise PayoutError(
                f"the deal with {deal.streamer} was never signed: it owes nothing"
            )
        version = deal.version_for(period)
        if version is None:
            raise PayoutError(f"no signed terms of the deal with {deal.streamer} cover {period}")
        if version.currency not in CURRENCIES:
            raise PayoutError(
                f"the deal's currency {version.currency!r} is not one golive pays in: "
                "change its terms (a new version) first"
            )
        try:
            result = calculate(version.terms(deal), period, sessions_of(deal, period), now=now)
        except CalculationError as error:
            raise PayoutError(str(error)) from None
        payout = Payout.objects.filter(
            deal=deal, period_start=period.first_day, kind=Kind.REGULAR
        ).first()
        if payout is not None and payout.status in DECIDED:
            raise PayoutError(
                f"the {period} payout for {deal.streamer} is already {payout.status}"
                + (": void it first to recompute" if payout.status == Status.APPROVED else "")
            )
        money = Money(result.currency)
        terms_note = f"terms v{version.number}"
        if payout is None:
            payout = Payout(deal=deal, period_start=period.first_day)
            from_status, note = "", f"computed with {terms_note}: {money(result.amount_cents)}"
        else:
            from_status = payout.status
            note = (f"recomputed with {terms_note}: {money(payout.amount_cents)} → "
                    f"{money(result.amount_cents)}")
        _fill(payout, result, user, name, now)
        payout.version = version
        payout.save()
        payout.lines.all().delete()
        PayoutLine.objects.bulk_create(
            PayoutLine(
                payout=payout, position=position, label=line.label, detail=line.detail,
                amount_cents=line.amount_cents,
            )
            for position, line in enumerate(_lines(result, version), start=1)
        )
        _payout_event(payout, user, name, from_status, Status.DRAFT, note, now)
    log.info("payout %s for %s computed by %s: %d cents", period, deal.streamer, name,
             payout.amount_cents)
    return payout


def _lines(result: Calculation, version: DealVersion) -> list[Line]:
    signed = (
        f"signed by {version.signed_by_name or 'an admin'} on {version.signed_at:%Y-%m-%d}"
        if version.signed_at else "signed"
    )
    return [
        Line("terms", f"v{version.number} of the deal's terms, in force from "
                      f"{version.effective_from}, {signed}"),
        *result.lines,
    ]


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


def single_approver_limit(currency: str) -> int:
    """Below this many cents one admin may approve and pay alone (0: never).

    From ``GOLIVE_SINGLE_APPROVER_BELOW`` ("USD 250.00, EUR 200.00"); empty by default."""
    try:
        limits = parse_thresholds(getattr(settings, "GOLIVE_SINGLE_APPROVER_BELOW", ""))
    except AmountError:  # reported by check deals.E001; meanwhile, the safe reading
        log.error("GOLIVE_SINGLE_APPROVER_BELOW cannot be read: every payout needs two admins")
        return 0
    return limits.get(currency, 0)


def _alone_allowed(payout: Payout) -> bool:
    return payout.amount_cents < single_approver_limit(payout.currency)


@contextmanager
def _payout_refusals(payout: Payout, user: Any, name: str, attempted: str) -> Iterator[None]:
    """Records a refused attempt in the payout's trail once its transaction rolled back."""
    try:
        yield
    except PayoutError as error:
        current = Payout.objects.filter(pk=payout.pk).values("status", "amount_cents").first()
        if current is not None:
            PayoutEvent.objects.create(
                payout_id=payout.pk, actor=user, actor_name=name, refused=True,
                from_status=current["status"], to_status=attempted,
                amount_cents=current["amount_cents"], note=str(error),
            )
        raise


# How each kind of payout moves money: (approve, pay) as (entry kind, debit, credit). A
# void after approval posts the approval's entry reversed.
FLOWS: dict[str, tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]] = {
    Kind.REGULAR: (
        (Entry.ACCRUAL, Account.DEAL_EXPENSE, Account.STREAMER_PAYABLE),
        (Entry.PAYMENT, Account.STREAMER_PAYABLE, Account.CASH),
    ),
    Kind.ADJUSTMENT: (
        (Entry.ACCRUAL, Account.DEAL_EXPENSE, Account.STREAMER_PAYABLE),
        (Entry.PAYMENT, Account.STREAMER_PAYABLE, Account.CASH),
    ),
    Kind.CLAWBACK: (
        (Entry.CLAWBACK, Account.STREAMER_RECEIVABLE, Account.DEAL_EXPENSE),
        (Entry.RECOVERY, Account.CASH, Account.STREAMER_RECEIVABLE),
    ),
}


def approve_payout(payout: Payout, *, actor: Any, now: datetime | None = None) -> Payout:
    """Draft → approved; posts the accrual (a clawback: what the streamer owes back).

    The approver is not the admin who computed the payout (a payout the system computed
    may be approved by any admin; then another one marks it paid). Idempotent for an
    approved payout (``changed`` is False on the result). Raises PayoutError for
    self-approval, an anonymous actor, a void or paid payout, a deal never signed, or a
    payout computed with terms that are no longer the ones in force for its month. A
    refusal is recorded in the payout's audit trail.
    """
    now = now or timezone.now()
    user, name = _person(actor, "a payout is approved")
    with _payout_refusals(payout, user, name, Status.APPROVED), transaction.atomic():
        _require(user, APPROVE)
        payout = _lock(payout)
        if payout.status == Status.APPROVED:
            payout.changed = False
            return payout
        if payout.status != Status.DRAFT:
            raise PayoutError(f"a {payout.status} payout cannot be approved")
        deal = payout.deal
        if deal.signed_at is None:
            raise PayoutError(f"the deal with {deal.streamer} was never signed: nothing is owed")
        if payout.kind == Kind.REGULAR:
            in_force = deal.version_for(payout.period)
            if in_force is None or in_force.pk != payout.version_id:
                raise PayoutError(
                    f"this payout was computed with other terms than those now in force for "
                    f"{payout.period} (v{in_force.number if in_force else '?'}): recompute it"
                )
        notes = ["approved"]
        if payout.computed_by_id == user.pk:
            if not _alone_allowed(payout):
                raise PayoutError(
                    f"{name} computed this payout and cannot approve it too: another admin must"
                )
            notes.append(_alone_note(payout, "computed and approved"))
        payout.status, payout.approved_by, payout.approved_at = Status.APPROVED, user, now
        payout.save(update_fields=["status", "approved_by", "approved_at"])
        entry, debit, credit = FLOWS[payout.kind][0]
        ledger.post(payout, entry, debit=debit, credit=credit,
                    amount_cents=payout.amount_cents, at=now)
        _payout_event(payout, user, name, Status.DRAFT, Status.APPROVED, "; ".join(notes), now)
    payout.changed = True
    return payout


def _alone_note(payout: Payout, what: str) -> str:
    limit = Money(payout.currency)(single_approver_limit(payout.currency))
    return f"{what} by one admin: below the single-approver limit of {limit}"


def mark_paid(
    payout: Payout, *, actor: Any, reference: str, now: datetime | None = None
) -> Payout:
    """Approved → paid with the payment's reference (a clawback: recovered, with the
    reference of the money received); posts the payment. The admin is not the one who
    approved it. Idempotent when repeated with the same reference (``changed`` is False
    on the result). Raises PayoutError without a reference, for a payout that is not
    approved, or for its own approver; a refusal is recorded in the audit trail.
    """
    now = now or timezone.now()
    reference = reference.strip()
    if not reference:
        raise PayoutError("give the payment's reference (bank transfer id, invoice number)")
    if len(reference) > 200:
        raise PayoutError("a payment reference is at most 200 characters")
    user, name = _person(actor, "a payout is marked paid")
    with _payout_refusals(payout, user, name, Status.PAID), transaction.atomic():
        _require(user, PAY)
        payout = _lock(payout)
        if payout.status == Status.PAID and payout.payment_reference == reference:
            payout.changed = False
            return payout
        if payout.status != Status.APPROVED:
            raise PayoutError(f"a {payout.status} payout cannot be marked paid")
        notes = [f"reference {reference}"]
        if payout.approved_by_id == user.pk:
            if not _alone_allowed(payout):
                raise PayoutError(
                    f"{name} approved this payout and cannot mark it paid too: another admin "
                    "must"
                )
            notes.append(_alone_note(payout, "approved and paid"))
        payout.status, payout.paid_by, payout.paid_at = Status.PAID, user, now
        payout.payment_reference = reference
        payout.save(update_fields=["status", "paid_by", "paid_at", "payment_reference"])
        entry, debit, credit = FLOWS[payout.kind][1]
        ledger.post(payout, entry, debit=debit, credit=credit,
                    amount_cents=payout.amount_cents, at=now)
        _payout_event(payout, user, name, Status.APPROVED, Status.PAID, "; ".join(notes), now)
    payout.changed = True
    return payout


def void_payout(
    payout: Payout, *, actor: Any, reason: str, now: datetime | None = None
) -> Payout:
    """Draft or approved → void, with a reason; an approved payout's entry is reversed.
    Idempotent for a void payout (``changed`` is False on the result). Raises PayoutError
    without a reason or for a paid payout (correct it instead); a refusal is recorded."""
    now = now or timezone.now()
    reason = reason.strip()
    if not reason:
        raise PayoutError("say why the payout is voided (a reason is required)")
    user, name = _person(actor, "a payout is voided")
    with _payout_refusals(payout, user, name, Status.VOID), transaction.atomic():
        _require(user, APPROVE)
        payout = _lock(payout)
        if payout.status == Status.VOID:
            payout.changed = False
            return payout
        if payout.status == Status.PAID:
            raise PayoutError(
                "a paid payout cannot be voided: correct it with an adjustment or a clawback"
            )
        if payout.status == Status.APPROVED:
            _, debit, credit = FLOWS[payout.kind][0]
            ledger.post(payout, Entry.REVERSAL, debit=credit, credit=debit,
                        amount_cents=payout.amount_cents, at=now)
        from_status = payout.status
        payout.status, payout.voided_by, payout.voided_at = Status.VOID, user, now
        payout.void_reason = reason
        payout.save(update_fields=["status", "voided_by", "voided_at", "void_reason"])
        _payout_event(payout, user, name, from_status, Status.VOID, reason, now)
    payout.changed = True
    return payout


def settled_cents(original: Payout) -> int:
    """What has moved to the streamer for the original's month so far: the paid payout,
    plus paid adjustments, minus approved or recovered clawbacks."""
    total = original.amount_cents if original.status == Status.PAID else 0
    for correction in Payout.objects.filter(corrects=original):
        if correction.kind == Kind.ADJUSTMENT and correction.status == Status.PAID:
            total += correction.amount_cents
        elif correction.kind == Kind.CLAWBACK and correction.status in DECIDED:
            total -= correction.amount_cents
    return total


def correct_payout(
    original: Payout,
    *,
    kind: str,
    amount_cents: int,
    reason: str,
    actor: Any,
    now: datetime | None = None,
) -> Payout:
    """A draft adjustment (more is owed to the streamer) or clawback (the streamer owes
    some back) for a paid payout's month. The paid payout is never edited; the correction
    goes through approval (by another admin) and payment like any payout.

    Raises PayoutError for a payout that is not a paid month's payout, a missing reason,
    an amount that is not positive, or a clawback of more than the month has paid.
    """
    now = now or timezone.now()
    reason = reason.strip()
    if kind not in (Kind.ADJUSTMENT, Kind.CLAWBACK):
        raise PayoutError(f"a correction is an adjustment or a clawback, not {kind!r}")
    if not reason:
        raise PayoutError("say why the payout is corrected (a reason is required)")
    if amount_cents <= 0:
        raise PayoutError("a correction moves a positive amount; pick its direction instead")
    user, name = _person(actor, "a payout is corrected")
    with transaction.atomic():
        original = _lock(original)
        if original.kind != Kind.REGULAR:
            raise PayoutError("correct the month's payout itself, not one of its corrections")
        if original.status != Status.PAID:
            raise PayoutError(
                f"a {original.status} payout is not corrected: "
                + ("void it and compute it again" if original.status != Status.VOID
                   else "compute it again")
            )
        money = Money(original.currency)
        settled = settled_cents(original)
        if kind == Kind.CLAWBACK and amount_cents > settled:
            raise PayoutError(
                f"cannot claw back {money(amount_cents)}: {original.period} has paid "
                f"{money(settled)} so far"
            )
        correction = Payout.objects.create(
            deal=original.deal, kind=kind, corrects=original, version=original.version,
            reason=reason, period_start=original.period_start, status=Status.DRAFT,
            amount_cents=amount_cents, currency=original.currency,
            requirements_met=original.requirements_met, computed_at=now,
            computed_by=user, computed_by_name=name,
        )
        signed = money.signed(correction.net_cents)
        PayoutLine.objects.create(
            payout=correction, position=1, label=kind,
            detail=(
                f"{signed} to the {original.period} payout #{original.pk} (paid "
                f"{money(original.amount_cents)}, reference {original.payment_reference}); "
                f"settled for the month before this: {money(settled)}; why: {reason}"
            ),
            amount_cents=amount_cents,
        )
        _payout_event(correction, user, name, "", Status.DRAFT,
                      f"{kind} {signed} of #{original.pk}: {reason}", now)
        _payout_event(original, user, name, original.status, original.status,
                      f"corrected by {kind} #{correction.pk} ({signed}, draft): {reason}", now)
    return correction


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
    requirements_met: bool | None = None
    currency: str | None = None


def close_period(
    period: Period,
    *,
    actor: Any = None,
    actor_name: str = "",
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[Closing]:
    """Computes the period's draft payouts for every deal that owes one.

    Deals: signed (never a draft or a cancelled one), active, ended or terminated, with a
    term overlapping the period. Approved, paid and void payouts are left alone, so
    running it again is harmless. ``dry_run`` calculates and reports without writing.
    Raises PayoutError when the period has not ended; a failure for one deal is reported
    and the rest go on.
    """
    now = now or timezone.now()
    _require_closed(period, now)
    deals = (
        Deal.objects.filter(
            signed_at__isnull=False, starts_on__lt=period.end_day,
            ends_on__gte=period.first_day,
        )
        .exclude(status__in=[DealStatus.DRAFT, DealStatus.CANCELLED])
        .select_related("streamer")
        .prefetch_related("versions")
        .order_by("id")
    )
    existing = {
        payout.deal_id: payout
        for payout in Payout.objects.filter(period_start=period.first_day, kind=Kind.REGULAR)
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
        return Closing(deal, "skipped", f"the payout is {payout.status}", payout.amount_cents,
                       currency=payout.currency)
    if dry_run:
        terms = deal.terms_for(period)
        if terms is None:
            return Closing(deal, "skipped", f"no signed terms cover {period}")
        try:
            result = calculate(terms, period, sessions_of(deal, period), now=now)
        except CalculationError as error:
            return Closing(deal, "failed", str(error))
        return Closing(deal, "would compute", _verdict(result.requirements_met),
                       result.amount_cents, result.requirements_met, result.currency)
    try:
        computed = compute_payout(deal, period, actor=actor, actor_name=actor_name, now=now)
    except DealError as error:
        log.warning("closing %s: the deal with %s failed: %s", period, deal.streamer, error)
        return Closing(deal, "failed", str(error))
    return Closing(deal, "computed", _verdict(computed.requirements_met),
                   computed.amount_cents, computed.requirements_met, computed.currency)


def _verdict(met: bool) -> str:
    return "requirements met" if met else "a minimum was missed"
