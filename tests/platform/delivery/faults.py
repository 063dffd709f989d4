"""Faults a test can inject: a Redis server of its own to kill and restart, a TCP proxy
to cut, and a viewer that follows the live edge with blocking reloads and notes when each
new part reached it."""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests


class RedisServer:
    """A redis-server on ``port`` with its own directory: killing it touches no one else's
    Redis. ``appendonly`` keeps its data in an append-only file (fsync every second)."""

    def __init__(self, port: int, directory: Path, *, appendonly: bool) -> None:
        self.port = port
        self.directory = directory
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> float:
        """Starts it and returns the monotonic time at which it accepted a PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--save", "", "--appendonly",
             "yes" if self.appendonly else "no", "--appendfsync", "everysec"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return self.wait_until_ready()

    def wait_until_ready(self, timeout: float = 10) -> float:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return time.monotonic()
            except redis.RedisError:
                time.sleep(0.02)
        raise AssertionError(f"redis-server on {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to clients."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def set_sentinel(self) -> None:
        """A key of our own, then time for the append-only file to be synced (every s)."""
        import redis

        redis.Redis(port=self.port).set("fault-test-sentinel", b"1")
        time.sleep(1.5)

    def has_sentinel(self) -> bool:
        import redis

        return bool(redis.Redis(port=self.port).exists("fault-test-sentinel"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``. `cut` closes every connection and stops
    listening (new connections are refused), `restore` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._cut = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(0.1)
        return listener

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            self._listener.close()
            for a, b in self._pairs:
                for sock in (a, b):
                    sock.close()
            self._pairs.clear()

    def restore(self) -> None:
        with self._lock:
            self._listener = self._listen(self.port)
            self._cut = False

    def close(self) -> None:
        self._stopping = True
        self.cut()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping:
            if self._cut:
                time.sleep(0.05)
                continue
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    continue
                self._pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(None)
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-(\d+)\.(\d+)\.m4s"')


@dataclass
class Viewer:
    """Follows a media playlist with LL-HLS blocking reloads, as hls.js does: each answer
    names the next part (the preload hint), which the next request waits for. Notes the
    monotonic time of every answer that brought a new part, and of every failure."""

    url: str
    arrivals: list[float] = field(default_factory=list)
    failures: list[tuple[float, int]] = field(default_factory=list)
    ended: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Viewer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        wanted: tuple[int, int] | None = None
        while not self._stop.is_set() and not self.ended:
            params = {} if wanted is None else {"_HLS_msn": wanted[0], "_HLS_part": wanted[1]}
            try:
                response = requests.get(self.url, params=params, timeout=10)
            except requests.RequestException:
                self.failures.append((time.monotonic(), 0))
                wanted = None
                time.sleep(0.1)
                continue
            if response.status_code != 200:
                self.failures.append((time.monotonic(), response.status_code))
                wanted = None
                time.sleep(0.1)
                continue
            self.ended = "#EXT-X-ENDLIST" in response.text
            hint = _HINT.search(response.text)
            if hint is None:
                continue
            next_part = (int(hint.group(1)), int(hint.group(2)))
            if wanted is None or next_part > wanted:
                self.arrivals.append(time.monotonic())
            wanted = next_part

    def first_arrival_after(self, moment: float) -> float | None:
        return next((t for t in self.arrivals if t > moment), None)

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without a new part between ``start`` and ``end``."""
        times = [start, *(t for t in self.arrivals if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(times))
