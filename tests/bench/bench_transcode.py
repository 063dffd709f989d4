"""CPU per media second of the default ladder from a 1080p30 source: golive's transcode
engine against the ffmpeg CLI making the same ladder from the same input with the same
encoder settings; per-rung latency when fed in real time; how many ladders fit.

    python -m tests.bench transcode [--seconds 20] [--runs 3] [--preset veryfast]
                                    [--realtime 10] [--lag 16] [--no-ffmpeg]
                                    [--concurrent 1,2,3]

The source (testsrc2 + sine, x264 veryfast ~6 Mb/s, 2 s GOP, 2 B-frames, AAC, in FLV) is
generated once with the ffmpeg CLI into a temporary directory and demuxed into
`MediaPacket`s in memory before anything is timed.

- golive: `Transcoder` over the packets as fast as it goes (``shed=False``: nothing is
  dropped), CPU time of this process over the run (every thread: decode, four scalers,
  four libx264 encoders).
- ffmpeg: one process decoding the same file, `split` into four `scale` filters (bicubic,
  like the engine) and four libx264 outputs to the null muxer, with the engine's options
  (preset, Main profile, bit rate and VBV, one thread each, no B-frames, no lookahead,
  infinite keyint, key frames at the source's, forced IDR). CPU time of the child
  (utime+stime). Decoder and filter threads set to 1, as in the engine.
- Each side runs ``--runs`` times, interleaved; the median is reported. Ladders per
  machine = cores / (CPU-s per media-s), also with 20 % kept free for ingest, delivery and
  the OS.
- Real time: the video packets pushed at their timestamps (``shed=True``) for
  ``--realtime`` seconds; per rung, the time from a frame's push to its encoded packet
  (p50/p95/max) and frames shed; before it the source decoder alone, fed the same way,
  which is the floor B-frames put under every rung (a frame waits for later packets).
- Ladders at once (``--concurrent N,M``): N ladders made at the same time, each from the
  source pushed at its own pace for ``--realtime`` seconds (``shed=True``), as N
  broadcasts on one machine would be; per count, push-to-packet p50/p95 over every rung
  and the frames shed. A count "holds" when nothing was shed: that is the measured figure
  beside the computed one.
- Rung lag (``--lag`` seconds, `tests.bench.transcode_lag`): the source packaged into a
  live index in real time and the ladder made from it, embedded (the session fed the
  packets and cuts) and as a cluster worker does (the session reading the source's parts
  from the index; Redis when REDIS_URL is set); per rung, the time from the source's part
  N in the index to the rung's part N (aim: p95 <= one part target + 300 ms).

It prints numbers and asserts nothing about them; the temporary directory is removed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from tests.bench.sample import QUIET
from tests.scheduling import drop_realtime
from tests.transcoder.cmaf.media import Clip, Frame, demux_flv
from transcoder.engine import X264_PARAMS, EncodedPacket, Transcoder
from transcoder.ladder import DEFAULT_LADDER, Rung, ladder_for
from transcoder.packets import MediaPacket

WIDTH, HEIGHT, RATE = 1920, 1080, 30
AIM_RATIO = 1.05  # the aim: at most 5 % over the ffmpeg CLI
HEADROOM = 0.8  # share of the cores a transcode worker may plan to use


@dataclass(frozen=True, slots=True)
class Run:
    cpu_seconds: float
    wall_seconds: float


def encode_source(path: Path, seconds: int) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileNotFoundError("ffmpeg is not installed (apt-get install ffmpeg)")
    gop = str(2 * RATE)
    command = [ffmpeg, *QUIET, "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={RATE}"]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M", "-maxrate", "6M"]
    command += ["-bufsize", "6M", "-bf", "2", "-pix_fmt", "yuv420p"]
    command += ["-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
    command += ["-c:a", "aac", "-b:a", "128k", "-f", "flv", str(path)]
    subprocess.run(command, check=True)


def media_packet(frame: Frame, received_at: float = 0.0) -> MediaPacket:
    return frame.packet(received_at=received_at)


def media_packets(clip: Clip, received_at: float = 0.0) -> list[MediaPacket]:
    return [*clip.headers(clip.frames[0].timestamp),
            *(media_packet(f, received_at) for f in clip.frames)]


def run_golive(stream: Sequence[MediaPacket], rungs: Sequence[Rung], preset: str) -> Run:
    counts: dict[str, int] = defaultdict(int)

    def deliver(packet: EncodedPacket) -> None:
        counts[packet.rung] += 1

    cpu, wall = time.process_time(), time.monotonic()
    transcoder = Transcoder(rungs, deliver, shed=False, preset=preset)
    drop_realtime()
    try:
        for packet in stream:
            transcoder.push(packet)
        stats = transcoder.end()
    finally:
        transcoder.close()
    run = Run(time.process_time() - cpu, time.monotonic() - wall)
    frames = {rung.frames_encoded for rung in stats.rungs}
    if len(frames) != 1 or any(rung.error for rung in stats.rungs):
        raise RuntimeError(f"golive run incomplete: {stats}")
    return run


def ffmpeg_command(source: Path, rungs: Sequence[Rung], preset: str) -> list[str]:
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    labels = [f"s{index}" for index in range(len(rungs))]
    graph = f"[0:v]split={len(rungs)}" + "".join(f"[{label}]" for label in labels)
    for index, rung in enumerate(rungs):
        graph += f";[{labels[index]}]scale={rung.width}:{rung.height}:flags=bicubic[o{index}]"
    command = [ffmpeg, *QUIET, "-threads", "1", "-i", str(source)]
    command += ["-filter_threads", "1", "-filter_complex_threads", "1", "-filter_complex", graph]
    for index, rung in enumerate(rungs):
        rate = str(rung.bitrate)
        command += ["-map", f"[o{index}]", "-an", "-fps_mode", "passthrough"]
        command += ["-c:v", "libx264", "-preset", preset, "-profile:v", rung.profile]
        command += ["-b:v", rate, "-maxrate", rate, "-bufsize", rate, "-threads", "1"]
        command += ["-pix_fmt", "yuv420p", "-forced-idr", "1", "-force_key_frames", "source"]
        command += ["-x264-params", X264_PARAMS, "-f", "null", os.devnull]
    return command


def run_ffmpeg(command: list[str]) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic()
    subprocess.run(command, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(cpu, time.monotonic() - wall)


def paced(clip: Clip, seconds: float) -> Iterator[tuple[Frame, float]]:
    """The clip's video frames at the pace of their timestamps, with the wall clock."""
    first = clip.video[0].timestamp
    started = time.monotonic()
    for frame in clip.video:
        due = started + (frame.timestamp - first) / 1000
        if due - started > seconds:
            return
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        yield frame, time.time()


