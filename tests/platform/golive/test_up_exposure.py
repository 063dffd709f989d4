"""`manage.py up` beyond loopback: DEBUG refused, ALLOWED_HOSTS this machine's names; and
with DEBUG off (the default) it still serves its static files and short error pages."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from golive.management.commands.up import expose, host_names, is_loopback, this_machine
from tests.support.processes import ROOT, embedded_env, free_port, start, stop

LOOPBACK = ["localhost", "127.0.0.1", "[::1]"]


@pytest.fixture
def defaults(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = list(LOOPBACK)
    settings.ALLOWED_HOSTS_IS_DEFAULT = True
    settings.GOLIVE_PUBLIC_URL_IS_DEFAULT = True
    return settings


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False)],
)
def test_loopback_is_told_apart(host, loopback) -> None:
    assert is_loopback(host) is loopback


def test_on_loopback_debug_is_allowed_and_hosts_stay_local(defaults) -> None:
    defaults.DEBUG = True
    assert expose("127.0.0.1") is None
    assert defaults.ALLOWED_HOSTS == LOOPBACK


def test_debug_is_refused_beyond_loopback(defaults) -> None:
    defaults.DEBUG = True
    for bind in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(CommandError, match="DEBUG is on"):
            expose(bind)


def test_the_command_refuses_before_touching_anything(defaults) -> None:
    defaults.DEBUG = True
    with pytest.raises(CommandError, match=r"--http 0\.0\.0\.0 is reachable"):
        call_command("up", "--no-serve", "--http", "0.0.0.0:8000")


def test_a_wildcard_bind_answers_to_this_machines_names_not_to_any(defaults) -> None:
    answers = expose("0.0.0.0")
    assert answers == defaults.ALLOWED_HOSTS
    assert "*" not in answers
    assert answers[:3] == LOOPBACK
    assert socket.gethostname() in answers
    assert set(this_machine()) <= set(answers)


def test_a_bound_address_and_the_public_url_are_answered_to(defaults) -> None:
    assert host_names("192.168.1.5", None) == [*LOOPBACK, "192.168.1.5"]
    assert host_names("fd00::5", "https://live.example.com") == [
        *LOOPBACK, "[fd00::5]", "live.example.com",
    ]
    defaults.GOLIVE_PUBLIC_URL_IS_DEFAULT = False
    defaults.GOLIVE_PUBLIC_URL = "https://live.example.com"
    assert expose("127.0.0.1") is None
    assert [*LOOPBACK, "live.example.com"] == defaults.ALLOWED_HOSTS


def test_allowed_hosts_set_by_the_operator_are_kept(defaults) -> None:
    defaults.ALLOWED_HOSTS = ["live.example.com"]
    defaults.ALLOWED_HOSTS_IS_DEFAULT = False
    assert expose("0.0.0.0") == ["live.example.com"]


@pytest.mark.slow
def test_up_with_debug_beyond_loopback_exits_with_the_reason(tmp_path) -> None:
    environ = {**embedded_env(tmp_path), "DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "manage.py", "up", "--http", f"0.0.0.0:{free_port()}", "--no-serve"],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "DEBUG is on" in result.stderr
    assert not (tmp_path / "var" / "golive.sqlite3").exists()  # refused before migrating


@pytest.mark.slow
def test_up_beyond_loopback_serves_static_files_and_short_errors_with_debug_off(
    tmp_path,
) -> None:
    port = free_port()
    process, banner = start(tmp_path, port, http_host="0.0.0.0")
    base = f"http://127.0.0.1:{port}"
    try:
        # Static files without DEBUG: the page's own and hls.js (from npm).
        assert requests.get(f"{base}/static/favicon.svg", timeout=10).status_code == 200
        player = requests.head(f"{base}/static/vendor/hls.js/hls.min.js", timeout=10)
        assert player.status_code == 200
        assert int(player.headers["Content-Length"]) > 100_000
        assert requests.get(banner["watch"], timeout=10).status_code == 200
        # Errors: short, never a technical page.
        missing = requests.get(f"{base}/media/hls/live/1/source/seg-1.m4s", timeout=10)
        assert (missing.status_code, missing.text) == (404, "no such file\n")
        assert missing.headers["Cache-Control"] == "public, max-age=1"
        page = requests.get(f"{base}/no/such/page", timeout=10)
        assert page.status_code == 404
        assert "URLconf" not in page.text
        assert "Traceback" not in page.text
        # The names it answers to, and no other.
        named = requests.get(f"{base}/healthz", headers={"Host": f"{socket.gethostname()}:{port}"},
                             timeout=10)
        assert named.status_code == 200
        stranger = requests.get(f"{base}/healthz", headers={"Host": "evil.example"}, timeout=10)
        assert stranger.status_code == 400
        assert "DisallowedHost" not in stranger.text
    finally:
        stop(process)
