"""The day it gets popular: viewers through the edge and straight to the origin, side by
side, and a publisher surge decided under the quota row lock and by the Redis ledger.

    python -m tests.bench surge [--only viewers,publishers] [--viewers 1000,2000,5000]
        [--seconds 30] [--warmup 8] [--processes 2] [--publishes 500] [--publish-seconds 10]
        [--quota 100] [--modes lock,ledger-inline,ledger] [--bursts 60,500] [--addresses N]

viewers: a live stack on this machine (PostgreSQL, Redis, `manage.py ingest`, one
    `daphne golive.asgi` origin, Varnish with deploy/varnish/golive.vcl, ffmpeg publishing
    a 320x180 stream in real time); for each viewer count, `manage.py surge viewers` runs
    once through the edge and once straight to the origin (the reference: what the origin
    costs without the edge). Printed side by side: origin requests/s, collapse factor,
    latency p50/p95, time to first part, errors, and the client's own event-loop lag (when
    it is high, the client machine, not the server, is what limits the figures).
publishers: two `manage.py ingest` nodes on a throwaway database; `manage.py surge
    publishers` sends the publishes evenly over the seconds against the quota, then in
    bursts all at once, in each mode, in one sitting: `lock` (no Redis: every admission
    under the quota row lock, the reference), `ledger-inline` (the Redis slot ledger, the
    tally count and the key's last use written on the way to each answer, as before
    GOLIVE_DEFER_ADMISSION_WRITES), `ledger` (the ledger, those writes left to the
    ingest's housekeeping). Each publish comes from a loopback address of its own
    (127.1.0.1 ...), as a real surge comes from many encoders; `--addresses 1` sends them
    all from one, where the wrong-key throttle checks a handful of keys at a time.
    Printed: admitted, refused with reasons and waits, decision time (publish to answer)
    p50/p99.

It prints numbers and asserts nothing; every process, the database and our Redis keys
are removed at the end (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.processes import sigterm_interrupts
from tests.deploy.stack import ROOT, Stack, empty_stack, live_stack, missing_tools, services_error

PARTS = ("viewers", "publishers")
# name: (label, with Redis, settings the ingest nodes get)
PUBLISHER_MODES = {
    "lock": ("quota row lock (no Redis)", False, {}),
    "ledger-inline": ("Redis slot ledger, writes inline", True,
                      {"GOLIVE_DEFER_ADMISSION_WRITES": "0"}),
    "ledger": ("Redis slot ledger", True, {}),
}


def surge_json(stack: Stack, *args: str, timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "manage.py", "surge", *args, "--json", "-"],
        cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=None, text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py surge {args[0]} failed ({done.returncode})")
    return dict(json.loads(done.stdout))


def bench_viewers(workdir: Path, counts: list[int], seconds: float, warmup: float,
                  processes: int) -> None:
    from surge.report import viewer_table

    print("\nviewers: starting PostgreSQL database, ingest, origin, Varnish, ffmpeg ...",
          flush=True)
    with live_stack(workdir, origins=1, edge=True) as stack:
        for count in counts:
            runs = {}
            for label, base, extra in (
                ("through the edge", stack.edge, ["--varnish", stack.varnish_name]),
                ("straight to the origin", stack.origins[0], []),
            ):
                print(f"\n{count} viewers {label} ...", flush=True)
                try:
                    runs[label] = surge_json(
                        stack, "viewers", stack.master(base), "--viewers", str(count),
                        "--seconds", str(seconds), "--warmup", str(warmup), "--ramp", "5",
                        "--processes", str(processes), "--origin", stack.origins[0], *extra,
                        timeout=seconds + 180,
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    print(f"  {label}: the run failed: {error}", flush=True)
                time.sleep(5)  # let the origin drain what the last run left
            if not runs:
                continue
            print(f"\n{count} viewers of one 320x180 rendition (plateau, {seconds:g} s,"
                  f" figures after a {warmup:g} s warm-up):")
            print(viewer_table(runs))


def bench_publishers(workdir: Path, count: int, seconds: float, quota: int,
                     modes: list[str], bursts: list[int], addresses: int = 0) -> None:
    from surge.report import publisher_table

    addresses = addresses or count
    print(f"\npublishers: {count} publishes in {seconds:g} s against a quota of {quota},"
          f" two ingest nodes, from {addresses} address{'es' if addresses > 1 else ''} ...",
          flush=True)
    with empty_stack(workdir) as stack:
        stack.manage("quota", "set", "--streams", str(quota), "--reason", "bench")
        keys = workdir / "keys.txt"
        stack.manage("shell", "-c", _STREAMERS.format(count=count, path=str(keys)),
                     timeout=300)
        results = {}
        # Spread over the seconds asked, then bursts all at once (where a lock hurts).
        for burst, spread in ((count, seconds), *((min(b, count), 0.0) for b in bursts)):
            for mode in modes:
                label, redis, settings = PUBLISHER_MODES[mode]
                ports = [stack.start_ingest(f"{mode}-{n}", redis=redis, env=settings)
                         for n in ("a", "b")]
                urls = [f"rtmp://127.0.0.1:{port}/live" for port in ports]
                title = f"{label}, {burst} publishes " + (
                    f"in {spread:g} s" if spread else "at once")
                print(f"\n{title} ...", flush=True)
                results[title] = surge_json(stack, "publishers", *urls, "--keys", str(keys),
                                            "--count", str(burst), "--seconds", str(spread),
                                            "--addresses", str(addresses), "--hold", "3",
                                            timeout=seconds + 180)
                print(publisher_table(results[title]), flush=True)
                stack.processes.close()  # the nodes drain; their sessions end
                _wait_no_leases(stack)
        print("\nadmission decision time (publish → answer), ms:")
        for label, summary in results.items():
            decision = summary["decision_seconds"]
            print(f"  {label}: admitted {summary['admitted']}, refused {summary['refused']},"
                  f" errors {summary['errors']}; p50 {_ms(decision['p50'])}"
                  f" p99 {_ms(decision['p99'])} max {_ms(decision['max'])}")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


_STREAMERS = """
from django.contrib.auth import get_user_model
from streams import keys
from streams.models import Channel, Streamer, StreamKey
User = get_user_model()
users = User.objects.bulk_create(User(username=f"surge{{i}}") for i in range({count}))
streamers = Streamer.objects.bulk_create(Streamer(user=u, display_name=u.username) for u in users)
channels = Channel.objects.bulk_create(Channel(owner=s, slug=s.display_name) for s in streamers)
new = [keys.generate_key() for _ in channels]
StreamKey.objects.bulk_create(StreamKey(channel=c, prefix=k.prefix, digest=k.digest)
                              for c, k in zip(channels, new))
