"""The double-entry ledger: every money movement of a payout is one balanced transaction.

Accounts and what moves between them (a month's payout and an adjustment alike):
- approve (accrual):       Dr deal_expense      Cr streamer_payable
- mark paid (payment):     Dr streamer_payable  Cr cash
- void after approval:     Dr streamer_payable  Cr deal_expense   (reverses the accrual)
A clawback (the streamer owes some of a paid month back):
- approve (clawback):      Dr streamer_receivable  Cr deal_expense
- recovered (recovery):    Dr cash                 Cr streamer_receivable
- void after approval:     Dr deal_expense         Cr streamer_receivable

So `streamer_payable` holds what golive owes streamers and `streamer_receivable` what
streamers owe back; each returns to zero once everything approved is settled or voided.
Called only by `deals.actions`, inside the transaction that changes the payout.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import F, Sum

from .models import LedgerEntry, Payout

Account = LedgerEntry.Account


def post(
    payout: Payout,
    kind: LedgerEntry.Kind,
    *,
    debit: LedgerEntry.Account,
    credit: LedgerEntry.Account,
    amount_cents: int,
    at: datetime,
) -> uuid.UUID | None:
    """Writes one balanced transaction of two rows; returns its id.

    A zero amount moves nothing and writes nothing (returns None). Raises ValueError for
    a negative amount or one account on both sides.
    """
    if amount_cents < 0 or debit == credit:
        raise ValueError(f"cannot post {amount_cents} from {debit} to {credit}")
    if amount_cents == 0:
        return None
    transaction_id = uuid.uuid4()
    common = {
        "transaction_id": transaction_id,
        "payout": payout,
        "kind": kind,
        "currency": payout.currency,
        "created_at": at,
    }
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(account=debit, debit_cents=amount_cents, **common),
            LedgerEntry(account=credit, credit_cents=amount_cents, **common),
        ]
    )
    return transaction_id


def unbalanced_transactions() -> list[uuid.UUID]:
    """Transactions whose debits and credits differ (always empty unless rows were forged)."""
    return list(
        LedgerEntry.objects.values("transaction_id", "currency")
        .annotate(debits=Sum("debit_cents"), credits=Sum("credit_cents"))
        .exclude(debits=F("credits"))
        .values_list("transaction_id", flat=True)
    )


def balances() -> dict[tuple[str, str], int]:
    """Debits minus credits per (account, currency)."""
    rows = LedgerEntry.objects.values("account", "currency").annotate(
        debits=Sum("debit_cents"), credits=Sum("credit_cents")
    )
    return {
        (row["account"], row["currency"]): row["debits"] - row["credits"] for row in rows
    }
