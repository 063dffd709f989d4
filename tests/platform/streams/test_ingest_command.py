"""`manage.py ingest` as ops run it: a real process, a real publisher, SIGTERM drains."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ingest.clients import ffmpeg_publish
from tests.support.processes import ROOT, embedded_env, free_port

pytestmark = pytest.mark.slow


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def start_ingest_process(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[str]:
    # Output goes to a file: an undrained pipe would fill and stall the server.
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ingest", "--rtmp", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "listening on" in log.read_text():
            return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the ingest did not start: {log.read_text()}")


def sessions(data_dir: Path) -> list[tuple[str, str | None, int]]:
    with sqlite3.connect(data_dir / "golive.sqlite3") as db:
        return db.execute(
            "select coalesce(end_reason, ''), ended_at, video_frames from streams_livesession"
        ).fetchall()


def test_sigterm_drains_the_ingest_and_closes_live_sessions(tmp_path) -> None:
    env = embedded_env(tmp_path)
    manage(env, "migrate", "-v0")
    details = json.loads(manage(env, "createstreamer", "erin", "--json"))
    port = free_port()
    ingest = start_ingest_process(env, port, tmp_path / "ingest.log")
    try:
        url = f"rtmp://127.0.0.1:{port}/live/{details['stream_key']}"
        publisher = ffmpeg_publish(url, frames=900, realtime=True, background=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not sessions(tmp_path / "var"):
            time.sleep(0.2)
        assert sessions(tmp_path / "var"), "the publish never became a live session"
        time.sleep(1.5)
        ingest.send_signal(signal.SIGTERM)
        assert ingest.wait(timeout=20) == 0
        publisher.wait(timeout=20)
        assert publisher.returncode != 0  # the publisher saw its server go away
        [(reason, ended_at, frames)] = sessions(tmp_path / "var")
        assert reason == "server_shutdown"
        assert ended_at is not None
        assert frames > 0
    finally:
        ingest.kill()


def test_an_ingest_restarted_after_a_crash_closes_what_it_left_open(tmp_path) -> None:
    env = embedded_env(tmp_path)
    manage(env, "migrate", "-v0")
    details = json.loads(manage(env, "createstreamer", "finn", "--json"))
    port = free_port()
    crashed = start_ingest_process(env, port, tmp_path / "crashed.log")
    url = f"rtmp://127.0.0.1:{port}/live/{details['stream_key']}"
    publisher = ffmpeg_publish(url, frames=900, realtime=True, background=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not sessions(tmp_path / "var"):
        time.sleep(0.2)
    crashed.kill()  # no drain: the row stays open
    crashed.wait()
    publisher.kill()
    publisher.wait()
    assert sessions(tmp_path / "var")[0][1] is None
    restarted = start_ingest_process(env, port, tmp_path / "restarted.log")
    try:
        [(reason, ended_at, _)] = sessions(tmp_path / "var")
        assert reason == "ingest_lost"
        assert ended_at is not None
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=20)
