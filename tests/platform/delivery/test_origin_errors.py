"""The origin's errors: the right status, for as long as it stays true (shareable by an edge
cache), in the origin's own words; HEAD wherever GET; 503 + Retry-After, not 500 and a
traceback, while Redis or the database is down."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from typing import Any

import pytest
from django.db import OperationalError

from tests.support.origin import PLAYLIST, SESSION, Exchange
from tests.support.processes import free_port
from transcoder.live_index import PartRef

MEDIA = f"/live/demo/{SESSION}/source"


@pytest.mark.parametrize(
    ("target", "status", "cache", "body"),
    [
        # Malformed: never a success for this URL.
        (f"{PLAYLIST}?_HLS_msn=abc", 400, "public, max-age=60",
         b"_HLS_msn and _HLS_part are whole numbers\n"),
        (f"{PLAYLIST}?_HLS_part=2", 400, "public, max-age=60", b"_HLS_part needs _HLS_msn\n"),
        ("/live/demo/1/..bad/index.m3u8", 404, "public, max-age=60", b"no such rendition\n"),
        # Ahead of the live edge: true until the stream catches up.
        (f"{PLAYLIST}?_HLS_msn=9", 400, "public, max-age=1",
         b"_HLS_msn 9 is too far ahead of -1\n"),
        (f"{PLAYLIST}?_HLS_msn=0&_HLS_part=40", 400, "public, max-age=1",
         b"_HLS_part 40 is too far ahead\n"),
        # Not (yet) there.
        ("/live/demo/1/source/index.m3u8", 404, "public, max-age=2", b"no such broadcast\n"),
        (f"{MEDIA}/seg-7.m4s", 404, "public, max-age=1", b"no such segment\n"),
        (f"{MEDIA}/init-9.mp4", 404, "public, max-age=1", b"no such init segment\n"),
        (f"{MEDIA}/part-5.0.m4s", 404, "public, max-age=1", b"no such part\n"),
    ],
)
def test_each_error_says_what_and_for_how_long(index, target, status, cache, body) -> None:
    exchange = Exchange(target)
    asyncio.run(exchange.run())
    assert exchange.status == status
    assert exchange.headers["cache-control"] == cache
    assert exchange.headers["content-type"] == "text/plain; charset=utf-8"
    assert exchange.headers["access-control-allow-origin"] == "*"
    assert exchange.body == body


def test_a_part_that_does_not_arrive_in_time_is_a_shareable_503_without_retry_after(
    index, monkeypatch
) -> None:
    from delivery import origin

    monkeypatch.setattr(origin, "BLOCK_TARGETS", 0.05)  # 0.1 s instead of 6 s
    exchange = Exchange(f"{PLAYLIST}?_HLS_msn=0&_HLS_part=1")
    asyncio.run(exchange.run())
    assert exchange.status == 503
    assert exchange.headers["cache-control"] == "public, max-age=1"
    # The edge retries a 503 with Retry-After on another origin: that would wait again.
    assert "retry-after" not in exchange.headers
    assert exchange.body == b"that part did not arrive in time\n"


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        (PLAYLIST, "application/vnd.apple.mpegurl"),
        (f"{PLAYLIST}?_HLS_msn=0&_HLS_part=0", "application/vnd.apple.mpegurl"),
        (f"{MEDIA}/part-0.0.m4s", "video/mp4"),
        (f"{MEDIA}/init-1.mp4", "video/mp4"),
        (f"{MEDIA}/seg-7.m4s", "text/plain; charset=utf-8"),
    ],
)
def test_head_is_answered_like_get_without_the_body(index, target, kind) -> None:
    get, head = Exchange(target), Exchange(target)
    head.scope["method"] = "HEAD"
    asyncio.run(get.run())
    asyncio.run(head.run())
    assert head.status == get.status
    assert head.headers == get.headers
    assert head.headers["content-type"] == kind
    assert int(head.headers["content-length"]) == len(get.body) > 0
    assert head.body == b""


def test_a_stored_segment_has_the_same_content_type_as_a_served_one() -> None:
    from delivery.responses import content_type
    from delivery.storage import SegmentS3Storage

    assert content_type("live/1/source/seg-3.m4s") == content_type("init-1.mp4") == "video/mp4"
    parameters = SegmentS3Storage(bucket_name="b").get_object_parameters("live/1/source/seg-3.m4s")
    assert parameters["ContentType"] == "video/mp4"
    assert parameters["CacheControl"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize(
    ("path", "status", "cache", "body"),
    [
        ("/media/hls/live/1/source/nothing.m4s", 404, "public, max-age=1", b"no such file\n"),
        ("/media/hls/../../pyproject.toml", 404, "public, max-age=60", b"no such file\n"),
        ("/media/elsewhere.txt", 404, "public, max-age=60", b"not found\n"),
        ("/live/demo/not/a/url", 404, "public, max-age=60", b"not found\n"),
    ],
)
def test_unknown_media_and_live_urls_get_the_origins_short_404_even_with_debug_on(
    client, settings, path, status, cache, body
) -> None:
    settings.DEBUG = True  # Django's own 404 would then be the technical page
    for method in (client.get, client.head):
        response = method(path)
        assert response.status_code == status
        assert response["Cache-Control"] == cache
        assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert client.get(path).content == body


def test_a_stored_file_answers_head_with_its_length(client, settings, tmp_path) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "segments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path, "base_url": "/media/hls/"},
        },
    }
    from django.core.files.storage import storages

    storages._storages.pop("segments", None)  # built again from the settings above
    try:
        (tmp_path / "seg-1.m4s").write_bytes(b"x" * 100)
        head = client.head("/media/hls/seg-1.m4s")
        assert head.status_code == 200
        assert head["Content-Length"] == "100"
        assert head["Content-Type"] == "video/mp4"
        assert head["Cache-Control"] == "public, max-age=31536000, immutable"
        assert b"".join(head.streaming_content) == b""
    finally:
        storages._storages.pop("segments", None)


# --- dependencies down -----------------------------------------------------------------


@pytest.fixture
def redis_index(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Points the origin's live index at ``settings.REDIS_URL`` (set by the test) with a
    fresh index per test: each is bound to its event loop."""
    from delivery import live, responses

    monkeypatch.setattr(live, "_indexes", {})
    monkeypatch.setattr(responses, "_warned", {})
    settings.GOLIVE_REDIS_PREFIX = f"errors-{free_port()}"
    return live


