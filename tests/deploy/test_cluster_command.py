"""`manage.py cluster`, the one command that runs the process list on this machine: two
origins, one ingest node, one Celery worker, beat and Varnish, on PostgreSQL, Redis and an
S3 store (moto's server). An ffmpeg publish through it plays in Chromium through the edge."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from surge.edge import origin_counters, varnish_counters
from tests.deploy.stack import ROOT, empty_stack, needs_stack, small_sample
from tests.platform.delivery.browser import watch
from tests.support.processes import free_port
from tests.support.services import create_bucket

pytestmark = [pytest.mark.slow, pytest.mark.services]


def wait_for(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (ours)
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered")


def wait_for_port(port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"nothing listens on port {port}")


def test_the_cluster_command_runs_every_process_and_a_publish_plays_through_the_edge(
    tmp_path, s3_server
) -> None:
    needs_stack()
    with empty_stack(tmp_path) as stack:
        bucket = create_bucket(s3_server, cors=True)
        env = {
            **stack.env, "S3_BUCKET": bucket, "S3_ENDPOINT_URL": s3_server,
            "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test",
            "S3_REGION": "us-east-1", "S3_DEFAULT_ACL": "public-read",
            "GOLIVE_SERVE_STATIC": "1",
        }
        edge_port, origin_port, rtmp_port = free_port(), free_port(), free_port()
        log = tmp_path / "cluster.log"
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "cluster", "--origins", "2", "--ingest", "1",
             "--workers", "1", "--http", f"127.0.0.1:{edge_port}",
             "--origin-port", str(origin_port), "--rtmp", f"127.0.0.1:{rtmp_port}"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        publisher = None
        try:
            edge = f"http://127.0.0.1:{edge_port}"
            wait_for(f"{edge}/healthz")
            for port in (origin_port, origin_port + 1):
                wait_for(f"http://127.0.0.1:{port}/healthz")
            wait_for_port(rtmp_port)  # ffmpeg does not retry a refused connection
            created = json.loads(stack.manage("createstreamer", "cassie", "--json"))
            sample = small_sample(tmp_path / "sample.flv")
            publisher = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
                 "-stream_loop", "-1", "-i", str(sample), "-c", "copy", "-f", "flv",
                 f"rtmp://127.0.0.1:{rtmp_port}/live/{created['stream_key']}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            before = varnish_counters(str(tmp_path / "var" / "cluster" / "varnish"))
            playback = watch(f"{edge}/c/{created['channel']}", seconds=8)
            after = varnish_counters(str(tmp_path / "var" / "cluster" / "varnish"))
            print(f"\ncluster through the edge: {playback.latency_summary()}")
            assert playback.advanced > 6
            assert playback.longest_stall <= 1.0
            assert not playback.errors
            # The viewer's LL-HLS requests went through Varnish, to both origins.
            assert after["MAIN.client_req"] > before["MAIN.client_req"]
            assert after["MAIN.backend_req"] > before["MAIN.backend_req"]
            for port in (origin_port, origin_port + 1):
                served = origin_counters(f"http://127.0.0.1:{port}").requests
                assert served.get("blocking_playlist", 0) + served.get("part", 0) > 0, port
            text = log.read_text(errors="replace")
            for name in ("origin1", "origin2", "ingest1", "transcode1", "tasks", "beat", "edge"):
                assert f"{name} started" in text, text[-3000:]
            assert "stopped" not in text, text[-3000:]
        finally:
            if publisher is not None:
                publisher.kill()
                publisher.wait()
            os.killpg(cluster.pid, signal.SIGTERM)
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(cluster.pid, signal.SIGKILL)
                cluster.wait()
        # One signal stopped them all: nothing listens any more.
        for port in (edge_port, origin_port, origin_port + 1, rtmp_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2)
