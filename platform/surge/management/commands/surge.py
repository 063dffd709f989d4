"""`manage.py surge`: a viewer or publisher surge against the addresses it is given.

    manage.py surge viewers http://EDGE/live/<channel>/master.m3u8 --viewers 1000
        [--seconds 60] [--shape surge|relaunch|plateau] [--ramp 5] [--rate 833]
        [--warmup 5] [--switch-every 30] [--processes 2] [--varnish NAME]
        [--origin http://ORIGIN ...] [--probes 20] [--load-nice 10] [--json FILE]
    manage.py surge publishers rtmp://INGEST/live [rtmp://INGEST2/live ...] --keys FILE
        [--count 500] [--seconds 10] [--addresses 0] [--json FILE]

Prints a progress line while it runs, then a table; --json writes the summary (- for
standard output). Nothing but the given addresses is contacted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from surge import publishers
from surge.report import publisher_table, viewer_table
from surge.run import DEFAULT_LOAD_NICE, DEFAULT_PROBES, ViewerRun, run_viewers
from surge.shapes import LAUNCH_RATE, SHAPES


class Command(BaseCommand):
    help = "Simulate a surge of LL-HLS viewers or of RTMP publishers and report what it cost."

    def add_arguments(self, parser: CommandParser) -> None:
        modes = parser.add_subparsers(dest="mode", required=True)
        viewers = modes.add_parser("viewers", help="virtual hls.js viewers of one channel")
        viewers.add_argument("url", help="http://HOST:PORT/live/<channel>/master.m3u8")
        viewers.add_argument("--viewers", type=int, default=100)
        viewers.add_argument("--seconds", type=float, default=60.0)
        viewers.add_argument("--shape", choices=SHAPES, default="plateau")
        viewers.add_argument("--ramp", type=float, default=5.0,
                             help="plateau, relaunch: seconds over which everyone arrives")
        viewers.add_argument("--rate", type=float, default=LAUNCH_RATE,
                             help="surge: arrivals a second (default 50,000 a minute)")
        viewers.add_argument("--warmup", type=float, default=5.0,
                             help="seconds before waits, TTFB and latency are counted")
        viewers.add_argument("--switch-every", type=float, default=30.0,
                             help="mean seconds between rendition switches (0: never)")
        viewers.add_argument("--processes", type=int, default=1,
                             help="niced client processes sharing the load viewers")
        viewers.add_argument("--probes", type=int, default=DEFAULT_PROBES,
                             help="viewers (of --viewers) in a process of their own at normal"
                                  " priority whose timings are reported (0: every viewer's)")
        viewers.add_argument("--load-nice", type=int, default=DEFAULT_LOAD_NICE,
                             help="niceness added to the load processes")
        viewers.add_argument("--varnish", help="varnishd instance name (-n) to read counters")
        viewers.add_argument("--origin", action="append", default=[],
                             help="an origin's base URL whose /metrics to read (repeatable)")
        viewers.add_argument("--metrics-token", default="")
        viewers.add_argument("--seed", type=int, default=0)
        viewers.add_argument("--json", help="write the summary here (- for standard output)")

        publish = modes.add_parser("publishers", help="M publishes in T seconds vs the quota")
        publish.add_argument("urls", nargs="+", help="rtmp://HOST:PORT/live of each ingest")
        publish.add_argument("--keys", required=True,
                             help="a file of stream keys, one a line (one per publisher)")
        publish.add_argument("--count", type=int, default=500)
        publish.add_argument("--seconds", type=float, default=10.0)
        publish.add_argument("--addresses", type=int, default=0,
                             help="publishes come from this many loopback addresses in turn,"
                                  " 127.1.0.1 onwards (an ingest on this machine; 0: one)")
        publish.add_argument("--hold", type=float, default=5.0,
                             help="admitted publishers keep their slot this long after the last")
        publish.add_argument("--json", help="write the summary here (- for standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["mode"] == "viewers":
            summary = self._viewers(options)
        else:
            summary = self._publishers(options)
        if options["json"]:
            text = json.dumps(summary, indent=2, default=str)
            if options["json"] == "-":
                self.stdout.write(text)
            else:
                Path(options["json"]).write_text(text + "\n")

    def _progress(self, line: str) -> None:
        sys.stderr.write("\r" + line.ljust(100))
        sys.stderr.flush()

    def _viewers(self, options: dict[str, Any]) -> dict[str, Any]:
        config = ViewerRun(
            url=options["url"], viewers=options["viewers"], seconds=options["seconds"],
            shape=options["shape"], ramp=options["ramp"], rate=options["rate"],
            warmup=options["warmup"], switch_every=options["switch_every"],
            processes=options["processes"], varnish=options["varnish"],
            origins=tuple(options["origin"]), metrics_token=options["metrics_token"],
            seed=options["seed"], probes=options["probes"], load_nice=options["load_nice"],
        )  # fmt: skip
        try:
            config.check()
        except ValueError as error:
            raise CommandError(str(error)) from None
        summary = run_viewers(config, self._progress)
        sys.stderr.write("\n")
        if options["json"] != "-":
            self.stdout.write(f"{config.viewers} viewers, {config.shape}, {config.url}")
            self.stdout.write(viewer_table({"this run": summary}))
        return summary

    def _publishers(self, options: dict[str, Any]) -> dict[str, Any]:
        import asyncio

        keys = [line.strip() for line in Path(options["keys"]).read_text().splitlines()]
        keys = [key for key in keys if key]
        try:
            attempts = asyncio.run(
                publishers.surge(options["urls"], keys, options["count"], options["seconds"],
                                 options["hold"], options["addresses"])
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        summary = publishers.summarise(attempts, options["seconds"])
        if options["json"] != "-":
            self.stdout.write(publisher_table(summary))
        return summary