def assert_unavailable(exchange: Exchange) -> None:
    assert exchange.status == 503, exchange.body
    assert exchange.headers["retry-after"] == "2"
    assert exchange.headers["cache-control"] == "public, max-age=1"
    assert exchange.body == b"the live index is unavailable: retry shortly\n"


def assert_no_traceback(caplog: pytest.LogCaptureFixture, err: str) -> None:
    assert "Traceback" not in err
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.name == "delivery.responses"]
    if not warnings:
        # After a test that configured logging from settings, the record reaches the
        # process's own handler (stderr) rather than pytest's capture: read it there.
        warnings = [line.split(" delivery.responses ", 1)[1]
                    for line in err.splitlines() if " delivery.responses " in line]
    assert len(warnings) == 1, (warnings, err)  # one line, however many requests
    assert warnings[0].startswith("the live index is unavailable, answering 503")
    assert "\n" not in warnings[0]


def test_with_redis_unreachable_every_media_url_is_503_with_retry_after(
    redis_index, settings, caplog, capfd
) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    caplog.set_level(logging.INFO)
    targets = [PLAYLIST, f"{PLAYLIST}?_HLS_msn=3&_HLS_part=0", f"{MEDIA}/part-0.0.m4s",
               f"{MEDIA}/seg-0.m4s", f"{MEDIA}/init-1.mp4"]
    exchanges = [Exchange(target) for target in targets]

    async def scenario() -> None:
        for exchange in exchanges:
            await exchange.run()

    asyncio.run(scenario())
    for exchange in exchanges:
        assert_unavailable(exchange)
    assert_no_traceback(caplog, capfd.readouterr().err)


@pytest.fixture
def redis_server(tmp_path) -> Any:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                         text=True).stdout.strip() != "PONG":
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield process, f"redis://127.0.0.1:{port}/0"
    process.kill()
    process.wait()


