"""The same end-to-end path in cluster configuration: PostgreSQL, the Redis live index and
an S3 segment store (moto's server over HTTP). Segments are fetched from S3 URLs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urljoin

import pytest
import requests

from tests.ingest.clients import ffmpeg_publish, played_video_frames
from tests.platform.delivery.browser import watch
from tests.support.processes import ROOT, free_port, stop, wait_until_serving
from tests.support.services import (
    POSTGRES,
    REDIS,
    create_bucket,
    services_or_skip,
)
from tests.transcoder.hls.checker import check_media_playlist

pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture
def cluster_env(s3_server, tmp_path):
    services_or_skip()
    import psycopg

    database = f"golive_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'create database "{database}"')
    bucket = create_bucket(s3_server, cors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLIVE_", "S3_"))}
    env.update(
        DATABASE_URL=f"{POSTGRES}/{database}",
        REDIS_URL=REDIS,
        S3_BUCKET=bucket,
        S3_ENDPOINT_URL=s3_server,
        S3_ACCESS_KEY_ID="test",
        S3_SECRET_ACCESS_KEY="test",
        S3_REGION="us-east-1",
        S3_DEFAULT_ACL="public-read",
        GOLIVE_DATA_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(tmp_path / "media"),
        PYTHONUNBUFFERED="1",
    )
    yield env, s3_server, bucket
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'drop database if exists "{database}" with (force)')


def test_cluster_configuration_serves_ll_hls_with_segments_from_s3(cluster_env) -> None:
    env, s3_url, bucket = cluster_env
    port, rtmp_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "up",
            "--http",
            f"127.0.0.1:{port}",
            "--rtmp",
            f"127.0.0.1:{rtmp_port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        key = None
        deadline = time.monotonic() + 90
        while key is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "manage.py up exited"
            match = re.search(r"Stream key:\s+(\S+)", line)
            key = match.group(1) if match else None
        threading.Thread(target=process.stdout.read, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{base}/healthz")
        publisher = ffmpeg_publish(
            f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", frames=450, realtime=True, background=True
        )
        deadline = time.monotonic() + 20
        media_url = None
        while media_url is None and time.monotonic() < deadline:
            master = requests.get(f"{base}/live/demo/master.m3u8", timeout=5)
            if master.status_code == 200:
                media_url = urljoin(f"{base}/live/demo/master.m3u8", master.text.split()[-1])
            time.sleep(0.2)
        assert media_url, "the stream never appeared"

        def fetch(uri: str) -> bool:
            return requests.get(urljoin(media_url, uri), timeout=5).status_code == 200

        previous = None
        s3_segments: set[str] = set()
        until = time.monotonic() + 6
        while time.monotonic() < until:
            text = requests.get(media_url, timeout=10).text
            previous = check_media_playlist(text, previous=previous, fetch=fetch)
            s3_segments |= {s.uri for s in previous.complete if s.uri}
            time.sleep(0.5)
        assert s3_segments, "no complete segment listed"
        assert all(uri.startswith(f"{s3_url}/{bucket}/live/") for uri in s3_segments), s3_segments
        assert previous.map_uri.startswith(f"{s3_url}/{bucket}/")
        # And a browser plays it, segments from S3 included.
        playback = watch(f"{base}/c/demo", seconds=4)
        assert playback.advanced > 3
        assert playback.longest_stall <= 1.0
        print(f"\ncluster mode latency: {playback.latency_summary()}")
        publisher.communicate(timeout=30)
        # The recording became a VOD playlist in the bucket, playable from start to end.
        vod = f"{s3_url}/{bucket}/live/{media_url.split('/')[-3]}/source/vod.m3u8"
        deadline = time.monotonic() + 15
        while requests.get(vod, timeout=5).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert played_video_frames(vod) == 450
    finally:
        stop(process)
