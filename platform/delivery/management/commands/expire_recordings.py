"""`manage.py expire_recordings`: delete recordings past their retention (for cron)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from delivery.retention import expire_recordings


class Command(BaseCommand):
    help = (
        "Delete the VOD segments of broadcasts that ended more than GOLIVE_VOD_RETENTION_DAYS"
        " days ago (0 keeps everything)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=int, default=None,
            help=f"override the retention (now {settings.GOLIVE_VOD_RETENTION_DAYS} days)",
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1 (set the setting to 0 to keep all)")
        expired = expire_recordings(days=days, dry_run=options["dry_run"])
        if options["dry_run"]:
            self.stdout.write(f"{expired.sessions} recording(s) past retention (dry run)")
        else:
            self.stdout.write(
                f"deleted {expired.sessions} recording(s), {expired.objects} object(s)"
            )
