"""`manage.py quota show|set`: read and change the platform's capacity while it runs."""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from quotas.actions import QuotaError, get_quota, set_quota
from quotas.models import QuotaChange
from streams.models import LiveSession


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


class Command(BaseCommand):
    help = "Show or change the concurrent-stream quota. Changes apply to the next publish."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        show = sub.add_parser("show", help="the current limits and how many streams are live")
        show.add_argument("--json", action="store_true", help="one JSON object")
        change = sub.add_parser("set", help="change one or more limits (audited)")
        change.add_argument("--streams", type=non_negative, help="max concurrent live streams")
        change.add_argument("--transcodes", type=non_negative, help="max transcoded streams")
        change.add_argument(
            "--partner-reserve", type=non_negative, help="slots only partners may use"
        )
        change.add_argument("--reason", required=True, help="why (kept in the audit trail)")
        change.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "set":
            self.set(options)
        self.show(options["json"])

    def set(self, options: dict[str, Any]) -> None:
        if options["streams"] is None and options["transcodes"] is None and (
            options["partner_reserve"] is None
        ):
            raise CommandError(
                "nothing to change: give --streams, --transcodes or --partner-reserve"
            )
        try:
            change = set_quota(
                actor=None,
                actor_name=f"{getpass.getuser()} (shell)",
                source=QuotaChange.Source.COMMAND,
                reason=options["reason"],
                max_streams=options["streams"],
                max_transcodes=options["transcodes"],
                partner_reserve=options["partner_reserve"],
            )
        except QuotaError as error:
            raise CommandError(str(error)) from None
        if not options["json"]:
            self.stdout.write("unchanged" if change is None else f"changed: {change.summary}")

    def show(self, as_json: bool) -> None:
        quota = get_quota()
        live = LiveSession.objects.filter(ended_at__isnull=True).count()
        figures = {
            **quota.as_dict(),
            "live_streams": live,
            "updated_at": quota.updated_at.isoformat(),
        }
        if as_json:
            self.stdout.write(json.dumps(figures))
            return
        self.stdout.write(
            f"live streams     {live} / {quota.max_streams}\n"
            f"transcoded limit {quota.max_transcodes}\n"
            f"partner reserve  {quota.partner_reserve}\n"
            f"updated          {quota.updated_at:%Y-%m-%d %H:%M:%S %Z}"
        )
