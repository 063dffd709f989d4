"""Faults in cluster mode: Redis killed, the object store cut off, an ingest node killed.

Each test runs the cluster in processes of its own: a redis-server it starts on a free port
(so killing it touches no shared Redis), an S3 server (moto) behind a TCP proxy it can cut,
PostgreSQL, `manage.py up` as the origin (its own ingest reaps lapsed leases) and a
separate `manage.py ingest` node that ffmpeg publishes to. A viewer follows the live edge
with blocking reloads; at the end the VOD's frames are counted with ffprobe.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish, played_video_frames
from tests.platform.delivery.faults import RedisServer, TcpProxy, Viewer
from tests.support.processes import ROOT, free_port, stop, wait_until_serving
from tests.support.services import POSTGRES, create_bucket, services_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.services]

FRAMES = 600  # 20 s at 30 fps: ten 2 s segments
LEASE_TTL = 15.0


@dataclass
class Cluster:
    redis: RedisServer
    s3: TcpProxy
    bucket: str
    database: str
    base: str
    rtmp: str
    key: str
    ingest: subprocess.Popen[str]
    ingest_log: list[str]

    def query(self, sql: str, *params: object) -> tuple:  # type: ignore[type-arg]
        import psycopg

        with psycopg.connect(f"{POSTGRES}/{self.database}") as connection:
            row = connection.execute(sql, params).fetchone()
        assert row is not None, sql
        return tuple(row)

    def media_url(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            master = requests.get(f"{self.base}/live/demo/master.m3u8", timeout=5)
            if master.status_code == 200:
                return urljoin(master.url, master.text.split()[-1])
            time.sleep(0.2)
        raise AssertionError("the stream never appeared")

    def stored_segments(self, session: int) -> set[str]:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.s3.url, aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
        listing = s3.list_objects_v2(Bucket=self.bucket, Prefix=f"live/{session}/source/seg-")
        return {item["Key"].rsplit("/", 1)[-1] for item in listing.get("Contents", [])}

    def vod(self, session: int, timeout: float) -> str:
        """The VOD playlist's text once the session names it (within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (path,) = self.query("select vod_path from streams_livesession where id = %s", session)
            if path:
                response = requests.get(f"{self.s3.url}/{self.bucket}/{path}", timeout=5)
                assert response.status_code == 200, path
                return response.text
            time.sleep(0.25)
        raise AssertionError(f"session {session} got no VOD within {timeout} s")


def _start_logged(command: list[str], env: dict[str, str], ready: str, timeout: float = 90
                  ) -> tuple[subprocess.Popen[str], list[str], re.Match[str]]:
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"{command[2]} exited: {''.join(lines[-30:])}"
        lines.append(line)
        if match := re.search(ready, line):
            break
    else:
        raise AssertionError(f"{command[2]} never said {ready!r}")
    # Keep reading, or a full pipe would stall the process mid-test.
    stream = process.stdout
    threading.Thread(target=lambda: lines.extend(stream), daemon=True).start()
    return process, lines, match


def _cluster(s3_server: str, tmp_path: Path, *, appendonly: bool) -> Iterator[Cluster]:
    services_or_skip()
    import psycopg

    redis = RedisServer(free_port(), tmp_path / "redis", appendonly=appendonly)
    redis.start()
    s3_port = urlparse(s3_server).port
    assert s3_port is not None
    proxy = TcpProxy(("127.0.0.1", s3_port))
    database = f"golive_faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'create database "{database}"')
    bucket = create_bucket(s3_server, cors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLIVE_", "S3_"))}
    env.update(
        DATABASE_URL=f"{POSTGRES}/{database}", REDIS_URL=redis.url, S3_BUCKET=bucket,
        S3_ENDPOINT_URL=proxy.url, S3_ACCESS_KEY_ID="test", S3_SECRET_ACCESS_KEY="test",
        S3_REGION="us-east-1", S3_DEFAULT_ACL="public-read",
        GOLIVE_DATA_DIR=str(tmp_path / "var"), MEDIA_ROOT=str(tmp_path / "media"),
        GOLIVE_RECONNECT_GRACE="0", GOLIVE_LEASE_TTL=str(LEASE_TTL), PYTHONUNBUFFERED="1",
    )
    port = free_port()
    origin, _origin_log, banner = _start_logged(
        [sys.executable, "manage.py", "up", "--http", f"127.0.0.1:{port}",
         "--rtmp", f"127.0.0.1:{free_port()}"],
        env, r"Stream key:\s+(\S+)",
    )
    ingest = None
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/healthz")
        ingest, ingest_log, said = _start_logged(
            [sys.executable, "manage.py", "ingest", "--rtmp", f"127.0.0.1:{free_port()}"],
            {**env, "GOLIVE_NODE_NAME": "ingest-b"}, r"RTMP ingest on (\S+)",
        )
        yield Cluster(redis, proxy, bucket, database, f"http://127.0.0.1:{port}",
                      said.group(1), banner.group(1), ingest, ingest_log)
    finally:
        for process in (ingest, origin):
            if process is not None:
                stop(process)
        proxy.close()
        redis.stop()
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'drop database if exists "{database}" with (force)')


@pytest.fixture
def cluster(s3_server: str, tmp_path: Path) -> Iterator[Cluster]:
    yield from _cluster(s3_server, tmp_path, appendonly=False)


@pytest.fixture
def cluster_with_aof(s3_server: str, tmp_path: Path) -> Iterator[Cluster]:
    yield from _cluster(s3_server, tmp_path, appendonly=True)