def run_realtime(
    clip: Clip, rungs: Sequence[Rung], preset: str, seconds: float
) -> dict[str, tuple[list[float], int]]:
    """Pushes the video at its own pace; per rung, push-to-packet latencies (s) and drops."""
    latencies: dict[str, list[float]] = defaultdict(list)

    def deliver(packet: EncodedPacket) -> None:
        latencies[packet.rung].append(time.time() - packet.received_at)

    transcoder = Transcoder(rungs, deliver, shed=True, preset=preset)
    drop_realtime()
    try:
        for header in clip.headers(clip.frames[0].timestamp):
            transcoder.push(header)
        for frame, wall in paced(clip, seconds):
            transcoder.push(media_packet(frame, wall))
        stats = transcoder.end()
    finally:
        transcoder.close()
    return {r.name: (latencies[r.name], r.frames_dropped) for r in stats.rungs}


def run_concurrent(
    clip: Clip, rungs: Sequence[Rung], preset: str, seconds: float, count: int
) -> tuple[list[float], int, int]:
    """``count`` ladders of the clip at once, each pushed at the source's pace from a
    thread of its own (the engine decodes in the pushing thread, as a session's feeder
    does): push-to-packet latencies (s) over every rung of every ladder, frames shed
    (packets dropped before the decoder count for every rung) and frames offered."""
    latencies: list[float] = []

    def deliver(packet: EncodedPacket) -> None:
        latencies.append(time.time() - packet.received_at)  # list.append: thread-safe

    transcoders = [Transcoder(rungs, deliver, shed=True, preset=preset) for _ in range(count)]
    pushed = [0] * count

    def feed(index: int) -> None:
        drop_realtime()
        transcoder = transcoders[index]
        for header in clip.headers(clip.frames[0].timestamp):
            transcoder.push(header)
        for frame, wall in paced(clip, seconds):
            pushed[index] += 1
            transcoder.push(media_packet(frame, wall))

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = [transcoder.end() for transcoder in transcoders]
    finally:
        for transcoder in transcoders:
            transcoder.close()
    shed = sum(
        each.packets_dropped * len(rungs) + sum(rung.frames_dropped for rung in each.rungs)
        for each in stats
    )
    return latencies, shed, sum(pushed) * len(rungs)


