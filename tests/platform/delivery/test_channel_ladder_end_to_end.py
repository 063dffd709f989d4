"""A channel with its own ladder of one rung (360p30), on `manage.py up`: a 720p30
publish goes out as the source and that rung only, not the platform's four."""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urljoin

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish
from tests.support.playlists import renditions
from tests.support.processes import ROOT, embedded_env, free_port, start, stop

pytestmark = pytest.mark.slow

LADDER = "360p30:640x360@30:630k"
SECONDS = 10


def set_ladder(tmp_path, slug: str, text: str) -> None:
    """As the admin's save does, on the database `up` runs on."""
    code = (
        "from streams.models import Channel; "
        f"assert Channel.objects.filter(slug={slug!r}).update(transcode_ladder={text!r}) == 1"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=embedded_env(tmp_path),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_a_channel_with_a_one_rung_ladder_goes_out_as_source_and_that_rung(tmp_path) -> None:
    port = free_port()
    process, banner = start(tmp_path, port)
    master_url = f"http://127.0.0.1:{port}/live/demo/master.m3u8"
    try:
        set_ladder(tmp_path, "demo", LADDER)
        publisher = ffmpeg_publish(
            f"{banner['rtmp']}/{banner['key']}", frames=SECONDS * 30, size="1280x720",
            rate=30, realtime=True, gop=60, background=True,
        )
        assert isinstance(publisher, subprocess.Popen)
        seen: list[set[str]] = []
        deadline = time.monotonic() + 30
        while publisher.poll() is None:
            response = requests.get(master_url, timeout=5)
            if response.status_code == 200:
                listed = renditions(response.text)
                seen.append(set(listed))
                if "360p30" in listed:
                    values, uri = listed["360p30"]
                    assert values["RESOLUTION"] == "640x360", values
                    rung = requests.get(urljoin(master_url, uri), timeout=5)
                    assert rung.status_code == 200
            appeared = any("360p30" in names for names in seen)
            assert appeared or time.monotonic() < deadline, f"no rung within 30 s: {seen[-1:]}"
            time.sleep(0.3)
        assert publisher.returncode == 0, publisher.communicate()
        assert {"source", "360p30"} in seen, seen
        # Never the platform's ladder: the source and the channel's one rung, no more.
        assert all(names <= {"source", "360p30"} for names in seen), seen
    finally:
        stop(process)
