"""Real RTMP clients for tests: the ffmpeg CLI, GStreamer, FFmpeg through PyAV, and a raw
client of our own for byte-level checks (what the server sent, in what order)."""

from __future__ import annotations

import fcntl
import fractions
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingest.protocol import (
    ChunkReader,
    ChunkWriter,
    Message,
    SetChunkSize,
    decode_command,
    encode_command,
    encode_control,
)
from ingest.protocol.handshake import ClientHandshake
from tests.scheduling import drop_realtime

ROOT = Path(__file__).resolve().parents[2]


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (./golive test installs it with apt)")
    return path


def require_gstreamer_elements(*elements: str) -> None:
    """Skips unless GStreamer has these elements (gst-launch-1.0 alone says nothing of
    its plugins: x264enc, say, comes with gstreamer1.0-plugins-ugly)."""
    inspect = require("gst-inspect-1.0")
    missing = [
        element for element in elements
        if subprocess.run([inspect, element], capture_output=True, check=False).returncode
    ]
    if missing:
        pytest.skip(f"GStreamer lacks {', '.join(missing)} (./golive test installs them)")


def ffmpeg_publish(
    url: str,
    *,
    frames: int = 90,
    size: str = "640x360",
    rate: int = 30,
    realtime: bool = False,
    prerecorded: bool = False,
    gop: int = 60,
    timeout: float = 120,
    extra: tuple[str, ...] = (),
    background: bool = False,
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """H.264 + AAC from lavfi test sources, exactly `frames` video frames.

    ``prerecorded`` (with ``realtime``) sends the same sources encoded ahead of time
    (`prerecorded_clip`) instead of encoding them as it goes: the bytes on the wire are
    the same kind, and the test machine is spared the encoder."""
    if prerecorded:
        if not realtime:
            raise ValueError("a prerecorded clip is for a publish at the source's pace")
        if frames > CLIP_SECONDS * rate:
            raise ValueError(f"{frames} frames is more than a clip's {CLIP_SECONDS} s")
        clip = prerecorded_clip(size=size, rate=rate, gop=gop)
        source = ["-re", "-i", str(clip), "-frames:v", str(frames), "-c", "copy"]
    else:
        source = [*(["-re"] if realtime else []), *encoding(size=size, rate=rate, gop=gop,
                                                            frames=frames)]
    command = [require("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", *source,
               *extra, "-f", "flv", url]
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def encoding(*, size: str, rate: int, gop: int, frames: int) -> list[str]:
    """ffmpeg's arguments for the test sources as a streamer's encoder sends them: a test
    picture and a tone, x264 (veryfast, B-frames, a keyframe every ``gop``) and AAC."""
    return [
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-frames:v", str(frames),
        "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k",
        "-shortest",
    ]


# Encoded once, kept between runs (a clip is a few tens of MB) and long enough for any test
# that publishes one.
CLIP_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "golive" / "clips"
CLIP_SECONDS = 150


def prerecorded_clip(*, size: str, rate: int, gop: int) -> Path:
    """The test sources encoded ahead of time, CLIP_SECONDS long, made once per size, rate
    and keyframe interval (the first time about 30 s for 720p30 on the 2-core test machine).

    Encoding 720p30 live takes about 40 % of one of that machine's two cores; a browser test
    that counts stalls, with a ladder transcoding beside it, cannot spare it. Sending the
    clip with ``-re -c copy`` takes about 2 %."""
    CLIP_CACHE.mkdir(parents=True, exist_ok=True)
    clip = CLIP_CACHE / f"testsrc2-{size}-{rate}fps-gop{gop}-{CLIP_SECONDS}s.flv"
    with open(CLIP_CACHE / "lock", "w") as lock:  # one encoder among parallel test workers
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not clip.exists():
            partial = clip.with_name(clip.name + ".partial")
            subprocess.run(
                [require("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                 *encoding(size=size, rate=rate, gop=gop, frames=CLIP_SECONDS * rate),
                 "-f", "flv", str(partial)],
                check=True, capture_output=True, timeout=600,
            )
            partial.rename(clip)
    return clip


def gstreamer_publish(
    url: str, *, frames: int = 150, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    launch = require("gst-launch-1.0")
    require_gstreamer_elements(
        "videotestsrc", "x264enc", "h264parse", "audiotestsrc", "voaacenc", "aacparse",
        "flvmux", "rtmp2sink",
    )
    pipeline = (
        f"videotestsrc num-buffers={frames} is-live=false ! "
        "video/x-raw,width=640,height=360,framerate=30/1 ! "
        "x264enc tune=zerolatency key-int-max=60 speed-preset=veryfast ! h264parse ! "
        "queue ! mux. "
        "audiotestsrc num-buffers=235 ! audio/x-raw,rate=48000,channels=2 ! "
        "voaacenc ! aacparse ! queue ! mux. "
        f'flvmux name=mux streamable=true ! rtmp2sink location="{url}"'
    )
    return subprocess.run(
        [launch, "-q", *pipeline.split()], capture_output=True, text=True, timeout=timeout
    )


def pyav_publish(
    url: str,
    codec: str,
    *,
    frames: int = 60,
    width: int = 640,
    height: int = 360,
    rate: int = 30,
    timeout: float = 120,
) -> None:
    """FFmpeg's own RTMP client through PyAV: Enhanced RTMP for HEVC and AV1.

    Runs in a child process: PyAV keeps the GIL through FFmpeg's blocking socket calls,
    which would freeze a server running in this process's other thread.
    """
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"PyAV has no {codec} encoder")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.ingest.clients",
            url,
            codec,
            str(frames),
            str(width),
            str(height),
            str(rate),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _pyav_publish_here(
    url: str, codec: str, frames: int, width: int, height: int, rate: int
) -> None:
    import av

    with av.open(url, "w", format="flv") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error"}
        for index in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.pts, frame.time_base = index, fractions.Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
            if index == 0:
                # SVT-AV1 has just made every thread SCHED_FIFO 99: at that priority its
                # encoding threads would starve the server under test.
                drop_realtime()
        for packet in stream.encode(None):
            out.mux(packet)



def played_video_frames(url: str) -> int:
    """How many video frames ffprobe decodes from a playlist or file (a URL or path)."""
    probe = subprocess.run(
        [require("ffprobe"), "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=60, check=False,
    )
    counts = set(probe.stdout.split())
    assert len(counts) == 1, f"ffprobe read {counts or 'nothing'} from {url}: {probe.stderr}"
    return int(counts.pop())


@dataclass
class RawPublisher:
    """A minimal publisher of our own, to see exactly what the server answers."""

    host: str
    port: int
    timeout: float = 10.0
    sock: socket.socket = field(init=False)
    reader: ChunkReader = field(default_factory=ChunkReader)
    writer: ChunkWriter = field(default_factory=ChunkWriter)
    received: list[Message] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)

    def handshake(self) -> None:
        client = ClientHandshake()
        self.sock.sendall(client.start())
        while not client.done:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed during handshake")
            reply = client.feed(data)
            if reply:
                self.sock.sendall(reply)
        if client.leftover:
            self._take(client.leftover)

    def send(
        self, type_id: int, payload: bytes, *, csid: int = 3, stream_id: int = 0, timestamp: int = 0
    ) -> None:
        self.sock.sendall(self.writer.encode(Message(csid, type_id, stream_id, timestamp, payload)))

    def command(
        self, name: str, txn: float, obj: object = None, *args: object, stream_id: int = 0
    ) -> None:
        self.send(20, encode_command(name, txn, obj, *args), stream_id=stream_id)  # type: ignore[arg-type]

    def set_chunk_size(self, size: int) -> None:
        self.sock.sendall(self.writer.encode(encode_control(SetChunkSize(size))))
        self.writer.set_chunk_size(size)

    def _take(self, data: bytes) -> None:
        self.raw += data
        self.received.extend(self.reader.feed(data))

    def read_until(self, predicate, limit: float | None = None) -> bool:  # type: ignore[no-untyped-def]
        """Reads until `predicate(commands)` holds or the server closes; True if it held."""
        self.sock.settimeout(limit or self.timeout)
        while not predicate(self.commands()):
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionError):
                return False
            if not data:
                return predicate(self.commands())
            self._take(data)
        return True

    def commands(self) -> list:  # type: ignore[type-arg]
        return [decode_command(m.payload) for m in self.received if m.type_id == 20]

    def closed_by_server(self, limit: float = 5.0) -> bool:
        self.sock.settimeout(limit)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self._take(data)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def connect_and_publish(self, key: str, app: str = "live") -> None:
        self.handshake()
        self.command(
            "connect",
            1.0,
            {
                "app": app,
                "flashVer": "FMLE/3.0 (compatible; golive-test)",
                "tcUrl": f"rtmp://{self.host}:{self.port}/{app}",
                "type": "nonprivate",
            },
        )
        self.command("releaseStream", 2.0, None, key)
        self.command("FCPublish", 3.0, None, key)
        self.command("createStream", 4.0, None)
        self.read_until(
            lambda cmds: any(c.name == "_result" and c.transaction_id == 4.0 for c in cmds)
        )
        self.command("publish", 5.0, None, key, "live", stream_id=1)

    def close(self) -> None:
        self.sock.close()


if __name__ == "__main__":
    _url, _codec, *_numbers = sys.argv[1:]
    _frames, _width, _height, _rate = (int(n) for n in _numbers)
    _pyav_publish_here(_url, _codec, _frames, _width, _height, _rate)
