"""Migrations 0002-0004 carry every deal's terms into versions without inventing a signature.

Rows are written in the 0001 shape (terms on the deal, edits as "field before → after"
notes), then the migrations run forward, are checked, run back and forward again.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("deals", "0001_initial")]


def migrate(targets: list[tuple[str, str]] | None = None) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return MigrationExecutor(connection).loader.project_state(targets).apps if targets else None


def when(month: int, day: int, year: int = 2025) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def old_deal(apps: Any, name: str, admins: dict[str, Any], **fields: Any) -> Any:
    user = apps.get_model("auth", "User").objects.create(username=name)
    streamer = apps.get_model("streams", "Streamer").objects.create(user=user, display_name=name)
    values = {
        "kind": "flat", "amount_cents": 200_000, "currency": "USD", "starts_on": date(2025, 1, 1),
        "ends_on": date(2025, 12, 31), "min_hours": Decimal(40), "min_streams": 8,
        "status": "active", "created_by": admins["ada"], "created_at": when(1, 1),
        "signed_by": admins["grace"], "signed_at": when(1, 2),
    }
    return apps.get_model("deals", "Deal").objects.create(streamer=streamer, **(values | fields))


def event(apps: Any, deal: Any, who: Any, from_status: str, to_status: str, note: str,
          at: datetime) -> None:
    apps.get_model("deals", "DealEvent").objects.create(
        deal=deal, actor=who, actor_name=who.username, from_status=from_status,
        to_status=to_status, note=note, at=at,
    )


def payout(apps: Any, deal: Any, month: int, status: str, cents: int) -> Any:
    return apps.get_model("deals", "Payout").objects.create(
        deal=deal, period_start=date(2025, month, 1), status=status, amount_cents=cents,
        currency="USD", computed_at=when(month + 1, 1),
        payment_reference="WIRE" if status == "paid" else "",
    )


def test_the_migrations_keep_what_was_signed_and_never_pay_an_unsigned_deal() -> None:
    old = migrate(BEFORE)
    User = old.get_model("auth", "User")
    admins = {name: User.objects.create(username=name, is_staff=True, is_superuser=True)
              for name in ("ada", "grace")}
    ada, grace = admins["ada"], admins["grace"]

    # Signed at $2,000, then raised to $2,500 and 30 h by ada alone (the old hole).
    edited = old_deal(old, "erin", admins, amount_cents=250_000, min_hours=Decimal(30))
    event(old, edited, ada, "", "draft", "created", when(1, 1))
    event(old, edited, grace, "draft", "active", "signed", when(1, 2))
    event(old, edited, ada, "active", "active",
          "amount_cents 200000 → 250000; min_hours 40.00 → 30", when(2, 10))
    march = payout(old, edited, 3, "approved", 200_000)
    april = payout(old, edited, 4, "draft", 250_000)
    # A draft terminated before anyone signed it, with the draft payout the close made.
    unsigned = old_deal(old, "frank", admins, status="terminated", signed_by=None,
                        signed_at=None)
    event(old, unsigned, ada, "", "draft", "created", when(1, 1))
    event(old, unsigned, ada, "draft", "terminated", "", when(11, 20, 2026))
    unsigned_payout = payout(old, unsigned, 10, "draft", 300_000)
    # Terminated before its start: the note says 2026-12-05, the row kept its first day.
    early = old_deal(old, "gus", admins, status="terminated", starts_on=date(2027, 6, 1),
                     ends_on=date(2027, 6, 1))
    event(old, early, ada, "active", "terminated",
          "term cut short: ends 2026-12-05 instead of 2027-12-31", when(12, 5, 2026))
    # An edit after signing whose note cannot be read back for certain.
    unclear = old_deal(old, "hal", admins, amount_cents=123_400)
    event(old, unclear, grace, "draft", "active", "signed", when(1, 2))
    event(old, unclear, ada, "active", "active", "amount changed by hand", when(3, 3))
    # Signed and never edited.
    plain = old_deal(old, "ivy", admins, kind="per_hour", amount_cents=5_000)
    event(old, plain, grace, "draft", "active", "signed", when(1, 2))

    migrate()
    from deals.models import Deal, DealEvent, DealVersion, Payout, PayoutEvent

    v1, v2 = DealVersion.objects.filter(deal_id=edited.pk).order_by("number")
    assert (v1.status, v1.amount_cents, v1.min_hours, v1.signed_by_name) == (
        "signed", 200_000, Decimal("40.00"), "grace"
    )
    assert (v2.status, v2.amount_cents, v2.min_hours, v2.effective_from) == (
        "proposed", 250_000, Decimal("30.00"), date(2025, 4, 1)
    )
    assert v2.proposed_by_name == "ada"  # so ada cannot be the one to sign it
    assert Payout.objects.get(pk=march.pk).version_id == v1.pk
    assert Payout.objects.get(pk=april.pk).version_id is None  # recompute before approving
    actions = list(DealEvent.objects.filter(deal_id=edited.pk).values_list("action", flat=True))
    assert actions == ["created", "signed", "changed", "proposed"]

    cancelled = Deal.objects.get(pk=unsigned.pk)
    assert cancelled.status == "cancelled"
    assert DealVersion.objects.get(deal=cancelled).status == "withdrawn"
    voided = Payout.objects.get(pk=unsigned_payout.pk)
    assert (voided.status, voided.void_reason) == ("void", "the deal was never signed")
    assert PayoutEvent.objects.filter(payout=voided, to_status="void").exists()

    cut = Deal.objects.get(pk=early.pk)
    assert cut.ends_on == date(2026, 12, 5)
    assert DealVersion.objects.get(deal=cut).ends_on == date(2027, 12, 31)

    assert list(DealVersion.objects.filter(deal_id=unclear.pk).values_list("status", flat=True)) \
        == ["proposed"]
    assert "sign these terms" in DealEvent.objects.filter(deal_id=unclear.pk).last().note
    kept = DealVersion.objects.get(deal_id=plain.pk)
    assert (kept.status, kept.kind, kept.amount_cents) == ("signed", "per_hour", 5_000)

    back = migrate(BEFORE)
    restored = back.get_model("deals", "Deal").objects.get(pk=edited.pk)
    assert (restored.amount_cents, restored.min_hours) == (200_000, Decimal("40.00"))
    migrate()
    assert DealVersion.objects.filter(deal_id=edited.pk).get().amount_cents == 200_000
