"""Viewer counts from heartbeats (memory and Redis, one contract), bounded per client
address; the beacon endpoints, the session's peak and /metrics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from django.test import Client

from viewers import counter, sessions, telemetry
from viewers.asgi import BeaconApplication
from viewers.counter import MemoryViewerCounts, RedisViewerCounts

REDIS = "redis://127.0.0.1:6379/14"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def memory_counts(window: float, **limits):
    clock = Clock()
    return MemoryViewerCounts(window=window, clock=clock, **limits), lambda s: setattr(
        clock, "now", clock.now + s
    )


def delete_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def redis_counts(window: float, **limits):
    from tests.support.services import redis_or_skip

    redis_or_skip(REDIS)
    prefix = f"test-{uuid.uuid4().hex[:8]}:viewers"
    counts = RedisViewerCounts(REDIS, prefix=prefix, window=window, **limits)
    return counts, time.sleep


@pytest.fixture(params=["memory", "redis"])
def make_counts(request):
    """Builds counters of one kind; Redis keys are deleted after the test."""
    prefixes = []

    def make(window: float = 0.5, **limits):
        if request.param == "memory":
            return memory_counts(window, **limits)
        made = redis_counts(window, **limits)
        prefixes.append(made[0].prefix)
        return made

    yield make
    for prefix in prefixes:
        delete_keys(prefix)


@pytest.fixture
def counts(make_counts):
    return make_counts(0.5)


def test_distinct_tabs_count_once_each_within_the_window(counts) -> None:
    counter, _ = counts

    async def scenario():
        for n in range(30):
            await counter.beat("demo", f"tab-{n:04d}x", f"10.0.0.{n}")
        await counter.beat("demo", "tab-0000x", "10.0.0.0")  # a second beat of the same tab
        return await counter.acounts(["demo", "other"])

    assert asyncio.run(scenario()) == {"demo": 30, "other": 0}
    assert counter.counts(["demo"]) == {"demo": 30}


def test_tabs_that_stop_beating_fall_out_and_leaving_counts_at_once(counts) -> None:
    counter, wait = counts

    async def first():
        await counter.beat("demo", "tab-aaaaaa", "10.0.0.1")
        await counter.beat("demo", "tab-bbbbbb", "10.0.0.2")
        return await counter.leave("demo", "tab-aaaaaa", "10.0.0.1")

    assert asyncio.run(first()) == 1
    wait(0.7)
    assert counter.counts(["demo"]) == {"demo": 0}


def test_one_address_counts_at_most_its_cap_of_tabs_per_channel(make_counts) -> None:
    counter, _ = make_counts(30.0, tabs_per_address=3)

    async def scenario():
        bot = [await counter.beat("demo", f"bot-{n:05d}", "203.0.113.9") for n in range(50)]
        again = await counter.beat("demo", "bot-00001", "203.0.113.9")  # a counted tab beats on
        elsewhere = await counter.beat("other", "bot-00049", "203.0.113.9")
        neighbour = await counter.beat("demo", "viewer-0001", "198.51.100.7")
        return bot, again, elsewhere, neighbour

    bot, again, elsewhere, neighbour = asyncio.run(scenario())
    assert [beat.counted for beat in bot] == [True] * 3 + [False] * 47
    assert [beat.viewers for beat in bot] == [1, 2, 3] + [3] * 47  # the rest still see 3
    assert (again.counted, again.viewers) == (True, 3)
    assert (elsewhere.counted, elsewhere.viewers) == (True, 1)  # the cap is per channel
    assert (neighbour.counted, neighbour.viewers) == (True, 4)  # other addresses unaffected
    assert counter.counts(["demo", "other"]) == {"demo": 4, "other": 1}


def test_a_tab_that_leaves_or_goes_quiet_frees_its_addresss_slot(make_counts) -> None:
    counter, wait = make_counts(0.5, tabs_per_address=2)

    async def fill():
        await counter.beat("demo", "tab-aaaaaa", "203.0.113.9")
        await counter.beat("demo", "tab-bbbbbb", "203.0.113.9")
        refused = await counter.beat("demo", "tab-cccccc", "203.0.113.9")
        await counter.leave("demo", "tab-aaaaaa", "203.0.113.9")
        return refused, await counter.beat("demo", "tab-cccccc", "203.0.113.9")

    refused, taken = asyncio.run(fill())
    assert not refused.counted
    assert (taken.counted, taken.viewers) == (True, 2)
    wait(0.7)

    async def later():
        return [await counter.beat("demo", f"new-{n:05d}", "203.0.113.9") for n in range(3)]

    assert [beat.counted for beat in asyncio.run(later())] == [True, True, False]


def test_each_address_has_a_budget_of_beacons_per_window(make_counts) -> None:
    counter, wait = make_counts(30.0, beacons_per_minute=5, budget_window=0.6)

    async def burst(address: str, n: int):
        return [await counter.admit(address) for _ in range(n)]

    answers = asyncio.run(burst("203.0.113.9", 8))
    assert answers[:5] == [None] * 5
    assert all(0 < wait_s <= 0.6 for wait_s in answers[5:])  # seconds until it resets
    assert asyncio.run(burst("198.51.100.7", 1)) == [None]  # a neighbour is not affected
    wait(0.7)
    assert asyncio.run(burst("203.0.113.9", 1)) == [None]  # a new window, a new budget


def test_two_processes_never_count_more_than_the_cap_for_one_address() -> None:
    """The cap check and the write are one Lua script: origin processes racing on one
    address cannot both take the last slot."""
    processes = [redis_counts(30.0, tabs_per_address=5)[0]]
    prefix = processes[0].prefix
    processes.append(RedisViewerCounts(REDIS, prefix=prefix, window=30.0, tabs_per_address=5))
    try:
        async def race():
            return await asyncio.gather(*(
                processes[n % 2].beat("demo", f"bot-{n:05d}", "203.0.113.9") for n in range(60)
            ))

        beats = asyncio.run(race())
        assert sum(beat.counted for beat in beats) == 5
        assert processes[0].counts(["demo"]) == {"demo": 5}
    finally:
        delete_keys(prefix)


@pytest.fixture(autouse=True)
def beacon_counts(monkeypatch):
    """The beacon endpoints' counter for this test: fresh, in memory, default limits."""
    memory = MemoryViewerCounts()
    monkeypatch.setattr(counter, "_counts", [memory])
    return memory


