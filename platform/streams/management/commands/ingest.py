"""`manage.py ingest`: the RTMP ingest node on its own (cluster mode)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from golive.management.commands.up import host_port
from ingest.runner import run
from streams.broadcasts import end_orphaned_sessions
from streams.ingest_runtime import build_ingest_server


class Command(BaseCommand):
    help = "Run the RTMP ingest. SIGTERM/SIGINT drain it: live sessions end as 'server shutdown'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rtmp", default="0.0.0.0:1935", help="listen on HOST:PORT")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = host_port(options["rtmp"], 1935)
        end_orphaned_sessions(settings.GOLIVE_NODE_NAME)
        run(self.serve(host, port))

    async def serve(self, host: str, port: int) -> None:
        server = build_ingest_server()
        try:
            await server.start(host, port)
        except OSError as error:
            raise CommandError(f"cannot listen for RTMP on {host}:{port}: {error}") from None
        self.stdout.write(f"RTMP ingest on rtmp://{host}:{server.address[1]}/live", ending="\n")
        self.stdout.flush()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        self.stdout.write("draining: ending live sessions")
        await server.stop()