@pytest.mark.slow  # a Redis server of its own
def test_origin_with_redis_killed_answers_503_with_retry_after_and_logs_no_traceback(
    redis_index, redis_server, settings, caplog, capfd, monkeypatch
) -> None:
    from delivery import origin

    monkeypatch.setattr(origin, "BLOCK_TARGETS", 0.5)  # a blocked request gives up after 1 s
    process, settings.REDIS_URL = redis_server
    caplog.set_level(logging.INFO)
    stream = f"s{SESSION}"

    async def scenario() -> tuple[Exchange, Exchange, Exchange, Exchange]:
        live = redis_index.live_index()
        await live.set_init(stream, "source", b"init", 0.334, target_duration=2)
        await live.add_part(stream, "source", PartRef(0, 0, 0.334, True), b"p0")
        before = Exchange(PLAYLIST)
        await before.run()
        blocked = Exchange(f"{PLAYLIST}?_HLS_msn=0&_HLS_part=1")
        waiting = asyncio.create_task(blocked.run())
        await asyncio.sleep(0.2)
        process.kill()  # SIGKILL: connections reset, nothing listens any more
        process.wait()
        await asyncio.wait_for(waiting, 10)
        after, part = Exchange(PLAYLIST), Exchange(f"{MEDIA}/part-0.1.m4s")
        await after.run()
        await part.run()
        await live.aclose()
        return before, blocked, after, part

    before, blocked, after, part = asyncio.run(scenario())
    assert before.status == 200
    assert b"part-0.0.m4s" in before.body
    for exchange in (blocked, after, part):
        assert_unavailable(exchange)
    assert_no_traceback(caplog, capfd.readouterr().err)


def test_with_the_database_down_the_multivariant_playlist_is_503(
    client, db, monkeypatch, caplog
) -> None:
    from delivery import origin, responses

    monkeypatch.setattr(responses, "_warned", {})
    monkeypatch.setattr(origin, "_masters", {})

    def refused(slug: str) -> None:
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed')

    monkeypatch.setattr(origin, "_lookup_broadcast", refused)
    caplog.set_level(logging.INFO)
    for method in (client.get, client.head):
        response = method("/live/demo/master.m3u8")
        assert response.status_code == 503
        assert response["Retry-After"] == "2"
        assert response["Cache-Control"] == "public, max-age=1"
    assert client.get("/live/demo/master.m3u8").content == (
        b"the database is unavailable: retry shortly\n"
    )
    assert not [r for r in caplog.records if r.exc_info]
    assert [r.name for r in caplog.records if r.name == "delivery.responses"] == [
        "delivery.responses"
    ]


@pytest.mark.slow  # a Redis server and an origin process (daphne) of its own
def test_an_origin_process_with_redis_killed_answers_503_and_its_log_has_no_traceback(
    redis_server, tmp_path
) -> None:
    import os
    import sys

    import requests

    from tests.support.processes import ROOT
    from transcoder.live_index import open_live_index

    process, url = redis_server
    prefix = f"errors-{free_port()}"
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GOLIVE_")}
    environ.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        DJANGO_SETTINGS_MODULE="golive.settings", REDIS_URL=url, GOLIVE_REDIS_PREFIX=prefix,
        GOLIVE_DATA_DIR=str(tmp_path / "var"), LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
    )

    async def publish() -> None:
        live = open_live_index(url, prefix=prefix)
        await live.set_init(f"s{SESSION}", "source", b"init", 0.334, target_duration=2)
        await live.add_part(f"s{SESSION}", "source", PartRef(0, 0, 0.334, True), b"p0")
        await live.aclose()

    asyncio.run(publish())
    log_path = tmp_path / "origin.log"
    with log_path.open("wb") as log:
        origin = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "golive.asgi:application"],
            cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                served = requests.get(base + PLAYLIST, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        assert served.status_code == 200
        assert b"part-0.0.m4s" in served.content
        process.kill()
        process.wait()
        answers = [
            requests.get(base + PLAYLIST, timeout=10),
            requests.get(f"{base}{PLAYLIST}?_HLS_msn=0&_HLS_part=1", timeout=15),
            requests.get(f"{base}{MEDIA}/part-0.0.m4s", timeout=10),
            requests.head(f"{base}{MEDIA}/seg-0.m4s", timeout=10),
        ]
    finally:
        origin.terminate()
        origin.wait(15)
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "2"
        assert answer.headers["Cache-Control"] == "public, max-age=1"
    assert answers[0].text == "the live index is unavailable: retry shortly\n"
    written = log_path.read_text()
    assert "Traceback" not in written
    assert " ERROR " not in written
    assert written.count("the live index is unavailable, answering 503") == 1, written
