"""`manage.py cluster`: the whole cluster on one machine, no containers, one command.

Migrates, writes the process list (golive.cluster) and the edge's origins.vcl into
GOLIVE_DATA_DIR/cluster, and runs every process with honcho until Ctrl-C or SIGTERM (then
all of them stop; if one dies, honcho stops the others). PostgreSQL, Redis and the S3
store are given by the environment (DATABASE_URL, REDIS_URL, S3_*), as in production.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from golive.cluster import Topology, render_origins_vcl, render_procfile
from golive.management.commands.up import host_port, reachable


class Command(BaseCommand):
    help = "Run golive as a cluster on this machine: origins, ingest, workers, beat, Varnish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--origins", type=int, default=2, help="origin processes [2]")
        parser.add_argument("--ingest", type=int, default=1, help="ingest nodes [1]")
        parser.add_argument("--workers", type=int, default=1, help="transcode workers [1]")
        parser.add_argument("--sessions", type=int, default=2,
                            help="transcode sessions per worker (one process each) [2]")
        parser.add_argument("--http", default="127.0.0.1:8000",
                            help="where the edge (Varnish) listens [127.0.0.1:8000]")
        parser.add_argument("--origin-port", type=int, default=8001,
                            help="the first origin's port on 127.0.0.1; the rest follow [8001]")
        parser.add_argument("--rtmp", default="0.0.0.0:1935",
                            help="the first ingest node's HOST:PORT; the rest follow [:1935]")
        parser.add_argument("--no-edge", action="store_true",
                            help="no Varnish (an edge or CDN of your own fronts the origins)")
        parser.add_argument("--print", action="store_true",
                            help="print the process list and exit")
        parser.add_argument("--python", default=sys.executable,
                            help="the interpreter the processes run [this one]")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("origins", "ingest", "workers", "sessions"):
            if not 0 < options[name] <= 64:
                raise CommandError(f"--{name} must be between 1 and 64")
        topology = Topology(
            origins=options["origins"], ingests=options["ingest"], workers=options["workers"],
            sessions=options["sessions"],
            edge=not options["no_edge"], http=host_port(options["http"], 8000),
            origin_port=options["origin_port"], rtmp=host_port(options["rtmp"], 1935),
        )
        root = str(settings.BASE_DIR)
        run_dir = Path(settings.DATA_DIR) / "cluster"
        procfile = render_procfile(topology, root=root, python=options["python"],
                                   run_dir=str(run_dir))
        if options["print"]:
            self.stdout.write(procfile, ending="")
            return
        self._check(topology)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "Procfile").write_text(procfile)
        (run_dir / "origins.vcl").write_text(render_origins_vcl(topology.origin_ports))
        call_command("migrate", interactive=False, verbosity=0)
        self._banner(topology, run_dir)
        self._run(procfile, root)

    def _check(self, topology: Topology) -> None:
        problems = []
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            problems.append("DATABASE_URL (PostgreSQL): SQLite serves one process, not a cluster")
        if not settings.REDIS_URL:
            problems.append(
                "REDIS_URL: the live index, broker and slot ledger every process shares"
            )
        if topology.edge and shutil.which("varnishd") is None:
            problems.append("varnishd (apt-get install varnish), or --no-edge")
        if problems:
            raise CommandError("the cluster needs " + "; ".join(problems))

    def _banner(self, topology: Topology, run_dir: Path) -> None:
        host, port = topology.http
        edge = f"http://{reachable(host)}:{port}"
        rtmp_host = reachable(topology.rtmp[0])
        lines = [
            f"golive cluster: {topology.origins} origin(s), {topology.ingests} ingest node(s),"
            f" {topology.workers} worker(s), beat{', Varnish' if topology.edge else ''}",
        ]
        if topology.edge:
            lines.append(f"  Edge:        {edge}  (watch: {edge}/c/<channel>)")
        origins = ", ".join(f"http://127.0.0.1:{p}" for p in topology.origin_ports)
        ingests = ", ".join(f"rtmp://{rtmp_host}:{p}/live" for p in topology.rtmp_ports)
        metrics = f"http://127.0.0.1:{topology.origin_ports[0]}/metrics"
        lines += [
            f"  Origins:     {origins}",
            f"  RTMP:        {ingests}",
            f"  Metrics:     {metrics} (each origin has its own)",
            f"  Process list: {run_dir / 'Procfile'}",
            "  Stop with Ctrl-C (or SIGTERM): every process stops.",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def _run(self, procfile: str, root: str) -> None:
        from honcho.environ import parse_procfile
        from honcho.manager import Manager

        env = dict(os.environ)
        platform_dir = str(Path(root) / "platform")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (platform_dir, root, env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("DJANGO_SETTINGS_MODULE", "golive.settings")
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Behind the edge, static files are cached by it too; the origins still serve them.
        manager = Manager()
        for name, entry in parse_procfile(procfile).processes.items():
            manager.add_process(name, entry, env=env, cwd=root)
        manager.loop()
        sys.exit(manager.returncode or 0)
