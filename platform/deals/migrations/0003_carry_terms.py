"""Carries every deal's terms into its versions, keeping what was really signed.

- A signed deal's version 1 holds the terms as signed. Terms edited after the signature
  (the audit trail's "field before → after" notes) were never signed: version 1 gets the
  values from before those edits, and the edited terms become version 2, proposed, waiting
  for another admin's signature. When the notes cannot be read back for certain, version 1
  is left proposed: the deal pays nothing more until an admin signs its terms again.
- A deal never signed that was terminated or ended is cancelled: it never owed anything.
  Its draft payouts are voided.
- A deal terminated before its start kept its first day as its end while the audit note
  stated another day; the stored end becomes the day the note states.
- Draft payouts lose their version, so they are recomputed before anyone approves them;
  decided ones keep the version in force for their month.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import migrations
from django.utils import timezone

TERMS = [
    "kind", "amount_cents", "currency", "revenue_share_bps", "min_hours", "min_streams",
    "exclusive", "shortfall",
]
# The fields the old edit notes named, in the order they were written (model_to_dict).
NOTED = [
    "streamer", "kind", "amount_cents", "currency", "revenue_share_bps", "starts_on",
    "ends_on", "min_hours", "min_streams", "exclusive", "shortfall", "status", "notes",
]
_FIELD = re.compile(r"(?:^|; )(" + "|".join(NOTED) + r") ")
_CUT = re.compile(r"term cut short: ends (\d{4}-\d{2}-\d{2}) instead of (\d{4}-\d{2}-\d{2})")
MIGRATION = "migration"


def parse_changes(note: str) -> dict[str, tuple[str, str]] | None:
    """ "amount_cents 200000 → 250000; min_hours 40.00 → 30" → {field: (before, after)};
    None when the note cannot be read back for certain."""
    matches = list(_FIELD.finditer(note))
    if not matches or matches[0].start() != 0:
        return None
    changes: dict[str, tuple[str, str]] = {}
    order = -1
    for index, match in enumerate(matches):
        name = match[1]
        if NOTED.index(name) <= order:
            continue  # the text of an earlier value, not a field of its own
        end = len(note) if name == "notes" else (
            next((m.start() for m in matches[index + 1:] if NOTED.index(m[1]) > NOTED.index(name)),
                 len(note))
        )
        before, arrow, after = note[match.end():end].partition(" → ")
        if not arrow:
            return None
        changes[name] = (before, after)
        order = NOTED.index(name)
        if name == "notes":
            break
    return changes


def value(field: str, text: str) -> Any:
    if field in ("amount_cents", "revenue_share_bps", "min_streams"):
        return int(text)
    if field == "min_hours":
        return Decimal(text)
    if field == "exclusive":
        if text not in ("True", "False"):
            raise ValueError(text)
        return text == "True"
    return text


def carry_terms(apps: Any, schema_editor: Any) -> None:
    Deal = apps.get_model("deals", "Deal")
    DealEvent = apps.get_model("deals", "DealEvent")
    DealVersion = apps.get_model("deals", "DealVersion")
    Payout = apps.get_model("deals", "Payout")
    PayoutEvent = apps.get_model("deals", "PayoutEvent")
    now = timezone.now()
    for deal in Deal.objects.order_by("id"):
        events = list(DealEvent.objects.filter(deal=deal).order_by("at", "id"))
        for event in events:
            event.action = _action(event)
            event.save(update_fields=["action"])
        creator = deal.created_by
        creator_name = _name(creator) or "system"
        editors = [e for e in events if e.action == "changed"]
        last = editors[-1] if editors else None
        editor, editor_name = (last.actor, last.actor_name) if last else (creator, creator_name)
        current = {name: getattr(deal, name) for name in TERMS}
        written = {
            "proposed_at": deal.created_at, "proposed_by": creator,
            "proposed_by_name": creator_name, "changed_at": last.at if last else deal.created_at,
            "changed_by": editor, "changed_by_name": editor_name or "",
        }
        cut = next((_CUT.search(e.note) for e in events if _CUT.search(e.note)), None)
        signed_end = date.fromisoformat(cut[2]) if cut else deal.ends_on
        if deal.signed_at is None:
            _carry_unsigned(deal, current, written, DealVersion, DealEvent, Payout, PayoutEvent,
                            now)
            continue
        if cut and deal.status == "terminated":
            stated = date.fromisoformat(cut[1])
            if stated < deal.starts_on and deal.ends_on != stated:
                DealEvent.objects.create(
                    deal=deal, at=now, actor_name=MIGRATION, action="status",
                    from_status=deal.status, to_status=deal.status,
                    note=f"stored end {deal.ends_on} corrected to {stated}, the day the "
                    "termination note states: before its start, so no day is owed",
                )
                deal.ends_on = stated
                deal.save(update_fields=["ends_on"])
        signed_terms = _as_signed(events, current)
        signer = deal.signed_by
        signature = {
            "signed_at": deal.signed_at, "signed_by": signer,
            "signed_by_name": _name(signer),
        }
        if signed_terms is None:
            v1 = DealVersion.objects.create(
                deal=deal, number=1, status="proposed", effective_from=deal.starts_on,
                ends_on=max(signed_end, deal.starts_on), **current, **written,
            )
            _note(DealEvent, deal, v1, now, "terms were changed after the deal was signed "
                  "and what was signed cannot be read back for certain: another admin must "
                  "sign these terms before anything more is paid")
            _payouts(Payout, deal, None)
            continue
        v1 = DealVersion.objects.create(
            deal=deal, number=1, status="signed", effective_from=deal.starts_on,
            ends_on=max(signed_end, deal.starts_on), **signed_terms, **signature,
            **(written | {"changed_at": deal.signed_at}),
        )
        _payouts(Payout, deal, v1)
        if signed_terms != current:
            _propose_unsigned_edit(deal, v1, current, written, DealVersion, DealEvent, Payout,
                                   now)


def _name(user: Any) -> str:
    """A historical user's name (historical models have none of the model's methods)."""
    return str(getattr(user, get_user_model().USERNAME_FIELD)) if user is not None else ""


def _action(event: Any) -> str:
    if not event.from_status:
        return "created"
    if event.from_status == event.to_status:
        return "changed"
    if event.from_status == "draft" and event.to_status == "active":
        return "signed"
    return "status"


def _as_signed(events: list[Any], current: dict[str, Any]) -> dict[str, Any] | None:
    """The terms as they were when signed: the edits after the signature undone."""
    signed_at = next((i for i, e in enumerate(events) if e.action == "signed"), None)
    if signed_at is None:
        return dict(current)
    terms = dict(current)
    for event in reversed(events[signed_at + 1:]):
        if event.action != "changed":
            continue
        changes = parse_changes(event.note)
        if changes is None or {"streamer", "starts_on", "ends_on"} & changes.keys():
            return None
        try:
            for name, (before, _after) in changes.items():
                if name in TERMS:
                    terms[name] = value(name, before)
        except (ValueError, ArithmeticError):
            return None
    return terms


def _carry_unsigned(
    deal: Any, current: dict[str, Any], written: dict[str, Any], DealVersion: Any,
    DealEvent: Any, Payout: Any, PayoutEvent: Any, now: Any,
) -> None:
    over = deal.status in ("terminated", "ended")
    version = DealVersion.objects.create(
        deal=deal, number=1, status="withdrawn" if over else "proposed",
        effective_from=deal.starts_on, ends_on=max(deal.ends_on, deal.starts_on),
        **current, **written,
    )
    if over:
        DealEvent.objects.create(
            deal=deal, version=version, at=now, actor_name=MIGRATION, action="status",
            from_status=deal.status, to_status="cancelled",
            note=f"was {deal.status} before anyone signed it: cancelled, it never owed anything",
        )
        deal.status = "cancelled"
        deal.save(update_fields=["status"])
    for payout in Payout.objects.filter(deal=deal, status="draft"):
        payout.status, payout.voided_at, payout.void_reason = "void", now, "the deal was never signed"
        payout.save(update_fields=["status", "voided_at", "void_reason"])
        PayoutEvent.objects.create(
            payout=payout, at=now, actor_name=MIGRATION, from_status="draft", to_status="void",
            amount_cents=payout.amount_cents, note="the deal was never signed: nothing is owed",
        )


def _payouts(Payout: Any, deal: Any, version: Any) -> None:
    """Decided payouts were made with the signed terms; drafts are recomputed first."""
    Payout.objects.filter(deal=deal).exclude(status="draft").update(version=version)
    Payout.objects.filter(deal=deal, status="draft").update(version=None)


def _propose_unsigned_edit(
    deal: Any, v1: Any, current: dict[str, Any], written: dict[str, Any], DealVersion: Any,
    DealEvent: Any, Payout: Any, now: Any,
) -> None:
    decided = (
        Payout.objects.filter(deal=deal, status__in=["approved", "paid"])
        .order_by("-period_start").values_list("period_start", flat=True).first()
    )
    start = deal.starts_on
    if decided is not None:
        after = (decided.replace(day=1) + timedelta(days=32)).replace(day=1)
        start = max(start, after)
    ends_on = v1.ends_on
    open_ = start <= ends_on and deal.status in ("active", "paused")
    v2 = DealVersion.objects.create(
        deal=deal, number=2, status="proposed" if open_ else "withdrawn",
        effective_from=min(start, ends_on), ends_on=ends_on, **current, **written,
    )
    _note(DealEvent, deal, v2, now, (
        "these terms were edited after the deal was signed and never signed: they are "
        f"proposed as v2, from {v2.effective_from}; v1 (as signed) applies until another "
        "admin signs them" if open_ else
        "these terms were edited after the deal was signed and never signed; no month is "
        "left for them to apply to, so they are withdrawn and v1 (as signed) applies"
    ))


def _note(DealEvent: Any, deal: Any, version: Any, now: Any, note: str) -> None:
    DealEvent.objects.create(
        deal=deal, version=version, at=now, actor_name=MIGRATION, action="proposed",
        from_status=deal.status, to_status=deal.status, note=note,
    )


def restore_terms(apps: Any, schema_editor: Any) -> None:
    """Going back: each deal gets its latest signed terms (or its first proposal) again."""
    Deal = apps.get_model("deals", "Deal")
    DealVersion = apps.get_model("deals", "DealVersion")
    Payout = apps.get_model("deals", "Payout")
    if Payout.objects.exclude(kind="regular").exists():
        raise RuntimeError("adjustments or clawbacks exist: they cannot be undone")
    for deal in Deal.objects.all():
        versions = DealVersion.objects.filter(deal=deal)
        version = (
            versions.filter(status="signed").order_by("-number").first()
            or versions.order_by("number").first()
        )
        if version is not None:
            for name in TERMS:
                setattr(deal, name, getattr(version, name))
        if deal.status == "cancelled":
            deal.status = "terminated"
        if deal.ends_on < deal.starts_on:
            deal.ends_on = deal.starts_on
        deal.save()


class Migration(migrations.Migration):
    dependencies = [("deals", "0002_terms_versions")]

    operations = [migrations.RunPython(carry_terms, restore_terms)]
