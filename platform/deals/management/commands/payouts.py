"""`manage.py payouts close|ledger`: compute a period's payouts at its close; check the ledger.

For cron (the embedded mode has no Celery beat), early on the 1st of each month, UTC:
    30 0 1 * *  cd /srv/golive && .venv/bin/python manage.py payouts close
Running it again is harmless: only draft payouts are recomputed.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from deals import ledger
from deals.actions import DealError, close_period
from deals.calculation import CalculationError, Period
from deals.money import format_money


class Command(BaseCommand):
    help = "Compute a period's draft payouts at its close, or check the ledger balances."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        close = sub.add_parser(
            "close", help="compute draft payouts for every deal that owes one for the period"
        )
        close.add_argument(
            "--period", help="YYYY-MM (UTC calendar month); default: the month before this one"
        )
        close.add_argument(
            "--dry-run", action="store_true", help="calculate and print, write nothing"
        )
        close.add_argument("--json", action="store_true", help="one JSON object")
        check = sub.add_parser("ledger", help="balances per account; fails if unbalanced")
        check.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "close":
            self.close(options)
        else:
            self.ledger(options["json"])

    def close(self, options: dict[str, Any]) -> None:
        try:
            period = (
                Period.parse(options["period"])
                if options["period"]
                else Period.containing(timezone.now()).previous()
            )
            results = close_period(
                period, actor_name=f"{getpass.getuser()} (payouts close)",
                dry_run=options["dry_run"],
            )
        except (CalculationError, DealError) as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps({
                "period": period.label,
                "dry_run": options["dry_run"],
                "results": [
                    {
                        "deal": result.deal.pk,
                        "streamer": str(result.deal.streamer),
                        "outcome": result.outcome,
                        "detail": result.detail,
                        "amount_cents": result.amount_cents,
                        "currency": result.currency,
                    }
                    for result in results
                ],
            }))
            return
        mode = " (dry run: nothing written)" if options["dry_run"] else ""
        self.stdout.write(f"{period}: {len(results)} deal(s){mode}")
        for result in results:
            amount = (
                format_money(result.amount_cents, result.currency)
                if result.amount_cents is not None and result.currency
                else ""
            )
            self.stdout.write(
                f"  deal {result.deal.pk:<5} {result.deal.streamer!s:<20} "
                f"{result.outcome:<14} {amount:>14}  {result.detail}"
            )
        if any(result.outcome == "computed" for result in results):
            self.stdout.write("Drafts wait for an admin's approval: /admin/deals/payout/")

    def ledger(self, as_json: bool) -> None:
        balances = ledger.balances()
        unbalanced = ledger.unbalanced_transactions()
        if as_json:
            self.stdout.write(json.dumps({
                "balances": [
                    {"account": account, "currency": currency, "debit_minus_credit": cents}
                    for (account, currency), cents in sorted(balances.items())
                ],
                "unbalanced_transactions": [str(t) for t in unbalanced],
            }))
        else:
            self.stdout.write("account            debits minus credits")
            for (account, currency), cents in sorted(balances.items()):
                self.stdout.write(f"{account:<18} {format_money(cents, currency):>20}")
        if unbalanced:
            raise CommandError(
                f"{len(unbalanced)} unbalanced ledger transaction(s): "
                + ", ".join(str(t) for t in unbalanced)
            )