def beacon(path: str, body: bytes, method: str = "POST", **kwargs) -> tuple[int, dict]:
    status, answer, _ = asyncio.run(abeacon(path, body, method, **kwargs))
    return status, answer


async def abeacon(
    path: str, body: bytes, method: str = "POST", *, client: str = "198.51.100.20",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict, dict[bytes, bytes]]:
    sent: list[dict] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def fallback(scope, receive, send):
        raise AssertionError("should not reach Django")

    scope = {"type": "http", "path": path, "method": method, "headers": headers or [],
             "client": (client, 50000)}
    await BeaconApplication(fallback)(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"]), dict(sent[0]["headers"])


def heartbeat_body(tab: str, channel: str = "alice") -> bytes:
    return json.dumps({"channel": channel, "tab": tab}).encode()


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_for_a_live_channel_counts_and_raises_the_peak_once(alice) -> None:
    from streams.models import LiveSession

    session = LiveSession.objects.create(channel=alice.channel)
    sessions.forget()

    async def scenario():
        statuses = [
            (await abeacon("/viewers/heartbeat", heartbeat_body(f"t{n:08d}"),
                           client=f"198.51.100.{n}"))[:2]
            for n in range(5)
        ]
        await asyncio.gather(*sessions._pending)
        return statuses

    statuses = asyncio.run(scenario())
    assert [body["viewers"] for _, body in statuses] == [1, 2, 3, 4, 5]
    assert all(body["live"] and body["counted"] for _, body in statuses)
    # Written once (the first beat), then throttled: never an UPDATE per viewer.
    assert LiveSession.objects.get(pk=session.pk).peak_viewers == 1


@pytest.mark.django_db(transaction=True)
def test_a_bot_on_one_address_adds_at_most_its_cap_and_costs_no_query_per_beat(
    alice, monkeypatch,
) -> None:
    from streams.models import LiveSession

    session = LiveSession.objects.create(channel=alice.channel)
    sessions.forget()
    queries = {"lookups": 0, "peak writes": 0}
    find, raise_peak = sessions._find_session, sessions._raise_peak

    def counted_find(slug):
        queries["lookups"] += 1
        return find(slug)

    def counted_raise(session_id, count):
        queries["peak writes"] += 1
        raise_peak(session_id, count)

    monkeypatch.setattr(sessions, "_find_session", counted_find)
    monkeypatch.setattr(sessions, "_raise_peak", counted_raise)

    async def scenario():
        bot = [(await abeacon("/viewers/heartbeat", heartbeat_body(f"bot{n:06d}"),
                              client="203.0.113.66"))[:2] for n in range(60)]
        person = await abeacon("/viewers/heartbeat", heartbeat_body("viewer-0001"),
                               client="198.51.100.4")
        await asyncio.gather(*sessions._pending)
        return bot, person[:2]

    bot, person = asyncio.run(scenario())
    assert all(status == 200 for status, _ in bot)
    assert [body["counted"] for _, body in bot] == [True] * 10 + [False] * 50
    assert bot[-1][1]["viewers"] == 10  # the bot's tabs past the cap see the count, add nothing
    assert person == (200, {"viewers": 11, "live": True, "counted": True})
    assert queries == {"lookups": 1, "peak writes": 1}  # one cached lookup, one throttled write
    assert LiveSession.objects.get(pk=session.pk).peak_viewers == 1


@pytest.mark.django_db(transaction=True)
def test_past_its_budget_an_address_gets_429_before_its_body_is_read(alice, monkeypatch) -> None:
    monkeypatch.setattr(counter, "_counts", [MemoryViewerCounts(beacons_per_minute=8)])
    sessions.forget()

    async def scenario():
        answers = []
        for n in range(6):
            answers.append(await abeacon("/viewers/heartbeat", heartbeat_body(f"tab{n:06d}"),
                                         client="203.0.113.66"))
        for _ in range(2):  # telemetry draws on the same budget
            answers.append(await abeacon("/viewers/telemetry", b'{"switches": 0}',
                                         client="203.0.113.66"))
        answers.append(await abeacon("/viewers/heartbeat", b"not even json",
                                     client="203.0.113.66"))
        answers.append(await abeacon("/viewers/telemetry", b'{"switches": 0}',
                                     client="203.0.113.66"))
        answers.append(await abeacon("/viewers/heartbeat", heartbeat_body("another1"),
                                     client="198.51.100.4"))
        return answers

    answers = asyncio.run(scenario())
    assert [status for status, _, _ in answers[:8]] == [200] * 6 + [202] * 2
    for status, body, headers in answers[8:10]:
        assert status == 429  # not 400: the bad body was never read
        assert body["error"] == "too many requests"
        assert 1 <= int(headers[b"retry-after"]) <= 60
        assert body["retry_after"] == int(headers[b"retry-after"])
    assert answers[10][0] == 200  # another address has its own budget


@pytest.mark.django_db(transaction=True)
def test_behind_a_trusted_edge_each_forwarded_client_is_its_own_address(
    alice, monkeypatch, settings,
) -> None:
    from streams.models import LiveSession

    settings.GOLIVE_TRUSTED_PROXIES = ["10.1.0.0/16"]
    monkeypatch.setattr(counter, "_counts", [MemoryViewerCounts(tabs_per_address=1)])
    LiveSession.objects.create(channel=alice.channel)
    sessions.forget()

    def forwarded(chain: str) -> list[tuple[bytes, bytes]]:
        return [(b"x-forwarded-for", chain.encode())]

    async def scenario():
        through_edge = [
            (await abeacon("/viewers/heartbeat", heartbeat_body(f"edge{n:06d}"),
                           client="10.1.2.3", headers=forwarded(f"198.51.100.{n}")))[1]
            for n in range(5)
        ]
        # A client writing its own X-Forwarded-For is still one address: the edge appends
        # the real peer, and only hops the edge vouches for are believed.
        forged = [
            (await abeacon("/viewers/heartbeat", heartbeat_body(f"forged{n:06d}"),
                           client="10.1.2.3",
                           headers=forwarded(f"192.0.2.{n}, 203.0.113.66")))[1]
            for n in range(5)
        ]
        direct = [
            (await abeacon("/viewers/heartbeat", heartbeat_body(f"direct{n:06d}"),
                           client="203.0.113.77", headers=forwarded(f"192.0.2.{n}")))[1]
            for n in range(5)
        ]
        return through_edge, forged, direct

    through_edge, forged, direct = asyncio.run(scenario())
    assert [body["counted"] for body in through_edge] == [True] * 5
    assert [body["counted"] for body in forged] == [True] + [False] * 4
    assert [body["counted"] for body in direct] == [True] + [False] * 4  # untrusted peer
    assert direct[-1]["viewers"] == 7


@pytest.mark.django_db(transaction=True)
def test_an_offline_channel_counts_nobody(alice) -> None:
    sessions.forget()
    status, body = beacon("/viewers/heartbeat", b'{"channel": "alice", "tab": "abcdefgh"}')
    assert status == 200
    assert body == {"viewers": 0, "live": False, "counted": False}


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
def test_metrics_and_the_api_report_live_viewers(alice, client, beacon_counts) -> None:
    from streams.models import LiveSession

    LiveSession.objects.create(channel=alice.channel)
    for n in range(3):
        asyncio.run(beacon_counts.beat("alice", f"tab{n:06d}", f"10.0.0.{n}"))
    text = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert 'golive_viewers{channel="alice"} 3.0' in text
    assert "golive_viewers_total 3.0" in text
    assert client.get("/api/v1/channels/alice/").json()["viewers"] == 3
    assert client.get("/api/v1/live/").json()[0]["viewers"] == 3
