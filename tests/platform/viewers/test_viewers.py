"""Viewer counts from heartbeats (memory and Redis, one contract), the beacon endpoints,
the session's peak and /metrics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from django.test import Client

from viewers import sessions, telemetry
from viewers.asgi import BeaconApplication
from viewers.counter import MemoryViewerCounts, RedisViewerCounts

REDIS = "redis://127.0.0.1:6379/14"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def memory_counts(window: float):
    clock = Clock()
    return MemoryViewerCounts(window=window, clock=clock), lambda s: setattr(
        clock, "now", clock.now + s
    )


def redis_counts(window: float):
    from tests.platform.chat.test_hub import redis_or_skip

    redis_or_skip()
    counts = RedisViewerCounts(REDIS, prefix=f"test-{uuid.uuid4().hex[:8]}:viewers", window=window)
    return counts, time.sleep


@pytest.fixture(params=["memory", "redis"])
def counts(request):
    return (memory_counts if request.param == "memory" else redis_counts)(0.5)


def test_distinct_tabs_count_once_each_within_the_window(counts) -> None:
    counter, _ = counts

    async def scenario():
        for n in range(30):
            await counter.beat("demo", f"tab-{n:04d}x")
        await counter.beat("demo", "tab-0000x")  # a second beat of the same tab
        return await counter.acounts(["demo", "other"])

    assert asyncio.run(scenario()) == {"demo": 30, "other": 0}
    assert counter.counts(["demo"]) == {"demo": 30}


def test_tabs_that_stop_beating_fall_out_and_leaving_counts_at_once(counts) -> None:
    counter, wait = counts

    async def first():
        await counter.beat("demo", "tab-aaaaaa")
        await counter.beat("demo", "tab-bbbbbb")
        return await counter.leave("demo", "tab-aaaaaa")

    assert asyncio.run(first()) == 1
    wait(0.7)
    assert counter.counts(["demo"]) == {"demo": 0}


def beacon(path: str, body: bytes, method: str = "POST") -> tuple[int, dict]:
    return asyncio.run(abeacon(path, body, method))


async def abeacon(path: str, body: bytes, method: str = "POST") -> tuple[int, dict]:
    if True:
        sent: list[dict] = []
        incoming = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        async def fallback(scope, receive, send):
            raise AssertionError("should not reach Django")

        scope = {"type": "http", "path": path, "method": method, "headers": []}
        await BeaconApplication(fallback)(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_for_a_live_channel_counts_and_raises_the_peak_once(alice) -> None:
    from streams.models import LiveSession

    session = LiveSession.objects.create(channel=alice.channel)
    sessions.forget()

    async def scenario():
        statuses = [
            await abeacon(
                "/viewers/heartbeat", json.dumps({"channel": "alice", "tab": f"t{n:08d}"}).encode()
            )
            for n in range(5)
        ]
        await asyncio.gather(*sessions._pending)
        return statuses

    statuses = asyncio.run(scenario())
    assert [body["viewers"] for _, body in statuses] == [1, 2, 3, 4, 5]
    assert all(body["live"] for _, body in statuses)
    # Written once (the first beat), then throttled: never an UPDATE per viewer.
    assert LiveSession.objects.get(pk=session.pk).peak_viewers == 1


@pytest.mark.django_db(transaction=True)
def test_an_offline_channel_counts_nobody(alice) -> None:
    sessions.forget()
    status, body = beacon("/viewers/heartbeat", b'{"channel": "alice", "tab": "abcdefgh"}')
    assert status == 200
    assert body == {"viewers": 0, "live": False}


@pytest.mark.parametrize(("body", "status"), [
    (b"not json", 400),
    (b"[]", 400),
    (b'{"channel": "alice", "tab": "short"}', 400),
    (b'{"channel": "../x", "tab": "abcdefgh"}', 400),
    (b'{"channel": "alice", "tab": "' + b"a" * 600 + b'"}', 413),
])
def test_bad_heartbeats_get_a_clear_error(body: bytes, status: int) -> None:
    got, answer = beacon("/viewers/heartbeat", body)
    assert got == status
    assert answer["error"]


def test_only_post_is_accepted() -> None:
    assert beacon("/viewers/heartbeat", b"", method="GET")[0] == 405


def test_telemetry_batches_become_histograms_in_metrics(db) -> None:
    before = telemetry.LATENCY.collect()[0]
    count_before = next(s.value for s in before.samples if s.name.endswith("_count"))
    status, body = beacon("/viewers/telemetry", json.dumps({
        "latency": [1.2, 1.4, 999], "stalls": [0.5], "switches": 2, "errors": {"network": 1},
    }).encode())
    assert status == 202
    assert body["taken"] == 5  # two latencies (999 s is discarded), a stall, switches, an error
    after = telemetry.LATENCY.collect()[0]
    assert next(s.value for s in after.samples if s.name.endswith("_count")) == count_before + 2
    text = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert "golive_player_latency_seconds_bucket" in text
    assert "golive_player_stall_seconds_bucket" in text
    assert "golive_player_rendition_switches_bucket" in text
    assert "golive_viewers_total" in text


@pytest.mark.parametrize("batch", [
    {"latency": "fast"}, {"latency": [True]}, {"switches": -1}, {"errors": []},
])
def test_malformed_telemetry_is_refused(batch) -> None:
    assert beacon("/viewers/telemetry", json.dumps(batch).encode())[0] == 400


@pytest.mark.django_db
def test_metrics_and_the_api_report_live_viewers(alice, client, monkeypatch) -> None:
    from streams.models import LiveSession
    from viewers import counter

    memory = MemoryViewerCounts()
    monkeypatch.setattr(counter, "_counts", [memory])
    LiveSession.objects.create(channel=alice.channel)
    for n in range(3):
        asyncio.run(memory.beat("alice", f"tab{n:06d}"))
    text = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert 'golive_viewers{channel="alice"} 3.0' in text
    assert "golive_viewers_total 3.0" in text
    assert client.get("/api/v1/channels/alice/").json()["viewers"] == 3
    assert client.get("/api/v1/live/").json()[0]["viewers"] == 3
