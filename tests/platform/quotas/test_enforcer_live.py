"""The enforcer with real ingest processes on PostgreSQL: a publish race across two
nodes, a node killed with live streams, a force stop felt by a real encoder.

The ingest processes (`manage.py ingest`) share the test database with this process
(transactional tests commit, so they see its streamers and it sees their sessions).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from quotas.models import SlotLease
from streams import broadcasts
from streams.models import LiveSession
from tests.ingest.clients import ffmpeg_publish, require
from tests.platform.quotas.swarm import Attempt, swarm
from tests.support.personas import many_streamers
from tests.support.processes import ROOT, free_port, stop_node, wait_until
from tests.support.quotas import quota
from tests.support.services import postgres_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]


def ingest_env(node: str, **extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        GOLIVE_NODE_NAME=node,
        GOLIVE_RTMP_MAX_CONNECTIONS="5000",
        GOLIVE_RTMP_MAX_CONNECTIONS_PER_IP="5000",
        GOLIVE_RECONNECT_GRACE="0",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
        **extra,
    )
    env.pop("REDIS_URL", None)  # media is not the point here: no live index needed
    return env


def start_node(node: str, log: Path, **extra: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ingest", "--rtmp", f"127.0.0.1:{port}"],
        cwd=ROOT, env=ingest_env(node, **extra), stdout=log.open("a"),
        stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 30
    while "RTMP ingest on" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"ingest {node} did not start: {log.read_text()}")
        time.sleep(0.1)
    return process, port


async def close_all(attempts: list[Attempt]) -> None:
    for attempt in attempts:
        attempt.close()


def test_a_thousand_publishes_on_two_nodes_admit_exactly_the_quota(tmp_path, loop_thread) -> None:
    postgres_or_skip()
    quota(max_streams=100)
    racers = many_streamers(1000)
    a, port_a = start_node("ingest-a", tmp_path / "a.log")
    b, port_b = start_node("ingest-b", tmp_path / "b.log")
    try:
        for round_ in range(5):
            started = time.monotonic()
            attempts = loop_thread.call(swarm("127.0.0.1", [port_a, port_b], racers))
            took = time.monotonic() - started
            outcomes = Counter(
                "admitted" if x.admitted else (x.description or x.code).split(" (")[0]
                for x in attempts
            )
            sent = [x.sent_at for x in attempts if x.sent_at]
            print(
                f"\nround {round_ + 1}: 1000 publishes sent within {max(sent) - min(sent):.2f} s,"
                f" all answered {took:.2f} s after the first connect: {outcomes}"
            )
            assert outcomes == {"admitted": 100, "golive is at capacity": 900}, outcomes
            assert SlotLease.objects.count() == 100
            assert LiveSession.objects.filter(ended_at__isnull=True).count() == 100
            nodes = Counter(SlotLease.objects.values_list("node", flat=True))
            assert set(nodes) == {"ingest-a", "ingest-b"}, nodes
            loop_thread.call(close_all(attempts))
            wait_until(lambda: not SlotLease.objects.exists(), timeout=30)
    finally:
        stop_node(a)
        stop_node(b)


@pytest.fixture
def looping_sample(tmp_path) -> Path:
    """A small H.264/AAC FLV to publish with -c copy (nearly no CPU per publisher)."""
    path = tmp_path / "sample.flv"
    subprocess.run(
        [require("ffmpeg"), "-hide_banner", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=22050", "-t", "4",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-c:a", "aac",
         "-b:a", "32k", "-f", "flv", str(path)],
        check=True, timeout=60,
    )
    return path


def loop_publish(sample: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [require("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
         "-stream_loop", "-1", "-i", str(sample), "-c", "copy", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def test_a_killed_node_frees_its_slots_within_the_lease_ttl(tmp_path, looping_sample) -> None:
    postgres_or_skip()
    ttl = 15.0
    quota(max_streams=100)
    streamers = many_streamers(20)
    doomed, doomed_port = start_node("ingest-doomed", tmp_path / "doomed.log",
                                     GOLIVE_LEASE_TTL=str(ttl))
    survivor, _ = start_node("ingest-survivor", tmp_path / "survivor.log",
                             GOLIVE_LEASE_TTL=str(ttl))
    publishers = [
        loop_publish(looping_sample, f"rtmp://127.0.0.1:{doomed_port}/live/{key}")
        for key in streamers
    ]
    try:
        wait_until(lambda: SlotLease.objects.filter(node="ingest-doomed").count() == 20, 30)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        freed_after = wait_until(lambda: not SlotLease.objects.exists(), timeout=ttl + 5)
        print(f"\n20 slots freed {freed_after:.1f} s after kill -9 (TTL {ttl:.0f} s)")
        reasons = Counter(LiveSession.objects.values_list("end_reason", flat=True))
        assert reasons == {"ingest_lost": 20}
    finally:
        for publisher in publishers:
            publisher.kill()
            publisher.communicate()
        stop_node(survivor)


def test_a_force_stopped_encoder_is_dropped_within_2_s_and_refused_on_reconnect(
    tmp_path, looping_sample, settings
) -> None:
    postgres_or_skip()
    node, port = start_node("ingest-a", tmp_path / "a.log", GOLIVE_FORCE_STOP_COOLDOWN="300")
    settings.GOLIVE_FORCE_STOP_COOLDOWN = 300
    (key,) = many_streamers(1, prefix="rulebreaker")
    url = f"rtmp://127.0.0.1:{port}/live/{key}"
    publisher = loop_publish(looping_sample, url)
    try:
        wait_until(lambda: LiveSession.objects.filter(ended_at__isnull=True).exists(), 20)
        time.sleep(1.0)
        session = LiveSession.objects.get()
        stopped = time.monotonic()
        assert broadcasts.force_stop(session.pk, by="ada", reason="rights holder complaint")
        publisher.wait(timeout=10)  # ffmpeg exits when the server drops it
        gone_after = time.monotonic() - stopped
        print(f"\nforce-stopped publisher gone after {gone_after:.2f} s")
        assert gone_after < 2.0
        again = ffmpeg_publish(url, frames=30)
        assert again.returncode != 0
        assert "stopped by golive staff (rights holder complaint)" in again.stderr
        assert "about 5 minutes" in again.stderr
    finally:
        publisher.kill()
        publisher.communicate()
        stop_node(node)