def _publish(cluster: Cluster, frames: int = FRAMES) -> subprocess.Popen[str]:
    publisher = ffmpeg_publish(f"{cluster.rtmp}/{cluster.key}", frames=frames, realtime=True,
                               background=True)
    assert isinstance(publisher, subprocess.Popen)
    return publisher


def _session(cluster: Cluster) -> int:
    (session,) = cluster.query("select id from streams_livesession order by id desc limit 1")
    return int(session)


def _finish(cluster: Cluster, publisher: subprocess.Popen[str], frames: int = FRAMES) -> int:
    """Waits for the publish to end normally; checks it was one session, never restarted,
    and that its VOD plays every frame the ingest received. Returns the session id."""
    _out, err = publisher.communicate(timeout=60)
    assert publisher.returncode == 0, err
    sessions, reconnects = cluster.query(
        "select count(*), sum(reconnects) from streams_livesession")
    assert (sessions, reconnects) == (1, 0), "the publish restarted"
    session = _session(cluster)
    cluster.vod(session, timeout=20)
    (received,) = cluster.query(
        "select video_frames from streams_livesession where id = %s", session)
    assert received == frames
    (path,) = cluster.query("select vod_path from streams_livesession where id = %s", session)
    vod_url = f"{cluster.s3.url}/{cluster.bucket}/{path}"
    listed = set(re.findall(r"seg-\d+\.m4s", requests.get(vod_url, timeout=5).text))
    assert listed == cluster.stored_segments(session)
    assert played_video_frames(vod_url) == received
    return session


def _kill_and_restart_redis(cluster: Cluster) -> None:
    publisher = _publish(cluster)
    try:
        viewer = Viewer(cluster.media_url()).start()
        time.sleep(5)
        assert len(viewer.arrivals) > 5, "the viewer saw no parts before the fault"
        cluster.redis.set_sentinel()
        cluster.redis.kill()
        time.sleep(3)
        back = cluster.redis.start()
        assert cluster.redis.has_sentinel() == cluster.redis.appendonly
        time.sleep(6)
        resumed = viewer.first_arrival_after(back)
        assert resumed is not None, f"no new part after Redis came back: {viewer.failures[-5:]}"
        assert resumed - back < 5.0
        print(f"\nviewer resumed {resumed - back:.2f} s after Redis accepted connections")
        _finish(cluster, publisher)
        viewer.stop()
        assert viewer.ended, "the viewer never saw the playlist end"
        # The ingest noticed and rebuilt the index (a reset, or an old file's state).
        lost = [line for line in cluster.ingest_log if "live index lost" in line]
        assert lost, "the ingest never noticed the index was gone"
        assert any("rebuilt" in line for line in cluster.ingest_log)
        print(lost[0].strip())
    finally:
        if publisher.poll() is None:
            publisher.kill()


def test_redis_restarted_empty_costs_a_stall_and_loses_nothing(cluster: Cluster) -> None:
    _kill_and_restart_redis(cluster)


def test_redis_restarted_from_its_append_only_file_costs_a_stall_and_loses_nothing(
    cluster_with_aof: Cluster,
) -> None:
    _kill_and_restart_redis(cluster_with_aof)


def test_object_store_away_for_20_s_stalls_no_viewer_and_loses_no_segment(
    cluster: Cluster,
) -> None:
    # 28 s: the store is cut 3 s after the stream appears, for 20 s, then back for the end.
    frames = 840
    publisher = _publish(cluster, frames)
    try:
        viewer = Viewer(cluster.media_url()).start()
        time.sleep(3)
        cut = time.monotonic()
        cluster.s3.cut()
        time.sleep(20)
        cluster.s3.restore()
        restored = time.monotonic()
        gap = viewer.longest_gap(cut, restored)
        print(f"\nlongest time without a new part while the store was away: {gap:.2f} s")
        if gap > 1.0 and os.environ.get("GOLIVE_FAULTS_DEBUG"):
            Path(os.environ["GOLIVE_FAULTS_DEBUG"]).write_text(
                f"{[round(t - cut, 2) for t in viewer.arrivals]}\n{''.join(cluster.ingest_log)}")
        assert gap <= 1.0
        assert not viewer.failures, viewer.failures
        session = _finish(cluster, publisher, frames)
        assert len(cluster.stored_segments(session)) == frames // 60
        viewer.stop()
    finally:
        if publisher.poll() is None:
            publisher.kill()


def test_killed_ingest_node_still_gets_a_vod_of_every_stored_segment(cluster: Cluster) -> None:
    publisher = _publish(cluster)
    try:
        cluster.media_url()
        session = _session(cluster)
        deadline = time.monotonic() + 20
        while len(cluster.stored_segments(session)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(cluster.ingest.pid, signal.SIGKILL)
        killed = time.monotonic()
        cluster.ingest.wait(timeout=10)
        text = cluster.vod(session, timeout=LEASE_TTL + 10)
        print(f"\nVOD of the dead node's broadcast after {time.monotonic() - killed:.1f} s")
        stored = cluster.stored_segments(session)
        assert len(stored) >= 3
        assert set(re.findall(r"seg-\d+\.m4s", text)) == stored
        ended, reason, last_known = cluster.query(
            "select ended_at is not null, end_reason, figures_last_known"
            " from streams_livesession where id = %s", session)
        assert (ended, reason, last_known) == (True, "ingest_lost", True)
        (path,) = cluster.query("select vod_path from streams_livesession where id = %s", session)
        assert played_video_frames(f"{cluster.s3.url}/{cluster.bucket}/{path}") == 60 * len(stored)
    finally:
        publisher.kill()
        publisher.wait(timeout=10)