open({path!r}, "w").write("\\n".join(k.plaintext for k in new) + "\\n")
"""


def _wait_no_leases(stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = json.loads(stack.manage("quota", "show", "--json"))
        if not shown.get("live", shown.get("live_streams", 0)):
            return
        time.sleep(1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench surge", description=__doc__)
    parser.add_argument("--only", default=",".join(PARTS))
    parser.add_argument("--viewers", default="1000,2000,5000",
                        help="viewer counts, each through the edge and straight to the origin")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=8)
    parser.add_argument("--processes", type=int, default=2, help="surge client processes")
    parser.add_argument("--publishes", type=int, default=500)
    parser.add_argument("--publish-seconds", type=float, default=10)
    parser.add_argument("--quota", type=int, default=100)
    parser.add_argument("--modes", default=",".join(PUBLISHER_MODES),
                        help=f"publisher modes, some of {','.join(PUBLISHER_MODES)}")
    parser.add_argument("--bursts", default="60,500",
                        help="publishes all at once, after the spread run (empty: none)")
    parser.add_argument("--addresses", type=int, default=0,
                        help="loopback addresses the publishes come from (0: one each)")
    args = parser.parse_args(argv)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    if not only or only - set(PARTS):
        parser.error(f"--only takes some of {','.join(PARTS)}")
    counts = [int(n) for n in args.viewers.split(",") if n.strip()]
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or set(modes) - set(PUBLISHER_MODES):
        parser.error(f"--modes takes some of {','.join(PUBLISHER_MODES)}")
    bursts = [int(n) for n in args.bursts.split(",") if n.strip()]
    # `surge.report` lives in the platform source root (pytest adds it; here we do).
    if str(ROOT / "platform") not in sys.path:
        sys.path.insert(0, str(ROOT / "platform"))
    if missing := missing_tools():
        print(f"needs {', '.join(missing)}: apt-get install varnish ffmpeg")
        return 2
    if error := services_error():
        print(f"needs PostgreSQL and Redis: {error}")
        return 2
    load = os.getloadavg()[0]
    print(f"golive surge benchmark: {os.cpu_count()} cores, load average {load:.2f}")
    try:
        with sigterm_interrupts(), tempfile.TemporaryDirectory(prefix="golive-surge-") as tmp:
            if "viewers" in only:
                bench_viewers(Path(tmp) / "viewers", counts, args.seconds, args.warmup,
                              args.processes)
            if "publishers" in only:
                bench_publishers(Path(tmp) / "publishers", args.publishes,
                                 args.publish_seconds, args.quota, modes, bursts,
                                 args.addresses)
    except KeyboardInterrupt:
        print("\ninterrupted: every process stopped, temporary files removed")
        return 130
    print(f"\nload average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end: the client,"
          " Varnish, the origin, the ingest and ffmpeg share the machine's cores")
    return 0
