"""`manage.py up`: the whole platform in one process, on its embedded defaults.

Served beyond loopback (``--http 0.0.0.0:8000``, a LAN address) it is open to others, so:
DEBUG must stay off (it would show settings and the URLconf on every error page), and
unless ALLOWED_HOSTS is set, the names and addresses it answers to are this machine's own
(host name, its addresses, the bound address, GOLIVE_PUBLIC_URL's host), printed at start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

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
    return "127.0.0.1" if host in WILDCARDS else host


WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_names(bind: str, public_url: str | None) -> list[str]:
    """What ALLOWED_HOSTS must hold for ``up`` bound to ``bind``: loopback names always,
    then the bound address, or for a wildcard this machine's names and addresses, and the
    public URL's host."""
    names = ["localhost", "127.0.0.1", "[::1]"]
    if bind in WILDCARDS:
        names += this_machine()
    elif not is_loopback(bind):
        names.append(_as_host(bind))
    if public_url:
        names.append(urlsplit(public_url).hostname or "")
    return list(dict.fromkeys(name for name in names if name))


def this_machine() -> list[str]:
    """This machine's host name, fully qualified name and addresses (best effort: each
    lookup may fail on a machine without DNS)."""
    names = [socket.gethostname(), socket.getfqdn()]
    with contextlib.suppress(OSError):
        addresses = (info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
        names += [address for address in addresses if isinstance(address, str)]
    names += _default_route_addresses()
    return [_as_host(name) for name in names if name]


def _default_route_addresses() -> Iterable[str]:
    # The source address of the default route: what the LAN reaches this machine at (a
    # host name often resolves to 127.0.1.1 only). connect() on UDP sends nothing.
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            yield probe.getsockname()[0]


def _as_host(name: str) -> str:
    """An IPv6 address as a Host header spells it (ALLOWED_HOSTS compares that)."""
    name = name.split("%", 1)[0]  # zone of a link-local address
    return f"[{name}]" if ":" in name else name


def expose(bind: str) -> list[str] | None:
    """Applies the rules above for a server bound to ``bind``; returns the host names it
    answers to when that is beyond loopback (else None).

    Raises CommandError for DEBUG beyond loopback.
    """
    public_url = None if settings.GOLIVE_PUBLIC_URL_IS_DEFAULT else settings.GOLIVE_PUBLIC_URL
    beyond = not is_loopback(bind)
    if beyond and settings.DEBUG:
        raise CommandError(
            f"DEBUG is on and --http {bind} is reachable from other machines: error pages "
            "would show them the settings and URL list. Unset DEBUG, or bind 127.0.0.1."
        )
    if settings.ALLOWED_HOSTS_IS_DEFAULT:
        settings.ALLOWED_HOSTS = host_names(bind, public_url)
    return list(settings.ALLOWED_HOSTS) if beyond else None


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
        answers_to = expose(http_host)
        # Printed URLs follow the bind addresses unless the public ones are configured.
        if settings.GOLIVE_PUBLIC_URL_IS_DEFAULT:
            settings.GOLIVE_PUBLIC_URL = f"http://{reachable(http_host)}:{http_port}"
        if settings.GOLIVE_RTMP_URL_IS_DEFAULT:
            settings.GOLIVE_RTMP_URL = f"rtmp://{reachable(rtmp_host)}:{rtmp_port}/live"

        call_command("migrate", interactive=False, verbosity=0)
        self.check(display_num_errors=False)
        demo = ensure_demo()
        self.print_banner(demo, answers_to)
        if options["no_serve"]:
            return
        self.serve(http_host, http_port, rtmp_host, rtmp_port)

    def print_banner(self, demo: Any, answers_to: list[str] | None = None) -> None:
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
        if answers_to is not None:
            self.stdout.write(
                f"Reachable from other machines, as: {', '.join(answers_to)}\n"
                "(DEBUG off; set ALLOWED_HOSTS to answer to other names.)\n"
            )
        self.stdout.flush()

    def serve(self, host: str, port: int, rtmp_host: str, rtmp_port: int) -> None:
        # daphne.server installs Twisted's asyncio reactor on import: import it first.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server, twisted_loop
        from twisted.internet import defer, reactor
        from twisted.internet.base import ReactorBase

        from delivery.retention import expire_recordings_periodically
        from golive.asgi import application
        from streams.broadcasts import end_orphaned_sessions
        from streams.ingest_runtime import build_ingest_server

        # One event loop for everything: the web server's (Twisted on asyncio) also runs
        # the RTMP ingest. It binds before serving, so a taken port fails loudly here.
        end_orphaned_sessions(settings.GOLIVE_NODE_NAME)
        ingest = build_ingest_server(transcode=True)  # the ladder, transcoded in-process
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

        # `reactor` is typed as its zope interfaces, whose methods mypy reads without `self`;
        # daphne's asyncio reactor is a ReactorBase, where the same methods are typed.
        assert isinstance(reactor, ReactorBase)
        installed: ReactorBase = reactor
        installed.addSystemEventTrigger("before", "shutdown", shut_down)
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            server_name="golive",
        ).run()
