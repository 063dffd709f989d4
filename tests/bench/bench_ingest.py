"""CPU per stream of golive's RTMP ingest, and of nginx-rtmp on the same streams.

    python -m tests.bench ingest [--streams 50,200] [--seconds 20] [--warmup 8] [--no-nginx]
                                 [--with-hls] [--sender replay|ffmpeg] [--golive-root DIR]
                                 [--read-batch-seconds S] [--profile PATH]

For each stream count, each server runs as a process of its own and N publishers replay
the same pre-encoded 720p30 ~3 Mb/s file in real time. The sender is one process
(`tests.bench.rtmp_sender`: ffmpeg's command sequence and 4 KiB chunks, each chunk one
write, for a fraction of ffmpeg's CPU), or with ``--sender ffmpeg`` one `ffmpeg -re
-stream_loop -1 -c copy` per stream (200 of those leave a 2-core machine little for the
server). After the warm-up, the server's CPU time (utime+stime from /proc/<pid>/stat:
all threads, live descendants and reaped children) is read over a fixed window.
nginx-rtmp runs live only, which is what golive's ingest does; ``--with-hls`` adds a run
with HLS output, which is how the reference figure in shared/PROTOCOL-NOTES.md was
measured. ``--golive-root`` measures the ingest of another checkout (say, main's) with
this harness.

It prints numbers and asserts nothing about them: the machine and whatever else runs on
it decide timings. Every process it starts and its temporary directory are removed at the
end, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.processes import (
    Processes,
    cpu_seconds,
    free_port,
    read_line,
    signal_group,
    sigterm_interrupts,
    tail,
    wait_listening,
)
from tests.bench.sample import QUIET, Sample, encode_sample

# A connection with more than this waiting to be sent is ~5 s behind: the server does
# not keep up (or the machine is too busy for the sender).
MAX_BUFFERED = 2_000_000

ROOT = Path(__file__).resolve().parents[2]
NGINX_PACKAGES = ("nginx", "libnginx-mod-rtmp")
# Publishers run this much longer than warm-up + window, so one that has exited by the
# end of the window stopped early, and the window never sees streams ending.
TAIL_SECONDS = 3.0
FRAME_TOLERANCE = 0.03
MAX_LAG_MS = 1000
AIM_RATIO = 1.0  # the aim: golive's ingest at most nginx-rtmp's CPU (live only)
REFERENCE_NGINX_HLS = 0.34  # % of one core per 3 Mb/s stream, shared/PROTOCOL-NOTES.md

GOLIVE, NGINX_LIVE, NGINX_HLS = "golive", "nginx live", "nginx hls"


@dataclass(frozen=True, slots=True)
class Nginx:
    binary: str
    module: str  # ngx_rtmp_module.so, loaded by absolute path


@dataclass
class Measurement:
    server: str
    streams: int
    cpu_seconds: float
    window: float  # wall seconds the CPU time was read over
    problems: list[str] = field(default_factory=list)
    sender_cpu_seconds: float = 0.0

    @property
    def sender_percent(self) -> float:
        return self.sender_cpu_seconds / self.window * 100

    @property
    def percent_per_stream(self) -> float:
        return self.cpu_seconds / self.window / self.streams * 100

    @property
    def healthy(self) -> bool:
        return not self.problems


# -- servers ----------------------------------------------------------------------------


@dataclass
class RunningServer:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    stop: Callable[[], dict[str, Any]]  # ends the server; golive returns its counts


def start_golive(
    processes: Processes,
    workdir: Path,
    profile: Path | None = None,
    root: Path = ROOT,
    read_batch_seconds: float | None = None,
) -> RunningServer:
    log = workdir / "golive.log"
    command = [sys.executable, "-m", "tests.bench.ingest_process", "--port", "0"]
    if profile is not None:
        command += ["--profile", str(profile)]
    if read_batch_seconds is not None:
        command += ["--read-batch-seconds", f"{read_batch_seconds:g}"]
    with log.open("wb") as stderr:
        process = processes.start(
            command,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            many_files=True,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert process.stdout is not None
    line = read_line(process.stdout, timeout=30)
    if not line:
        raise RuntimeError(f"golive's ingest did not start: {tail(log)}")
    port = int(json.loads(line)["port"])

    def stop() -> dict[str, Any]:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        lines = out.decode().strip().splitlines()
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"golive's ingest failed at stop: {tail(log)}")
        return dict(json.loads(lines[-1]))

    return RunningServer(GOLIVE, process, port, workdir, stop)


def nginx_conf(nginx: Nginx, workdir: Path, port: int, hls: bool) -> str:
    hls_lines = (
        f"            hls on;\n            hls_path {workdir / 'hls'};\n"
        "            hls_fragment 2s;\n"
        if hls
        else ""
    )
    return (
        f"load_module {nginx.module};\n"
        # One process, in the foreground: the benchmark measures exactly that pid.
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        f"pid {workdir / 'nginx.pid'};\nerror_log {workdir / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "rtmp {\n    server {\n"
        f"        listen 127.0.0.1:{port};\n        chunk_size 4096;\n"
        "        application live {\n            live on;\n            record off;\n"
        f"{hls_lines}"
        "        }\n    }\n}\n"
    )


def start_nginx(processes: Processes, nginx: Nginx, workdir: Path, hls: bool) -> RunningServer:
    port = free_port()
    (workdir / "hls").mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_conf(nginx, workdir, port, hls))
    log = workdir / "nginx.stderr"
    with log.open("wb") as stderr:
        process = processes.start(
            # -e: the error log before the configuration is read (else /var/log/nginx).
            [nginx.binary, "-p", f"{workdir}/", "-c", str(conf), "-e", str(workdir / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    if not wait_listening(port, process, timeout=10):
        errors = tail(log) + tail(workdir / "error.log")
        raise RuntimeError(f"nginx-rtmp did not start: {errors}")

    def stop() -> dict[str, Any]:
        signal_group(process, signal.SIGTERM)
        process.wait(timeout=30)
        return {}

    return RunningServer(NGINX_HLS if hls else NGINX_LIVE, process, port, workdir, stop)


# -- nginx-rtmp installation ------------------------------------------------------------


def find_nginx() -> Nginx | None:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    binary = shutil.which("nginx", path=search)
    module = _find_rtmp_module()
    return Nginx(binary, module) if binary and module else None


def _find_rtmp_module() -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        listing = subprocess.run(
            ["dpkg", "-L", "libnginx-mod-rtmp"], capture_output=True, text=True, check=True
        ).stdout.split()
        for path in listing:
            if path.endswith("/ngx_rtmp_module.so"):
                return path
    for directory in ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules"):
        path = Path(directory, "ngx_rtmp_module.so")
        if path.exists():
            return str(path)
    return None


def ensure_nginx() -> Nginx | None:
    """nginx with the RTMP module, installed with apt-get when missing and allowed to."""
    found = find_nginx()
    if found is not None:
        return found
    how = f"apt-get install {' '.join(NGINX_PACKAGES)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"nginx-rtmp is not installed: `sudo {how}` to compare; measuring golive alone.")
        return None
    print(f"installing nginx-rtmp: {how} (the benchmark runs its own nginx processes)")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *NGINX_PACKAGES]
    result = subprocess.run(install, capture_output=True, text=True, env=environment)
    if result.returncode != 0:  # most often a stale package list
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=environment)
        result = subprocess.run(install, capture_output=True, text=True, env=environment)
    found = find_nginx()
    if found is None:
        print(f"could not install nginx-rtmp ({result.stderr.strip()[-300:]}); golive alone.")
    return found


# -- one measurement --------------------------------------------------------------------


def start_publishers(
    processes: Processes,
    sample: Sample,
    server: RunningServer,
    count: int,
    seconds: float,
    sender: str,
) -> list[subprocess.Popen[bytes]]:
    """The replay sender (one process for every stream), or one ffmpeg per stream."""
    if sender == "replay":
        command = [sys.executable, "-m", "tests.bench.rtmp_sender", "--port", str(server.port)]
        command += ["--streams", str(count), "--seconds", f"{seconds:g}", str(sample.path)]
        with (server.workdir / "sender.log").open("wb") as stderr:
            return [
                processes.start(
                    command,
                    cwd=ROOT,
                    many_files=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                )
            ]
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    publishers = []
    for index in range(count):
        url = f"rtmp://127.0.0.1:{server.port}/live/bench{index:03}"
        command = [ffmpeg, *QUIET, "-re", "-stream_loop", "-1", "-i", str(sample.path)]
        command += ["-c", "copy", "-t", f"{seconds:g}", "-f", "flv", url]
        with (server.workdir / f"publisher{index:03}.log").open("wb") as stderr:
            publishers.append(
                processes.start(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
                )
            )
    return publishers


def measure(
    start: Callable[[Path], RunningServer],
    streams: int,
    sample: Sample,
    warmup: float,
    seconds: float,
    processes: Processes,
    workdir: Path,
    sender: str = "replay",
) -> Measurement:
    server = start(workdir)
    publish_seconds = warmup + seconds + TAIL_SECONDS
    launched = time.monotonic()
    publishers = start_publishers(processes, sample, server, streams, publish_seconds, sender)
    time.sleep(max(0.0, launched + warmup - time.monotonic()))

    replay = publishers[0] if sender == "replay" else None
    sender_before = cpu_seconds(replay.pid) if replay else 0.0
    before, began = cpu_seconds(server.process.pid), time.monotonic()
    time.sleep(seconds)
    after, ended = cpu_seconds(server.process.pid), time.monotonic()
    sender_after = cpu_seconds(replay.pid) if replay else 0.0
    measurement = Measurement(
        server.name, streams, after - before, ended - began,
        sender_cpu_seconds=sender_after - sender_before,
    )
    problems = measurement.problems

    if server.process.poll() is not None:
        problems.append("the server exited during the window")
    early = sum(publisher.poll() is not None for publisher in publishers)
    if early:
        problems.append(f"{early} publisher process(es) exited before the window ended")
    if server.name == NGINX_HLS:
        playlists = len(list((workdir / "hls").glob("*.m3u8")))
        if playlists < streams:
            problems.append(f"{playlists} HLS playlists for {streams} streams")
    deadline = launched + publish_seconds + 30
    if replay is not None:
        problems.extend(judge_sender(replay, deadline, workdir))
    else:
        problems.extend(judge_ffmpegs(publishers, deadline, workdir))
    counts = server.stop()
    if server.name == GOLIVE:
        problems.extend(judge_golive(counts, streams, publish_seconds * sample.frame_rate))
    return measurement


def judge_sender(sender: subprocess.Popen[bytes], deadline: float, workdir: Path) -> list[str]:
    """What went wrong as the replay sender saw it: publishes that did not finish, a
    server that fell behind (bytes piling up in the sender), a sender that ran late."""
    try:
        out, _ = sender.communicate(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return ["the sender did not finish in time"]
    lines = out.decode().strip().splitlines()
    if not lines:
        return [f"the sender failed: {tail(workdir / 'sender.log', 300).strip()!r}"]
    report = json.loads(lines[-1])
    problems = []
    if report["finished"] != report["streams"]:
        problems.append(
            f"{report['streams'] - report['finished']} publish(es) failed: {report['problems']}"
        )
    if report["max_buffered"] > MAX_BUFFERED:
        problems.append(f"the server fell behind: {report['max_buffered']} bytes unsent")
    if report["max_late_ms"] > MAX_LAG_MS:
        problems.append(f"the sender ran {report['max_late_ms']:.0f} ms late (machine busy)")
    return problems


def judge_ffmpegs(
    publishers: list[subprocess.Popen[bytes]], deadline: float, workdir: Path
) -> list[str]:
    failed = []
    for index, publisher in enumerate(publishers):
        try:
            if publisher.wait(max(0.1, deadline - time.monotonic())) != 0:
                failed.append(index)
        except subprocess.TimeoutExpired:
            failed.append(index)
    if not failed:
        return []
    log = tail(workdir / f"publisher{failed[0]:03}.log", 300).strip()
    return [f"{len(failed)} publisher(s) failed, the first saying: {log!r}"]


def judge_golive(counts: dict[str, Any], streams: int, expected_frames: float) -> list[str]:
    """What went wrong with the streams as golive's runner counted them."""
    reported = counts.get("streams", {})
    problems = []
    if len(reported) != streams:
        problems.append(f"golive saw {len(reported)} publishes of {streams}")
    frames = {name: s["video_frames"] for name, s in reported.items()}
    off = {
        n: f
        for n, f in frames.items()
        if abs(f - expected_frames) > expected_frames * FRAME_TOLERANCE
    }
    if off:
        problems.append(f"video frames off {expected_frames:.0f} ± 3 %: {_few(off)}")
    reasons = {
        n: s["released"] for n, s in reported.items() if s["released"] != "publisher_stopped"
    }
    if reasons:
        problems.append(f"ended other than publisher_stopped: {_few(reasons)}")
    lags = {n: s["max_lag_ms"] for n, s in reported.items() if (s["max_lag_ms"] or 0) >= MAX_LAG_MS}
    if lags:
        problems.append(f"lag_ms ≥ {MAX_LAG_MS}: {_few(lags)}")
    return problems


