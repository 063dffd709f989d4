"""`manage.py up`: the whole platform in one process, on its embedded defaults."""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from golive.demo import ensure_demo

log = logging.getLogger(__name__)


def host_port(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, str(default_port)
    try:
        number = int(port)
    except ValueError:
        raise CommandError(f"{text!r} is not HOST:PORT") from None
    if not 0 < number < 65536:
        raise CommandError(f"port {number} is out of range")
    return host.strip("[]") or "0.0.0.0", number


def reachable(host: str) -> str:
    """The address to print for a bind address (0.0.0.0 is not somewhere to browse to)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class Command(BaseCommand):
    help = "Migrate, make sure the demo accounts exist, and serve the platform."
    requires_system_checks: list[str] = []  # checks run explicitly, after migrating

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--http", default="127.0.0.1:8000", help="web HOST:PORT")
        parser.add_argument("--rtmp", default="127.0.0.1:1935", help="RTMP ingest HOST:PORT")
        parser.add_argument(
            "--no-serve", action="store_true", help="set up and print the URLs, then exit"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        http_host, http_port = host_port(options["http"], 8000)
        rtmp_host, rtmp_port = host_port(options["rtmp"], 1935)
        # Printed URLs follow the bind addresses unless the public ones are configured.
        if "GOLIVE_PUBLIC_URL" not in os.environ:
            settings.GOLIVE_PUBLIC_URL = f"http://{reachable(http_host)}:{http_port}"
        if "GOLIVE_RTMP_URL" not in os.environ:
            settings.GOLIVE_RTMP_URL = f"rtmp://{reachable(rtmp_host)}:{rtmp_port}/live"

        call_command("migrate", interactive=False, verbosity=0)
        self.check(display_num_errors=False)
        demo = ensure_demo()
        self.print_banner(demo)
        if options["no_serve"]:
            return
        self.serve(http_host, http_port, rtmp_host, rtmp_port)

    def print_banner(self, demo: Any) -> None:
        public = settings.GOLIVE_PUBLIC_URL
        self.stdout.write(
            "\n"
            "golive is up (embedded mode)\n"
            f"  Watch:       {public}/c/{demo.channel}\n"
            f"  RTMP URL:    {settings.GOLIVE_RTMP_URL}\n"
            f"  Stream key:  {demo.stream_key}\n"
            f"  Dashboard:   {public}/dashboard  (user {demo.streamer},"
            f" password {demo.streamer_password})\n"
            f"  Admin:       {public}/admin/  (user {demo.admin_username},"
            f" password {demo.admin_password})\n"
            f"  Capacity:    {public}/admin/capacity/  (live streams against the quota)\n"
            f"  Metrics:     {public}/metrics\n"
            f"  API docs:    {public}/api/docs/\n"
            "In OBS: Settings > Stream > Service: Custom, Server: the RTMP URL,"
            " Stream Key: the key.\n"
        )
        self.stdout.flush()

    def serve(self, host: str, port: int, rtmp_host: str, rtmp_port: int) -> None:
        # daphne.server installs Twisted's asyncio reactor on import: import it first.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server, twisted_loop
        from twisted.internet import defer, reactor

        from delivery.retention import expire_recordings_periodically
        from golive.asgi import application
        from streams.broadcasts import end_orphaned_sessions
        from streams.ingest_runtime import build_ingest_server

        # One event loop for everything: the web server's (Twisted on asyncio) also runs
        # the RTMP ingest. It binds before serving, so a taken port fails loudly here.
        end_orphaned_sessions(settings.GOLIVE_NODE_NAME)
        ingest = build_ingest_server()
        try:
            twisted_loop.run_until_complete(ingest.start(rtmp_host, rtmp_port))
        except OSError as error:
            raise CommandError(
                f"cannot listen for RTMP on {rtmp_host}:{rtmp_port}: {error}"
            ) from None
        housekeeping = twisted_loop.create_task(expire_recordings_periodically())

        def shut_down() -> defer.Deferred[None]:
            housekeeping.cancel()
            return defer.Deferred.fromFuture(twisted_loop.create_task(ingest.stop()))

        reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
            "before", "shutdown", shut_down
        )
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            server_name="golive",
        ).run()
