"""The processes a benchmark starts, and what /proc says about them.

Every child runs in a session of its own (a terminal's Ctrl-C reaches only the benchmark,
which then stops its children in order) and receives SIGTERM if the benchmark dies, even by
SIGKILL. `Processes.close` stops every one still running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if this benchmark dies, even by SIGKILL."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _die_with_parent_and_open_files() -> None:
    _die_with_parent()
    raise_open_files_limit()


class Processes:
    """Starts children in sessions of their own (so a terminal's Ctrl-C reaches only the
    benchmark, which then stops them in order) and stops every one still running at close."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def start(
        self, command: list[str], *, many_files: bool = False, **options: Any
    ) -> subprocess.Popen[bytes]:
        """``many_files``: the child may open as many files as the hard limit allows."""
        self._children = [child for child in self._children if child.poll() is None]
        process = subprocess.Popen(
            command,
            start_new_session=True,
            preexec_fn=_die_with_parent_and_open_files if many_files else _die_with_parent,
            **options,
        )
        self._children.append(process)
        return process

    def close(self) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits
        try:
            running = [child for child in self._children if child.poll() is None]
            for child in running:
                signal_group(child, signal.SIGTERM)
            deadline = time.monotonic() + 5
            for child in running:
                try:
                    child.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    signal_group(child, signal.SIGKILL)
                    child.wait()
            self._children = []
        finally:
            signal.signal(signal.SIGINT, previous)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def raise_open_files_limit() -> int:
    """Raises this process's soft RLIMIT_NOFILE to its hard limit; returns the new limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _proc_tree() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, the fields of /proc/<pid>/stat after the command name)."""
    tree: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # exited while we looked
        # The command name may itself hold spaces and parentheses.
        fields = text[text.rindex(")") + 2 :]
        tree[int(entry.name)] = (int(fields.split(maxsplit=2)[1]), fields)
    return tree


def _descendants(pid: int, tree: dict[int, tuple[int, str]]) -> set[int]:
    wanted, grown = {pid}, True
    while grown:
        grown = False
        for child, (parent, _fields) in tree.items():
            if parent in wanted and child not in wanted:
                wanted.add(child)
                grown = True
    return wanted & tree.keys()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` with all its threads, its live
    descendants and the children it has reaped. Resolution: one clock tick (1/100 s)."""
    tree = _proc_tree()
    ticks = 0
    for member in _descendants(pid, tree):
        # [11] utime, [12] stime, [13] cutime, [14] cstime: proc(5) fields 14-17.
        fields = tree[member][1].split()
        ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its live descendants (VmRSS of each, summed)."""
    total = 0
    for member in _descendants(pid, _proc_tree()):
        with contextlib.suppress(OSError), open(f"/proc/{member}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def open_sockets(pid: int) -> int:
    """How many sockets `pid` has open (its file descriptors that are sockets)."""
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(entry.path).startswith("socket:")
    return count


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_line(stream: IO[bytes], timeout: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else b""


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


def tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends the benchmark the way Ctrl-C does: through its clean-up."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def thread_count(pid: int) -> int:
    """Threads of `pid` (its /proc status), 0 once it has exited."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def runnable_threads(pid: int) -> int:
    """Threads of `pid` running or waiting for a CPU (state R): a process starved of CPU
    by other work uses none, yet is not idle."""
    count = 0
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"{task.path}/stat") as stat:
                text = stat.read()
                count += text[text.rindex(")") + 2] == "R"
    return count