def decode_latency(clip: Clip, seconds: float) -> list[float]:
    """Push-to-frame latencies (s) of the source decoder alone, fed in real time: the
    floor a B-frame source puts under every rung (a frame waits for later packets)."""
    decoder: Any = av.CodecContext.create("h264", "r")
    decoder.extradata = clip.video_config
    decoder.thread_count = 1
    pushed: dict[int, float] = {}
    latencies = []
    for frame, wall in paced(clip, seconds):
        pts = frame.timestamp + frame.composition_offset
        pushed[pts] = wall
        packet = av.Packet(frame.data)
        packet.pts, packet.dts, packet.time_base = pts, frame.timestamp, Fraction(1, 1000)
        for decoded in decoder.decode(packet):
            latencies.append(time.time() - pushed.pop(decoded.pts))
    return latencies


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def line(name: str, what: str, values: Sequence[float]) -> str:
    return (
        f"  {name:<8} {what} p50 {percentile(values, 0.5) * 1000:6.1f} ms  "
        f"p95 {percentile(values, 0.95) * 1000:6.1f} ms  "
        f"max {max(values, default=float('nan')) * 1000:6.1f} ms"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench transcode", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=int, default=20, help="source length (media s)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (median kept)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset, both sides")
    parser.add_argument("--realtime", type=float, default=10, help="real-time run (s), 0: none")
    parser.add_argument("--lag", type=float, default=16, help="rung lag run (s), 0: none")
    parser.add_argument("--no-ffmpeg", action="store_true", help="measure golive alone")
    parser.add_argument("--concurrent", default="", help="ladders at once, e.g. 1,2,3")
    args = parser.parse_args(argv)
    try:
        counts = [int(n) for n in args.concurrent.split(",") if n.strip()]
    except ValueError:
        parser.error("--concurrent takes counts, e.g. 1,2,3")
    if any(n < 1 or n > 16 for n in counts):
        parser.error("--concurrent counts go from 1 to 16")

    cores = len(os.sched_getaffinity(0))
    rungs = ladder_for(WIDTH, HEIGHT, DEFAULT_LADDER)
    with tempfile.TemporaryDirectory(prefix="golive-bench-transcode-") as workdir:
        source = Path(workdir) / "source.flv"
        print(f"encoding a {args.seconds} s {WIDTH}x{HEIGHT}p{RATE} source ...", flush=True)
        encode_source(source, args.seconds)
        clip = demux_flv(source.read_bytes())
        media_seconds = len(clip.video) / RATE
        stream = media_packets(clip)
        ladder = ", ".join(f"{r.name} {r.width}x{r.height} {r.bitrate // 1000}k" for r in rungs)
        print(
            f"ladder: {ladder}; preset {args.preset}; {media_seconds:.1f} media s; {cores} cores",
            flush=True,
        )

        # Interleaved, so a neighbour's load on the shared machine falls on both sides.
        command = ffmpeg_command(source, rungs, args.preset)
        golive: list[Run] = []
        reference: list[Run] = []
        for _ in range(args.runs):
            golive.append(run_golive(stream, rungs, args.preset))
            if not args.no_ffmpeg:
                reference.append(run_ffmpeg(command))
        report("golive engine", golive, media_seconds)
        ours = statistics.median(run.cpu_seconds for run in golive) / media_seconds
        if reference:
            report("ffmpeg CLI", reference, media_seconds)
            theirs = statistics.median(run.cpu_seconds for run in reference) / media_seconds
            print(f"ratio golive / ffmpeg CLI: {ours / theirs:.3f}x (aim <= {AIM_RATIO}x)")
        print(
            f"1080p30 ladders in real time on {cores} cores: {cores / ours:.2f} at 100 % CPU, "
            f"{int(cores * HEADROOM / ours)} keeping {100 - HEADROOM * 100:.0f} % free"
        )

        if args.realtime > 0:
            print(f"real time, {args.realtime:.0f} s pushed at the source's pace:", flush=True)
            print(line("decoder", "push -> frame (floor)", decode_latency(clip, args.realtime)))
            for name, (values, dropped) in run_realtime(
                clip, rungs, args.preset, args.realtime
            ).items():
                print(line(name, "push -> rung packet", values) + f"  shed {dropped} frames")

        for count in counts:
            seconds = args.realtime or 10
            values, shed, frames = run_concurrent(clip, rungs, args.preset, seconds, count)
            verdict = "holds" if shed == 0 else "does not hold"
            print(line(f"{count} at once", "push -> rung packet", values)
                  + f"  shed {shed} of {frames} frames: {verdict} in real time", flush=True)

        if args.lag > 0:
            report_lag(clip, rungs, args.preset, args.lag)
    return 0


def report_lag(clip: Clip, rungs: Sequence[Rung], preset: str, seconds: float) -> None:
    from tests.bench.transcode_lag import measure_lag
    from transcoder.cmaf.packager import PART_TARGET

    aim = PART_TARGET + 0.3
    redis_url = os.environ.get("REDIS_URL") or None
    for cluster, label in ((False, "embedded"), (True, "cluster worker, " + (
            "Redis index" if redis_url else "memory index"))):
        print(f"rung lag, part N in the index after the source's part N ({label}, "
              f"{seconds:.0f} s; aim p95 <= {aim * 1000:.0f} ms):", flush=True)
        lags = measure_lag(clip, rungs, preset, seconds, cluster=cluster, redis_url=redis_url)
        for name, values in sorted(lags.items(), key=lambda item: -len(item[0])):
            print(line(name, "lag", values) + f"  ({len(values)} parts)")


def report(name: str, runs: Sequence[Run], media_seconds: float) -> None:
    cpu = [run.cpu_seconds / media_seconds for run in runs]
    speed = [media_seconds / run.wall_seconds for run in runs]
    print(
        f"{name:<14} CPU-s per media-s: median {statistics.median(cpu):.3f} "
        f"(runs {', '.join(f'{c:.3f}' for c in cpu)}); "
        f"speed {statistics.median(speed):.2f}x real time",
        flush=True,
    )
