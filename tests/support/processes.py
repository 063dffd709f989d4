"""The platform as processes, for the tests that run it for real: `manage.py up` on the
embedded defaults (as a new user runs it), ports to give it, waiting for it to answer."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def embedded_env(
    tmp_path: Path, *, reconnect_grace: float = 0, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "S3_BUCKET",
            "GOLIVE_PUBLIC_URL",
            "GOLIVE_RTMP_URL",
            # As a new user runs it: the defaults (DEBUG off, a generated key).
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
        }
    }
    env.update(
        GOLIVE_DATA_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(tmp_path / "media"),
        PYTHONUNBUFFERED="1",
        GOLIVE_RECONNECT_GRACE=str(reconnect_grace),
    )
    env.update(extra or {})
    return env


def start(
    tmp_path: Path, port: int, *, reconnect_grace: float = 0, http_host: str = "127.0.0.1",
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "up",
            "--http",
            f"{http_host}:{port}",
            "--rtmp",
            f"127.0.0.1:{free_port()}",
        ],
        cwd=ROOT,
        env=embedded_env(tmp_path, reconnect_grace=reconnect_grace, extra=extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner: dict[str, str] = {}
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline and "api" not in banner:
        line = process.stdout.readline()
        if not line:
            break
        for name, pattern in {
            "watch": r"Watch:\s+(\S+)",
            "rtmp": r"RTMP URL:\s+(\S+)",
            "key": r"Stream key:\s+(\S+)",
            "streamer_password": r"Dashboard:\s+\S+\s+\(user \S+, password (\S+)\)",
            "admin": r"Admin:\s+(\S+)\s+\(user (\S+), password (\S+)\)",
            "api": r"API docs:\s+(\S+)",
        }.items():
            match = re.search(pattern, line)
            if match:
                banner[name] = match.group(1)
                if name == "admin":
                    banner["user"], banner["password"] = match.group(2), match.group(3)
    assert "api" in banner, f"no banner from manage.py up: {banner}"
    # Keep reading its output, or a full pipe would stall the server mid-test.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    wait_until_serving(f"http://127.0.0.1:{port}/healthz")
    return process, banner


def wait_until_serving(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_for(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def wait_live(base: str) -> None:
    wait_for(lambda: requests.get(f"{base}/api/v1/channels/demo/", timeout=5).json()["is_live"],
             30, "the stream to go live")


def stop_node(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.2)
    return time.monotonic() - started
