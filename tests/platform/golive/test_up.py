"""`manage.py up` on the embedded defaults, as a new user runs it: twice, for real."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.ingest.clients import ffmpeg_publish

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


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


def log_in(admin_url: str, user: str, password: str) -> requests.Response:
    session = requests.Session()
    page = session.get(admin_url + "login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token
    response = session.post(
        admin_url + "login/?next=/admin/",
        data={
            "username": user,
            "password": password,
            "csrfmiddlewaretoken": token.group(1),
            "next": "/admin/",
        },
        headers={"Referer": admin_url + "login/"},
        timeout=10,
    )
    return response


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def test_up_serves_the_platform_and_the_printed_admin_login_works_twice(tmp_path) -> None:
    port = free_port()
    printed = []
    for _ in range(2):
        process, banner = start(tmp_path, port)
        try:
            assert banner["watch"] == f"http://127.0.0.1:{port}/c/demo"
            assert banner["rtmp"].startswith("rtmp://127.0.0.1:")
            assert banner["rtmp"].endswith("/live")
            assert re.fullmatch(r"gl_[a-z2-7]{8}_[a-z0-9]{32}", banner["key"])
            wait_until_serving(f"http://127.0.0.1:{port}/healthz")
            response = log_in(banner["admin"], banner["user"], banner["password"])
            assert response.status_code == 200
            assert "Site administration" in response.text
            assert "log out" in response.text.lower()
            wrong = log_in(banner["admin"], banner["user"], banner["password"] + "x")
            assert "Site administration" not in wrong.text
            assert requests.get(banner["watch"], timeout=10).status_code == 200
            # The printed RTMP URL and key take a real publish, recorded as a session.
            published = ffmpeg_publish(f"{banner['rtmp']}/{banner['key']}", frames=30)
            assert published.returncode == 0, published.stderr
            printed.append((banner["key"], banner["password"]))
        finally:
            stop(process)
    # The second run reuses the demo accounts: same key, same password, nothing rotated.
    assert printed[0] == printed[1]
    assert (tmp_path / "var" / "demo.json").stat().st_mode & 0o077 == 0
    with sqlite3.connect(tmp_path / "var" / "golive.sqlite3") as db:
        rows = db.execute("select end_reason, video_frames from streams_livesession").fetchall()
    assert rows == [("publisher_stopped", 30), ("publisher_stopped", 30)]
