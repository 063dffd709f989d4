"""`manage.py createstreamer NAME`: a user, their channel and a stream key, in one step."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from streams.actions import StreamerError, create_streamer
from streams.links import rtmp_url, watch_url


class Command(BaseCommand):
    help = "Create a streamer with a channel and print their stream key (shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="username; the channel slug is made from it")
        parser.add_argument("--partner", action="store_true", help="a partner channel")
        parser.add_argument("--email", default="")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            streamer, key = create_streamer(
                options["name"], email=options["email"], partner=options["partner"]
            )
        except StreamerError as error:
            raise CommandError(str(error)) from None
        channel = streamer.channel
        details = {
            "username": streamer.user.get_username(),
            "channel": channel.slug,
            "stream_key": key,
            "rtmp_url": rtmp_url(),
            "watch_url": watch_url(channel),
        }
        if options["json"]:
            self.stdout.write(json.dumps(details))
            return
        self.stdout.write(
            f"Streamer {details['username']} created"
            f"{' (partner)' if options['partner'] else ''}.\n"
            f"  RTMP URL:   {details['rtmp_url']}\n"
            f"  Stream key: {key}   (shown once; rotate it to get a new one)\n"
            f"  Watch URL:  {details['watch_url']}\n"
            f"The user has no password yet: `manage.py changepassword {details['username']}`"
            f" sets one for {settings.GOLIVE_PUBLIC_URL}/admin/ or the API."
        )