def _few(values: dict[str, Any], limit: int = 5) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(values.items())[:limit])
    return shown + (f" (+{len(values) - limit} more)" if len(values) > limit else "")


# -- report -----------------------------------------------------------------------------


def print_table(
    results: list[Measurement],
    servers: list[str],
    sample: Sample,
    args: argparse.Namespace,
    loads: tuple[float, float],
) -> None:
    by = {(m.server, m.streams): m for m in results}
    counts = sorted({m.streams for m in results})
    print()
    print(
        f"CPU per stream, % of one core: {sample.bitrate_kbps / 1000:.1f} Mb/s 720p30 H.264/AAC, "
        f"{args.sender} sender; {args.seconds:g} s window after {args.warmup:g} s warm-up"
    )
    columns = ["streams", *servers]
    nginx_servers = [s for s in servers if s != GOLIVE]
    columns += [f"golive/{s}" for s in nginx_servers]
    columns += ["golive total", "healthy"]
    rows = []
    for count in counts:
        row = [str(count)]
        row += [f"{by[s, count].percent_per_stream:.3f}" for s in servers]
        golive = by[GOLIVE, count].percent_per_stream
        for server in nginx_servers:
            nginx = by[server, count].percent_per_stream
            row.append(f"{golive / nginx:.2f}x" if nginx > 0 else "n/a")
        row.append(f"{golive * count:.1f}")
        row.append("/".join("yes" if by[s, count].healthy else "NO" for s in servers))
        rows.append(row)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    print(
        "(% of one core per stream; golive total: % of one core for all streams; "
        f"healthy: {', '.join(servers)})"
    )
    if NGINX_LIVE in servers:
        for count in counts:
            ours, theirs = by[GOLIVE, count], by[NGINX_LIVE, count]
            print(
                f"at {count} streams: golive {ours.percent_per_stream:.3f} % of a core per "
                f"stream, nginx-rtmp live {theirs.percent_per_stream:.3f} %, "
                f"ratio golive/nginx {_ratio(by, count):.2f}"
            )
        met = [c for c in counts if _ratio(by, c) <= AIM_RATIO]
        missed = [c for c in counts if _ratio(by, c) > AIM_RATIO]
        print(
            f"aim golive ≤ {AIM_RATIO:g}x nginx-rtmp live: met at {_streams(met)}; "
            f"missed at {_streams(missed)}"
        )
    print(
        f"reference (shared/PROTOCOL-NOTES.md): nginx-rtmp with HLS ≈ {REFERENCE_NGINX_HLS} % "
        "per 3 Mb/s stream"
    )
    if args.sender == "replay":
        used = ", ".join(f"{m.sender_percent:.0f} %" for m in results)
        print(f"the sender used (% of one core, run by run): {used}")
    tick = 1 / os.sysconf("SC_CLK_TCK") / args.seconds * 100
    print(
        f"/proc counts CPU in ticks: ±{tick:.3f} % at 1 stream, ±{tick / max(counts):.4f} % "
        f"per stream at {max(counts)}"
    )
    print(
        f"numbers may be noisy: {os.cpu_count()} cores shared with the publishers and any other "
        f"work (load average {loads[0]:.2f} at start, {loads[1]:.2f} at end)"
    )
    for m in results:
        if m.problems:
            print(f"unhealthy: {m.server} at {m.streams} streams: " + "; ".join(m.problems))


