"""A live stack on this machine for the edge tests and the surge benchmark: a throwaway
PostgreSQL database, a Redis database of our own, one `manage.py ingest`, N origin
processes (`daphne golive.asgi:application`, as the cluster runs them), Varnish with the
project's VCL in front of them, and ffmpeg publishing a small looping stream in real time.

Every process is started through `tests.bench.processes.Processes` (stopped at the end, and
SIGTERMed if this process dies); the database is dropped and our Redis keys deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bench.processes import Processes, free_port, tail, wait_listening
from tests.bench.sample import QUIET
from tests.support.services import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
VCL_DIR = ROOT / "deploy" / "varnish"
POSTGRES = os.environ.get("GOLIVE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("GOLIVE_TEST_REDIS", "redis://127.0.0.1:6379/13")


def missing_tools() -> list[str]:
    return [tool for tool in ("varnishd", "varnishstat", "ffmpeg") if shutil.which(tool) is None]


def needs_stack() -> None:
    if missing := missing_tools():
        message = f"missing {', '.join(missing)} (apt-get install varnish ffmpeg)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    if error := services_error():
        if REQUIRE_SERVICES:
            pytest.fail(error)
        pytest.skip(f"PostgreSQL and Redis are needed: {error}")


def services_error() -> str | None:
    try:
        import psycopg
        import redis

        psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3).close()
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except Exception as error:
        return str(error)
    return None


def small_sample(path: Path, seconds: int = 8) -> Path:
    """320x180 at 30 fps, a keyframe every 2 s, ~150 kb/s: parts of a few kilobytes, so
    thousands of viewers cost the machine requests, not bandwidth."""
    command = [shutil.which("ffmpeg") or "ffmpeg", *QUIET, "-y"]
    command += ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds)]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-b:v", "120k"]
    command += ["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"]
    command += ["-c:a", "aac", "-b:a", "32k", "-f", "flv", str(path)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return path


@dataclass
class Stack:
    workdir: Path
    processes: Processes
    env: dict[str, str]
    database: str
    origin_ports: list[int] = field(default_factory=list)
    edge_port: int = 0
    rtmp_port: int = 0
    varnish_name: str = ""
    channel: str = ""
    key: str = ""

    @property
    def origins(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.origin_ports]

    def master(self, base: str) -> str:
        return f"{base}/live/{self.channel}/master.m3u8"

    @property
    def edge(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def manage(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
            text=True, timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-1500:]}")
        return done.stdout

    def start_ingest(
        self, node: str = "ingest-1", *, redis: bool = True, env: dict[str, str] | None = None
    ) -> int:
        """`manage.py ingest` on a free port (``redis`` False: no REDIS_URL, so admission
        takes the quota row lock; ``env``: more settings); returns the port."""
        port = free_port()
        self.rtmp_port = self.rtmp_port or port
        env = {**self.env, "GOLIVE_NODE_NAME": node, **(env or {})}
        if not redis:
            env.pop("REDIS_URL", None)
        log = self.workdir / f"{node}.log"
        with log.open("ab") as output:
            process = self.processes.start(
                [sys.executable, "manage.py", "ingest", "--rtmp", f"127.0.0.1:{port}"],
                cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            )
        if not wait_listening(port, process, 60):
            raise RuntimeError(f"the ingest did not start: {tail(log)}")
        return port

    def start_origin(self) -> int:
        port = free_port()
        log = self.workdir / f"origin-{port}.log"
        endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=4096"
        with log.open("ab") as output:
            process = self.processes.start(
                [sys.executable, "-m", "daphne", "-e", endpoint, "-v", "0",
                 "golive.asgi:application"],
                many_files=True, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT,
            )
        if not wait_listening(port, process, 60):
            raise RuntimeError(f"the origin did not start: {tail(log)}")
        self.origin_ports.append(port)
        return port

    def start_edge(self) -> None:
        """varnishd with deploy/varnish/golive.vcl and an origins.vcl naming our origins."""
        vcl = self.workdir / "vcl"
        vcl.mkdir(exist_ok=True)
        (vcl / "origins.vcl").write_text(origins_vcl(self.origin_ports))
        self.edge_port = free_port()
        self.varnish_name = str(self.workdir / "varnish")
        command = [
            shutil.which("varnishd") or "varnishd", "-F", "-j", "none",
            "-n", self.varnish_name, "-a", f"127.0.0.1:{self.edge_port}",
            "-f", str(VCL_DIR / "golive.vcl"), "-p", f"vcl_path={vcl}:{VCL_DIR}",
            "-s", "malloc,256m", "-p", "listen_depth=4096",
        ]
        log = self.workdir / "varnish.log"
        with log.open("ab") as output:
            process = self.processes.start(command, many_files=True, stdout=output,
                                           stderr=subprocess.STDOUT)
        if not wait_listening(self.edge_port, process, 60):
            raise RuntimeError(f"varnishd did not start: {tail(log)}")

    def create_channel(self, name: str = "surge") -> None:
        created = json.loads(self.manage("createstreamer", name, "--json"))
        self.channel, self.key = created["channel"], created["stream_key"]

    def publish(self, sample: Path) -> None:
        command = [shutil.which("ffmpeg") or "ffmpeg", *QUIET, "-re", "-stream_loop", "-1"]
        command += ["-i", str(sample), "-c", "copy", "-f", "flv"]
        command += [f"rtmp://127.0.0.1:{self.rtmp_port}/live/{self.key}"]
        with (self.workdir / "publisher.log").open("ab") as log:
            self.processes.start(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=log)

    def wait_live(self, base: str, timeout: float = 30) -> None:
        """Until the multivariant playlist is served and its media playlist has parts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.master(base), timeout=3) as answer:  # noqa: S310
                    uri = answer.read().decode().split()[-1]
                media = f"{base}/live/{self.channel}/{uri}"
                with urllib.request.urlopen(media, timeout=3) as answer:  # noqa: S310
                    if answer.read().count(b"#EXT-X-PART:") >= 6:
                        return
            time.sleep(0.3)
        publisher = tail(self.workdir / "publisher.log")
        raise RuntimeError(f"{self.channel} never went live: {publisher}")


