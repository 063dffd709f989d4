"""The publisher surge against real ingest nodes on PostgreSQL with the Redis slot ledger:
500 publishes in 10 s, and 500 all at once, against a quota of 100 (`manage.py surge
publishers`). Exactly 100 admitted; every refusal says capacity and how long to wait; what
the nodes left for their housekeeping (the tally's counts, the keys' last use) reaches
PostgreSQL within seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from quotas import slots
from quotas.models import AdmissionTally, SlotLease
from streams.models import LiveSession, StreamKey
from tests.support.personas import many_streamers
from tests.support.processes import ROOT, free_port, stop_node, wait_until
from tests.support.quotas import quota
from tests.support.services import postgres_or_skip, redis_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

REDIS = "redis://127.0.0.1:6379/13"


def node_env(node: str, redis_url: str | None) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        GOLIVE_NODE_NAME=node, GOLIVE_RTMP_MAX_CONNECTIONS="5000",
        GOLIVE_RTMP_MAX_CONNECTIONS_PER_IP="5000", GOLIVE_RECONNECT_GRACE="0",
        PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def start_nodes(tmp_path: Path, redis_url: str | None) -> list[tuple[subprocess.Popen[str], int]]:
    import time

    nodes = []
    for name in ("ingest-a", "ingest-b"):
        port = free_port()
        log = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "manage.py", "ingest", "--rtmp", f"127.0.0.1:{port}"],
            cwd=ROOT, env=node_env(name, redis_url), stdout=log.open("a"),
            stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 30
        while "RTMP ingest on" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        nodes.append((process, port))
    return nodes


def publisher_surge(tmp_path: Path, ports: list[int], keys: list[str], env: dict[str, str],
                    count: int = 500, seconds: float = 10) -> dict:
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("\n".join(keys) + "\n")
    urls = [f"rtmp://127.0.0.1:{port}/live" for port in ports]
    done = subprocess.run(
        [sys.executable, "manage.py", "surge", "publishers", *urls, "--keys", str(keyfile),
         "--count", str(count), "--seconds", str(seconds), "--hold", "3", "--json", "-"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def tallied(result: str, reason: str | None = None) -> int:
    rows = AdmissionTally.objects.filter(result=result)
    if reason is not None:
        rows = rows.filter(reason=reason)
    return sum(row.count for row in rows)


@pytest.mark.parametrize("seconds", [10, 0], ids=["in 10 s", "all at once"])
def test_500_publishes_against_a_quota_of_100_admit_exactly_100(tmp_path, seconds) -> None:
    postgres_or_skip()
    redis_or_skip(REDIS)
    ledger = slots.SlotLedger(REDIS)
    ledger.clear()
    quota(max_streams=100)
    # Thirty streams ended over the last half hour: the pace a wait is estimated from.
    past = many_streamers(30, prefix="earlier")
    now = timezone.now()
    LiveSession.objects.bulk_create(
        LiveSession(channel_id=channel, started_at=now - timedelta(minutes=40),
                    ended_at=now - timedelta(minutes=i))
        for i, channel in enumerate(
            LiveSession._meta.get_field("channel").related_model.objects.filter(
                slug__startswith="earlier").values_list("pk", flat=True))
    )
    assert len(past) == 30
    keys = many_streamers(500)
    nodes = start_nodes(tmp_path, REDIS)
    try:
        result = publisher_surge(tmp_path, [port for _, port in nodes], keys,
                                 node_env("surge", None), seconds=seconds)
        decision = result["decision_seconds"]
        print(f"\n500 publishes in {seconds} s, quota 100, two nodes: admitted"
              f" {result['admitted']},"
              f" refused {result['refusals']}, waits {result['waits']}, decision p50"
              f" {decision['p50'] * 1000:.0f} ms p99 {decision['p99'] * 1000:.0f} ms max"
              f" {decision['max'] * 1000:.0f} ms")
        assert result["admitted"] == 100
        assert result["refusals"] == {"capacity": 400}
        assert result["errors"] == 0
        # Every refusal says how long to wait: 30 ended in 30 min, one slot a minute.
        assert result["waits"] == {"60": 400}
        assert all("Try again in about a minute" in text for text in result["refusal_samples"])
        # The nodes count and stamp off the way to the answers, every second: each
        # decision counted once, each key used stamped, no other.
        wait_until(lambda: tallied("admitted") == 100, timeout=10)
        wait_until(lambda: tallied("refused", "capacity") == 400, timeout=10)
        assert tallied("refused") == 400
        used = StreamKey.objects.filter(last_used_at__isnull=False)
        wait_until(lambda: used.count() == 500, timeout=10)
        assert not used.filter(channel__slug__startswith="earlier").exists()
        wait_until(lambda: not SlotLease.objects.exists(), timeout=30)
    finally:
        for process, _port in nodes:
            stop_node(process)
        ledger.clear()