def _ratio(by: dict[tuple[str, int], Measurement], count: int) -> float:
    nginx = by[NGINX_LIVE, count].percent_per_stream
    return by[GOLIVE, count].percent_per_stream / nginx if nginx > 0 else float("inf")


def _streams(counts: list[int]) -> str:
    return ", ".join(str(c) for c in counts) if counts else "none"


# -- command line -----------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench ingest",
        description="CPU per stream of golive's RTMP ingest and of nginx-rtmp, same streams.",
    )
    parser.add_argument("--streams", default="50,200", help="stream counts, e.g. 1,50,200")
    parser.add_argument("--seconds", type=float, default=20, help="measurement window")
    parser.add_argument("--warmup", type=float, default=8, help="publishing before the window")
    parser.add_argument("--no-nginx", action="store_true", help="measure golive alone")
    parser.add_argument(
        "--with-hls", action="store_true", help="nginx-rtmp with HLS output too (slower)"
    )
    parser.add_argument(
        "--sender",
        choices=("replay", "ffmpeg"),
        default="replay",
        help="one replaying process (default) or one ffmpeg per stream",
    )
    parser.add_argument(
        "--read-batch-seconds",
        type=float,
        metavar="S",
        help="golive's ConnectionLimits.read_batch_seconds (default 0.1; more adds latency)",
    )
    parser.add_argument(
        "--golive-root",
        type=Path,
        default=ROOT,
        metavar="DIR",
        help="measure the ingest of this checkout (default: this one)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="PATH",
        help="golive runs under cProfile and writes its stats here (its CPU figure grows)",
    )
    args = parser.parse_args(argv)
    try:
        counts = [int(n) for n in args.streams.split(",") if n.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        parser.error("--streams takes positive counts, e.g. 1,10,50")
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        print("ffmpeg is needed for the publishers: apt-get install ffmpeg")
        return 2
    nginx = None if args.no_nginx else ensure_nginx()
    servers = [GOLIVE]
    if nginx is not None:
        servers += [NGINX_LIVE, NGINX_HLS] if args.with_hls else [NGINX_LIVE]
    root = args.golive_root.resolve()
    if not (root / "ingest" / "server.py").exists():
        parser.error(f"--golive-root: {root} is not a golive checkout")
    starters: dict[str, Callable[[Processes, Path], RunningServer]] = {
        GOLIVE: lambda p, w: start_golive(p, w, args.profile, root, args.read_batch_seconds)
    }
    if nginx is not None:
        starters[NGINX_LIVE] = lambda p, w: start_nginx(p, nginx, w, hls=False)
        starters[NGINX_HLS] = lambda p, w: start_nginx(p, nginx, w, hls=True)

    results: list[Measurement] = []
    try:
        with (
            sigterm_interrupts(),
            tempfile.TemporaryDirectory(prefix="golive-bench-") as tmp,
            Processes() as processes,
        ):
            print("encoding the sample (720p30, 3 Mb/s, 2 s GOP) ...", flush=True)
            sample = encode_sample(Path(tmp) / "sample.flv")
            load_at_start = os.getloadavg()[0]
            for count in counts:
                for name in servers:
                    workdir = Path(tmp) / f"{name.replace(' ', '-')}-{count}"
                    workdir.mkdir()
                    print(f"{name}: {count} stream(s) ...", end=" ", flush=True)
                    result = measure(
                        functools.partial(starters[name], processes),
                        count,
                        sample,
                        args.warmup,
                        args.seconds,
                        processes,
                        workdir,
                        args.sender,
                    )
                    print(f"{result.percent_per_stream:.3f} % per stream", flush=True)
                    results.append(result)
                    processes.close()  # nothing of this run may disturb the next
            print_table(results, servers, sample, args, (load_at_start, os.getloadavg()[0]))
    except KeyboardInterrupt:
        print("\ninterrupted: every process stopped, temporary files removed")
        return 130
    return 0
