"""The media every ingest load run publishes: 720p30 H.264/AAC at ~3 Mb/s, 2 s GOP, in FLV.

Generated with the ffmpeg CLI (never committed), shared by the load test and the benchmark
so both stream exactly the same bytes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

FRAME_RATE = 30
# 8 s = 4 whole GOPs and exactly 375 AAC frames at 48 kHz, so `-stream_loop` wraps on a
# keyframe and the audio/video durations of one loop agree (no timestamp step per loop).
SECONDS = 8
# ffmpeg options every caller starts with: no banner, no keyboard, errors only.
QUIET = ("-hide_banner", "-nostdin", "-loglevel", "error")


@dataclass(frozen=True, slots=True)
class Sample:
    path: Path
    video_frames: int
    frame_rate: float  # frames a second, as ffprobe reads the file
    bitrate_kbps: float  # the whole file, audio included

    @property
    def duration(self) -> float:
        """Seconds of video in one pass of the file."""
        return self.video_frames / self.frame_rate


def encode_sample(path: Path, seconds: int = SECONDS) -> Sample:
    """Writes the sample to `path` and reads it back with ffprobe.

    Raises FileNotFoundError when ffmpeg or ffprobe is missing, CalledProcessError when
    they fail.
    """
    ffmpeg, ffprobe = _tool("ffmpeg"), _tool("ffprobe")
    command = [ffmpeg, *QUIET, "-y"]
    command += ["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FRAME_RATE}"]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    command += ["-b:v", "3M", "-maxrate", "3M", "-bufsize", "6M"]
    # A keyframe exactly every 2 s: no scene-cut keyframes, no shorter GOPs.
    gop = str(2 * FRAME_RATE)
    command += ["-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
    command += ["-c:a", "aac", "-b:a", "128k", "-f", "flv", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    probe = [ffprobe, "-v", "error", "-count_packets", "-select_streams", "v:0", "-of", "json"]
    probe += ["-show_entries", "stream=nb_read_packets,r_frame_rate:format=bit_rate", str(path)]
    probed = subprocess.run(probe, check=True, capture_output=True, text=True)
    info = json.loads(probed.stdout)
    stream = info["streams"][0]
    return Sample(
        path=path,
        video_frames=int(stream["nb_read_packets"]),
        frame_rate=float(Fraction(stream["r_frame_rate"])),
        bitrate_kbps=int(info["format"]["bit_rate"]) / 1000,
    )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed (apt-get install ffmpeg)")
    return path