def origins_vcl(ports: list[int], host: str = "127.0.0.1") -> str:
    """The backends and the round-robin `origins` director that golive.vcl includes."""
    lines = []
    for number, port in enumerate(ports, 1):
        lines += [
            f"backend origin{number} {{",
            f'    .host = "{host}";', f'    .port = "{port}";',
            "    .connect_timeout = 1s;", "    .first_byte_timeout = 35s;",
            "    .between_bytes_timeout = 10s;", "}", "",
        ]
    lines += ["sub vcl_init {", "    new origins = directors.round_robin();"]
    lines += [f"    origins.add_backend(origin{n});" for n in range(1, len(ports) + 1)]
    lines += ["}", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def empty_stack(workdir: Path, *, redis: bool = True) -> Iterator[Stack]:
    """A migrated throwaway database and the environment every process gets; nothing
    running yet."""
    import psycopg
    import redis as redis_client

    database = f"golive_stack_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'create database "{database}"')
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOLIVE_", "S3_", "DATABASE_", "CELERY_", "REDIS_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        DJANGO_SETTINGS_MODULE="golive.settings",
        DATABASE_URL=f"{POSTGRES}/{database}",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS="*",
        GOLIVE_DATA_DIR=str(workdir / "var"),
        MEDIA_ROOT=str(workdir / "media"),
        GOLIVE_RECONNECT_GRACE="0",
        GOLIVE_RTMP_MAX_CONNECTIONS="5000",
        GOLIVE_RTMP_MAX_CONNECTIONS_PER_IP="5000",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if redis:
        env["REDIS_URL"] = REDIS
    processes = Processes()
    stack = Stack(workdir, processes, env, database)
    try:
        stack.manage("migrate", "--no-input", timeout=300)
        yield stack
    finally:
        processes.close()
        with contextlib.suppress(Exception):
            client = redis_client.Redis.from_url(REDIS)
            for name in client.scan_iter(match="golive:*", count=1000):
                client.delete(name)
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'drop database if exists "{database}" with (force)')


@contextlib.contextmanager
def live_stack(workdir: Path, *, origins: int = 1, edge: bool = True) -> Iterator[Stack]:
    """The stack, live: a channel publishing, the origins and (``edge``) Varnish serving it."""
    with empty_stack(workdir) as stack:
        stack.create_channel()
        stack.start_ingest()
        for _ in range(origins):
            stack.start_origin()
        if edge:
            stack.start_edge()
        stack.publish(small_sample(workdir / "sample.flv"))
        stack.wait_live(stack.origins[0])
        yield stack
