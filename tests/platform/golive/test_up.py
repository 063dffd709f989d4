"""`manage.py up` on the embedded defaults, as a new user runs it: twice, for real."""

from __future__ import annotations

import re
import sqlite3

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish
from tests.support.processes import free_port, start, stop, wait_until_serving

pytestmark = pytest.mark.slow


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
