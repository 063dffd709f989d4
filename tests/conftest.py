"""Shared fixtures: the personas every test may use (`tests.support.personas`: alice
streams, bob is a partner streamer, charlie only watches, ada is an admin, olga is ops), and
the report of what is real. Other objects are built inline in each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.scheduling import drop_realtime
from tests.support.personas import (
    StreamerPersona,
    make_admin,
    make_ops,
    make_streamer,
    make_viewer,
)
from tests.support.processes import free_port
from tests.support.services import REQUIRE_SERVICES


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not config.pluginmanager.hasplugin("django"):
        return []
    from django.conf import settings

    database = settings.DATABASES["default"]
    engine = database["ENGINE"].rsplit(".", 1)[-1]
    where = f"{database.get('HOST') or 'local'}:{database.get('PORT') or '-'}"
    lines = [
        f"golive database: {engine} at {where} (test database test_{database['NAME']})"
        if engine == "postgresql"
        else f"golive database: {engine} (file-less test DB)"
    ]
    lines.append(f"golive redis: {settings.REDIS_URL or 'not configured (in-memory)'}")
    if REQUIRE_SERVICES and engine != "postgresql":
        raise pytest.UsageError("GOLIVE_REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL")
    return lines


_database_server: list[str] = []


@pytest.fixture(autouse=True)
def _stays_off_the_real_time_scheduler() -> Iterator[None]:
    """A test that leaves this process SCHED_FIFO (SVT-AV1 does, as root) fails, and the
    process is put back: every server, ffmpeg and browser started later would inherit it
    and, on two cores, could starve everything else."""
    yield
    if dropped := drop_realtime():
        pytest.fail(f"the test left {dropped} thread(s) of this process real-time (SCHED_FIFO); "
                    "call tests.scheduling.drop_realtime() after opening the encoder")


@pytest.fixture(scope="session", autouse=True)
def _note_database_server(request: pytest.FixtureRequest) -> Iterator[None]:
    """Asks the server for its own version, so the log shows what the suite really used."""
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
    from django.db import DatabaseError, connection

    request.getfixturevalue("django_db_setup")
    django_db_blocker = request.getfixturevalue("django_db_blocker")
    # pytest-django sets up a test database only when a collected test needs one (a run of
    # browser tests may not): then there is nothing of ours to ask, or to clean.
    test_database = str(connection.settings_dict["NAME"]).startswith("test_")
    if connection.vendor == "postgresql" and not test_database:
        _database_server.append("PostgreSQL (no test here used the database)")
        yield
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("select version()")
        else:
            cursor.execute("select 'SQLite ' || sqlite_version()")
        _database_server.append(cursor.fetchone()[0])
    yield
    if connection.vendor == "postgresql":
        # Worker threads (sync_to_async) keep their own connections to the test database
        # until they are collected; PostgreSQL then refuses to drop it, and pytest-django
        # waits 5 s and warns. This process's test database is its own: end them.
        try:
            with django_db_blocker.unblock(), connection.cursor() as cursor:
                cursor.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = current_database() and pid <> pg_backend_pid()"
                )
        except DatabaseError:
            pass  # then pytest-django waits and warns, as before


def pytest_sessionfinish(session: pytest.Session) -> None:
    # An xdist worker hands what it ran on to the controller, which prints the summary.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and _database_server:
        workeroutput["golive_database_server"] = _database_server[0]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    server = getattr(node, "workeroutput", {}).get("golive_database_server")
    if server and not _database_server:
        _database_server.append(server)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _database_server:
        terminalreporter.write_line(f"golive suite ran on: {_database_server[0]}")


@pytest.fixture
def alice(db: None) -> StreamerPersona:
    return make_streamer("alice")


@pytest.fixture
def bob(db: None) -> StreamerPersona:
    return make_streamer("bob", partner=True)


@pytest.fixture
def charlie(db: None) -> Any:
    return make_viewer("charlie")


@pytest.fixture
def ada(db: None) -> Any:
    return make_admin("ada")


@pytest.fixture
def olga(db: None) -> Any:
    return make_ops("olga")


@pytest.fixture
def api() -> Any:
    from rest_framework.test import APIClient

    return APIClient()


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("django"):
        return  # -p no:django: the pure protocol tests run without Django
    from django.conf import settings

    # Real hashing costs ~0.6 s a user on this machine; tests check behaviour, not PBKDF2.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Each test process (an xdist worker, another checkout's run) keys Redis under its own
    # prefix: workers' databases hand out the same ids, so their live-index streams
    # ("s<session id>"), chat rooms and counters would otherwise collide.
    settings.GOLIVE_REDIS_PREFIX = f"golive-test-{uuid.uuid4().hex[:10]}"
    # Broadcasts end when their publisher leaves, so tests need not wait out the reconnect
    # grace; the tests of the grace set their own (platform processes: embedded_env).
    settings.GOLIVE_RECONNECT_GRACE = 0
    # Tests roll their transactions back, so the slot ledger's releases (after a commit)
    # would never run: admissions take the quota row lock unless a test turns it on.
    settings.GOLIVE_SLOT_LEDGER = False


def pytest_unconfigure(config: pytest.Config) -> None:
    """Deletes what this process left in Redis under its prefix."""
    if not config.pluginmanager.hasplugin("django"):
        return
    from django.conf import settings

    prefix = getattr(settings, "GOLIVE_REDIS_PREFIX", "")
    if not settings.REDIS_URL or not prefix.startswith("golive-test-"):
        return
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    except redis.RedisError:
        pass  # the keys expire by themselves


@pytest.fixture(scope="session")
def s3_server() -> Any:
    """moto in server mode: a real S3-compatible HTTP endpoint that boto3 talks to."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


# The ingest harness (an IngestServer on its own loop thread) serves every test folder.
from tests.ingest.harness import loop_thread, start_ingest  # noqa: E402, F401

# The 720p30 H.264/AAC source the packager and packaging tests share, and its packaged
# output (built on first use; PyAV is imported only then).
# Two and a half GOPs: two whole 2 s segments and a 1 s one cut by the end of the publish.
CLIP_SECONDS = 5


@pytest.fixture(scope="session")
def source_flv() -> bytes:
    from tests.transcoder.cmaf.media import encode_flv_cli

    return encode_flv_cli(CLIP_SECONDS)


@pytest.fixture(scope="session")
def clip(source_flv: bytes) -> Any:
    from tests.transcoder.cmaf.media import demux_flv

    return demux_flv(source_flv)


@pytest.fixture(scope="session")
def packaged(clip: Any) -> Any:
    """The clip through a packager with default settings (do not modify)."""
    from tests.transcoder.cmaf.media import Collector, feed
    from transcoder.cmaf import Packager

    output = Collector()
    feed(Packager(output), clip)
    return output
