"""Glass to glass: a wall-clock stamp drawn into each frame before the encoder sees it, read
back from each frame Chromium presents.

The publisher is this process and an ffmpeg it feeds: ffmpeg renders a loop of
``testsrc2`` frames once (moving content, so x264 has real work), then a thread writes
them into a second ffmpeg's stdin at 30 fps, each with the wall clock of that moment (ms
since the epoch) drawn into its corner as a barcode. That ffmpeg encodes with libx264 as a
low-latency OBS set-up does (veryfast, zerolatency, 2 s GOP, 3 Mb/s), adds AAC from a sine,
and publishes FLV over RTMP.

In the page, ``requestVideoFrameCallback`` fires for every frame composited; the frame is
drawn into a small canvas, the barcode read back, and the latency is the frame's expected
display time (``performance.timeOrigin + metadata.expectedDisplayTime``, the same wall clock
on this machine) minus its stamp. So the figure includes the encoder, RTMP, the ingest, the
packager's part, delivery, hls.js's hold-back, decoding and composition: what a viewer sees
behind what the camera saw.

The barcode: 16 by 6 blocks of 24 px at (24, 24): 44 bits of the stamp, their 44
complements (a frame whose bits do not check is not counted: blocky or mid-transition),
then 8 alternating sync blocks.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from pathlib import Path

WIDTH, HEIGHT, FPS = 1280, 720, 30
GOP_SECONDS = 2
BLOCK, COLUMNS, ROWS, ORIGIN = 24, 16, 6, 24
BITS = 44
LOOP_FRAMES = 60

FFMPEG_QUIET = ["-hide_banner", "-loglevel", "error", "-nostdin"]


def _blocks(stamp_ms: int) -> list[int]:
    bits = [(stamp_ms >> (BITS - 1 - i)) & 1 for i in range(BITS)]
    return bits + [1 - bit for bit in bits] + [i & 1 for i in range(COLUMNS * ROWS - 2 * BITS)]


def draw_stamp(frame: bytearray, stamp_ms: int) -> None:
    """Draw ``stamp_ms`` into a yuv420p frame's luma (and grey its chroma there)."""
    chroma_width = WIDTH // 2
    chroma_u = WIDTH * HEIGHT
    chroma_v = chroma_u + chroma_u // 4
    for index, bit in enumerate(_blocks(stamp_ms)):
        x = ORIGIN + (index % COLUMNS) * BLOCK
        y = ORIGIN + (index // COLUMNS) * BLOCK
        row = (b"\xeb" if bit else b"\x10") * BLOCK
        for line in range(y, y + BLOCK):
            start = line * WIDTH + x
            frame[start : start + BLOCK] = row
        grey = b"\x80" * (BLOCK // 2)
        for line in range(y // 2, (y + BLOCK) // 2):
            start = line * chroma_width + x // 2
            frame[chroma_u + start : chroma_u + start + BLOCK // 2] = grey
            frame[chroma_v + start : chroma_v + start + BLOCK // 2] = grey


def read_stamp_from_luma(luma: bytes, stride: int) -> int | None:
    """The stamp drawn by `draw_stamp`, read back from a decoded luma plane (for tests)."""
    values = []
    for index in range(COLUMNS * ROWS):
        x = ORIGIN + (index % COLUMNS) * BLOCK + BLOCK // 2
        y = ORIGIN + (index // COLUMNS) * BLOCK + BLOCK // 2
        values.append(1 if luma[y * stride + x] > 128 else 0)
    bits, complements = values[:BITS], values[BITS : 2 * BITS]
    if any(bit == complement for bit, complement in zip(bits, complements, strict=True)):
        return None
    stamp = 0
    for bit in bits:
        stamp = stamp << 1 | bit
    return stamp


class StampedPublisher:
    """A live encode into ``url`` (rtmp://…/live/<key>) whose frames carry their wall clock.
    `start` renders the content loop and starts ffmpeg and the feeding thread; `stop` ends
    both. ``frames`` counts the frames written."""

    def __init__(self, workdir: Path, url: str) -> None:
        self._workdir = workdir
        self._url = url
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ffmpeg: subprocess.Popen[bytes] | None = None
        self.frames = 0
        self.late_frames = 0  # written more than a frame late (this machine was busy)

    def start(self) -> None:
        ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
        self._workdir.mkdir(parents=True, exist_ok=True)
        loop_file = self._workdir / "content.yuv"
        subprocess.run(
            [ffmpeg, *FFMPEG_QUIET, "-f", "lavfi", "-i",
             f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", "-frames:v", str(LOOP_FRAMES),
             "-pix_fmt", "yuv420p", "-f", "rawvideo", "-y", str(loop_file)],
            check=True, timeout=60,
        )  # fmt: skip
        size = WIDTH * HEIGHT * 3 // 2
        data = loop_file.read_bytes()
        frames = [bytearray(data[i * size : (i + 1) * size]) for i in range(LOOP_FRAMES)]
        command = [
            ffmpeg, *FFMPEG_QUIET,
            "-use_wallclock_as_timestamps", "1",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{WIDTH}x{HEIGHT}",
            "-framerate", str(FPS), "-i", "pipe:0",
            "-use_wallclock_as_timestamps", "1",
            "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
            "-profile:v", "main", "-pix_fmt", "yuv420p",
            "-g", str(FPS * GOP_SECONDS), "-keyint_min", str(FPS * GOP_SECONDS),
            "-sc_threshold", "0", "-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "3000k",
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000",
            "-flush_packets", "1", "-max_interleave_delta", "100000",
            "-f", "flv", self._url,
        ]  # fmt: skip
        log = (self._workdir / "publisher.log").open("wb")
        self._ffmpeg = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=log)
        self._thread = threading.Thread(target=self._feed, args=(frames,), daemon=True)
        self._thread.start()

    def _feed(self, frames: list[bytearray]) -> None:
        assert self._ffmpeg is not None
        assert self._ffmpeg.stdin is not None
        pipe = self._ffmpeg.stdin
        started = time.monotonic()
        index = 0
        while not self._stopping.is_set():
            due = started + index / FPS
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -1 / FPS:
                self.late_frames += 1
            frame = frames[index % LOOP_FRAMES]
            draw_stamp(frame, int(time.time() * 1000))
            try:
                pipe.write(frame)
                pipe.flush()
            except (BrokenPipeError, ValueError):
                return
            index += 1
            self.frames = index

    def alive(self) -> bool:
        return self._ffmpeg is not None and self._ffmpeg.poll() is None

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._ffmpeg is not None:
            if self._ffmpeg.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    self._ffmpeg.stdin.close()
            try:
                self._ffmpeg.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._ffmpeg.kill()
                self._ffmpeg.wait()


# Installed in the watch page: reads the stamp of every frame presented. Samples are
# [display wall clock ms, stamp ms]; `unread` counts frames whose barcode did not check.
READER_JS = """
(geometry) => {
  const [block, columns, rows, origin, bits] = geometry;
  const video = window.golivePlayer.video;
  const canvas = document.createElement("canvas");
  canvas.width = columns * block; canvas.height = rows * block;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const glass = window.goliveGlass = { samples: [], unread: 0 };
  const onFrame = (now, meta) => {
    const shown = performance.timeOrigin + meta.expectedDisplayTime;
    if (video.videoWidth > 0) {
      const scale = video.videoWidth / 1280;
      ctx.drawImage(video, origin * scale, origin * scale, columns * block * scale,
                    rows * block * scale, 0, 0, canvas.width, canvas.height);
      const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      const values = [];
      for (let i = 0; i < columns * rows; i++) {
        const x = (i % columns) * block + block / 2;
        const y = Math.floor(i / columns) * block + block / 2;
        values.push(pixels[(y * canvas.width + x) * 4] > 128 ? 1 : 0);
      }
      let ok = true, stamp = 0;
      for (let i = 0; i < bits; i++) {
        if (values[i] === values[bits + i]) { ok = false; break; }
        stamp = stamp * 2 + values[i];
      }
      if (ok) glass.samples.push([shown, stamp]); else glass.unread += 1;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
"""


def geometry() -> list[int]:
    return [BLOCK, COLUMNS, ROWS, ORIGIN, BITS]
