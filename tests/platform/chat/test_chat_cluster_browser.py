"""Acceptance: chat in Chromium across two origin processes in cluster mode.

Two daphne processes (golive.asgi, PostgreSQL, the Redis bus), three pages: the streamer
alice signed in on origin A, the viewer dora signed in on origin B, an anonymous page on
origin A. Messages cross processes; "<script>" is text; a timed-out user is refused with
the reason; slow mode holds; a deleted message disappears everywhere.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.platform.delivery.browser import ARTIFACTS, CHROMIUM_FLAGS
from tests.support.processes import ROOT, free_port, wait_until_serving
from tests.support.services import POSTGRES, services_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.services]

REDIS = "redis://127.0.0.1:6379/14"
SEED = """
from django.contrib.auth import get_user_model
from streams.actions import create_streamer, update_channel
streamer, _ = create_streamer("alice", password="alice-pw-1234")
update_channel(streamer.channel, title="Chat across origins", category="Testing")
get_user_model().objects.create_user("dora", password="dora-pw-1234")
"""


@pytest.fixture
def cluster(tmp_path: Path):
    services_or_skip()
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    import psycopg
    import redis

    database = f"golive_wt_chat_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'create database "{database}"')
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLIVE_", "S3_"))}
    env.update(
        DATABASE_URL=f"{POSTGRES}/{database}", REDIS_URL=REDIS, GOLIVE_REDIS_PREFIX=prefix,
        GOLIVE_DATA_DIR=str(tmp_path / "var"), MEDIA_ROOT=str(tmp_path / "media"),
        SECRET_KEY=secrets.token_urlsafe(32), PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        DJANGO_SETTINGS_MODULE="golive.settings",
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    subprocess.run([*manage, "shell", "-c", SEED], cwd=ROOT, env=env, check=True, timeout=120)
    origins = []
    processes = []
    try:
        for name in ("a", "b"):
            port = free_port()
            log = (tmp_path / f"origin-{name}.log").open("wb")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                 "golive.asgi:application"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            ))
            origins.append(f"http://127.0.0.1:{port}")
        for origin in origins:
            wait_until_serving(f"{origin}/healthz")
        yield origins
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'drop database if exists "{database}" with (force)')


def sign_in(page, origin: str, user: str, password: str) -> None:
    page.goto(f"{origin}/accounts/login/?next=/c/alice")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{origin}/c/alice")


def messages(page) -> list[str]:
    return page.eval_on_selector_all(
        "#chat-messages li .text", "nodes => nodes.map(n => n.textContent)"
    )


def wait_for(predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def send(page, text: str) -> None:
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")


def test_chat_across_two_origin_processes_in_three_browsers(cluster) -> None:
    origin_a, origin_b = cluster
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_FLAGS)
        # Separate contexts: cookies ignore the port, so each person needs their own jar.
        alice = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        dora = browser.new_context().new_page()
        anonymous = browser.new_context().new_page()
        errors: list[str] = []
        for page in (alice, dora, anonymous):
            page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(alice, origin_a, "alice", "alice-pw-1234")
        sign_in(dora, origin_b, "dora", "dora-pw-1234")
        anonymous.goto(f"{origin_a}/c/alice")
        for page in (alice, dora, anonymous):
            page.wait_for_function("window.goliveChat && window.goliveChat.socket"
                                   " && window.goliveChat.socket.readyState === 1")
        alice.wait_for_function("window.goliveChat.moderator === true")

        # A message sent on origin B reaches origin A's pages.
        send(dora, "hello from origin B")
        for page in (alice, anonymous, dora):
            wait_for(lambda p=page: "hello from origin B" in messages(p), what="delivery")

        # "<script>" is shown as text and never runs.
        script = "<script>window.pwned = 1</script><img src=x onerror=window.pwned=2>"
        send(dora, script)
        for page in (alice, anonymous):
            wait_for(lambda p=page: script in messages(p), what="the script message")
            assert page.evaluate("window.pwned === undefined")
            assert page.eval_on_selector_all("#chat-messages script, #chat-messages img",
                                             "nodes => nodes.length") == 0

        # Slow mode: the streamer turns it on; dora's second message within 30 s is refused.
        alice.select_option("#mod-slow", "30")
        wait_for(lambda: dora.evaluate("window.goliveChat.state.slow") == 30, what="slow mode")
        send(dora, "first in slow mode")
        wait_for(lambda: "first in slow mode" in messages(anonymous), what="first slow message")
        send(dora, "second in slow mode")
        wait_for(lambda: dora.is_visible("#chat-notice"), what="the slow-mode refusal")
        assert "Slow mode" in dora.inner_text("#chat-notice")
        time.sleep(1.0)
        assert "second in slow mode" not in messages(anonymous)
        assert "second in slow mode" not in messages(alice)
        alice.select_option("#mod-slow", "0")

        # A deleted message disappears for everyone.
        alice.click("#chat-messages li:has-text('hello from origin B') button[data-action=delete]")
        for page in (alice, dora, anonymous):
            wait_for(lambda p=page: "hello from origin B" not in messages(p), what="deletion")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        send(alice, "Welcome! Be nice in chat.")
        wait_for(lambda: "Welcome! Be nice in chat." in messages(anonymous), what="welcome")
        alice.screenshot(path=str(ARTIFACTS / "chat-across-origins.png"))

        # A timed-out user is refused, with the reason.
        alice.once("dialog", lambda dialog: dialog.accept("cool off"))
        alice.click("#chat-messages li:has-text('first in slow mode') button[data-action=timeout]")
        wait_for(lambda: "first in slow mode" not in messages(anonymous), what="the purge")
        send(dora, "am I still here?")
        wait_for(lambda: "timed out" in dora.inner_text("#chat-notice"), what="the refusal")
        notice = dora.inner_text("#chat-notice")
        assert "cool off" in notice
        refused = dora.evaluate("window.goliveChat.refused.map(r => r.code)")
        assert refused[-1] == "timed_out"
        time.sleep(1.0)
        assert "am I still here?" not in messages(anonymous)
        assert errors == []
        browser.close()
