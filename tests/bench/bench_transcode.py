"""CPU per media second of the default ladder from a 1080p30 source: golive's transcode
engine against the ffmpeg CLI making the same ladder from the same input with the same
encoder settings; per-rung latency when fed in real time; how many ladders fit.

    python -m tests.bench transcode [--seconds 20] [--runs 3] [--preset veryfast]
                                    [--realtime 10] [--no-ffmpeg]

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
- Each side runs ``--runs`` times; the median is reported. Ladders per machine = cores /
  (CPU-s per media-s), also with 20 % kept free for ingest, delivery and the OS.
- Real time: the packets pushed at their timestamps (``shed=True``) for ``--realtime``
  seconds; per rung, the time from push to encoded packet (p50/p95/max) and frames shed.

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
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.sample import QUIET
from tests.scheduling import drop_realtime
from tests.transcoder.cmaf.media import Clip, demux_flv
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


def media_packets(clip: Clip, received_at: float = 0.0) -> list[MediaPacket]:
    stream = clip.headers(clip.frames[0].timestamp)
    stream += [
        MediaPacket(
            f.kind,
            f.codec,
            f.timestamp,
            f.data,
            keyframe=f.keyframe,
            composition_offset=f.composition_offset,
            received_at=received_at,
        )
        for f in clip.frames
    ]
    return stream


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


def run_realtime(
    clip: Clip, rungs: Sequence[Rung], preset: str, seconds: float
) -> dict[str, tuple[list[float], int]]:
    """Pushes the clip at its own pace; per rung, push-to-packet latencies (s) and drops."""
    latencies: dict[str, list[float]] = defaultdict(list)

    def deliver(packet: EncodedPacket) -> None:
        latencies[packet.rung].append(time.time() - packet.received_at)

    transcoder = Transcoder(rungs, deliver, shed=True, preset=preset)
    drop_realtime()
    first = clip.frames[0].timestamp
    started = time.monotonic()
    try:
        for header in clip.headers(first):
            transcoder.push(header)
        for frame in clip.frames:
            due = started + (frame.timestamp - first) / 1000
            if due - started > seconds:
                break
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            transcoder.push(
                MediaPacket(
                    frame.kind,
                    frame.codec,
                    frame.timestamp,
                    frame.data,
                    keyframe=frame.keyframe,
                    composition_offset=frame.composition_offset,
                    received_at=time.time(),
                )
            )
        stats = transcoder.end()
    finally:
        transcoder.close()
    return {r.name: (latencies[r.name], r.frames_dropped) for r in stats.rungs}


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench transcode", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=int, default=20, help="source length (media s)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (median kept)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset, both sides")
    parser.add_argument("--realtime", type=float, default=10, help="real-time run (s), 0: none")
    parser.add_argument("--no-ffmpeg", action="store_true", help="measure golive alone")
    args = parser.parse_args(argv)

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

        golive = [run_golive(stream, rungs, args.preset) for _ in range(args.runs)]
        report("golive engine", golive, media_seconds)
        ours = statistics.median(run.cpu_seconds for run in golive) / media_seconds
        theirs = None
        if not args.no_ffmpeg:
            command = ffmpeg_command(source, rungs, args.preset)
            reference = [run_ffmpeg(command) for _ in range(args.runs)]
            report("ffmpeg CLI", reference, media_seconds)
            theirs = statistics.median(run.cpu_seconds for run in reference) / media_seconds
            print(f"ratio golive / ffmpeg CLI: {ours / theirs:.3f}x (aim <= {AIM_RATIO}x)")
        print(
            f"1080p30 ladders in real time on {cores} cores: {cores / ours:.2f} at 100 % CPU, "
            f"{int(cores * HEADROOM / ours)} keeping {100 - HEADROOM * 100:.0f} % free"
        )

        if args.realtime > 0:
            print(f"real time, {args.realtime:.0f} s pushed at the source's pace:", flush=True)
            for name, (values, dropped) in run_realtime(
                clip, rungs, args.preset, args.realtime
            ).items():
                print(
                    f"  {name:<8} push -> packet p50 {percentile(values, 0.5) * 1000:6.1f} ms  "
                    f"p95 {percentile(values, 0.95) * 1000:6.1f} ms  "
                    f"max {max(values, default=float('nan')) * 1000:6.1f} ms  "
                    f"shed {dropped} frames"
                )
    return 0


def report(name: str, runs: Sequence[Run], media_seconds: float) -> None:
    cpu = [run.cpu_seconds / media_seconds for run in runs]
    speed = [media_seconds / run.wall_seconds for run in runs]
    print(
        f"{name:<14} CPU-s per media-s: median {statistics.median(cpu):.3f} "
        f"(runs {', '.join(f'{c:.3f}' for c in cpu)}); "
        f"speed {statistics.median(speed):.2f}x real time",
        flush=True,
    )
