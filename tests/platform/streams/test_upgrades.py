"""Degrade, then upgrade: a broadcast admitted source-only (over the transcode quota) is
given a transcode slot by `rebalance_transcodes` once one frees, and its publish learns of
it while live: from the heartbeat's answer, and sooner from its ingest node's
housekeeping, which looks every second while it holds a source-only publish."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from ingest.gatekeeper import EndReason, Grant, PublishRequest, StreamDescription
from ingest.health import StreamHealth
from ingest.server import IngestConfig
from ingest.sink import RecordingSink
from quotas.actions import get_quota, set_quota
from quotas.models import QuotaChange
from streams import broadcasts
from streams.gatekeeper import PlatformGatekeeper
from streams.ingest_runtime import PlatformIngest
from streams.models import LiveSession
from tests.ingest.clients import ffmpeg_publish
from tests.ingest.harness import LoopThread
from tests.support.personas import make_streamer

pytestmark = pytest.mark.django_db(transaction=True)

NOTHING = StreamDescription()
HEALTH = StreamHealth()


def transcodes(limit: int) -> None:
    get_quota()  # the row exists (a transactional test before this one may have emptied it)
    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test",
              max_streams=10, max_transcodes=limit)


def publish(key: str) -> Grant:
    grant = broadcasts.start_broadcast(PublishRequest("live", key, "198.51.100.7", "node-a"))
    assert isinstance(grant, Grant)
    return grant


def test_the_heartbeat_answers_an_upgraded_source_only_publish_with_its_new_grant() -> None:
    transcodes(1)
    first, second = publish(make_streamer("first").key), publish(make_streamer("second").key)
    assert (first.transcode, second.transcode) == (True, False)

    async def scenario() -> list[bool | Grant]:
        gatekeeper = PlatformGatekeeper()
        try:
            answers = [await gatekeeper.heartbeat(second, NOTHING, HEALTH)]
            await gatekeeper.release(first, EndReason.PUBLISHER_STOPPED, NOTHING, HEALTH)
            answers.append(await gatekeeper.heartbeat(second, NOTHING, HEALTH))
            await gatekeeper.workers.wrap(broadcasts.rebalance_transcodes)()
            answers.append(await gatekeeper.heartbeat(second, NOTHING, HEALTH))
            upgraded = replace(second, transcode=True)
            answers.append(await gatekeeper.heartbeat(upgraded, NOTHING, HEALTH))
            return answers
        finally:
            await gatekeeper.aclose()

    # Not before a slot is given (ending the first frees one; the rebalance gives it).
    assert asyncio.run(scenario()) == [True, True, replace(second, transcode=True), True]
    assert broadcasts.transcoded_among([first.session_id, second.session_id]) == {
        second.session_id}


def test_ops_raising_the_transcode_quota_upgrades_live_broadcasts_oldest_first() -> None:
    """Over the quota every broadcast goes out source-only; ops raising `--transcodes`
    while they run gives the slots to the oldest, and each learns of it at its heartbeat."""
    transcodes(0)
    grants = [publish(make_streamer(name).key) for name in ("oldest", "middle", "newest")]
    assert [g.transcode for g in grants] == [False, False, False]
    assert broadcasts.rebalance_transcodes() == 0  # no slot: nothing changes

    transcodes(2)
    assert broadcasts.rebalance_transcodes() == 2
    ids = [g.session_id for g in grants]
    assert broadcasts.transcoded_among(ids) == set(ids[:2])
    assert broadcasts.rebalance_transcodes() == 0  # the quota is used up

    async def heartbeats() -> list[bool | Grant]:
        gatekeeper = PlatformGatekeeper()
        try:
            return [await gatekeeper.heartbeat(g, NOTHING, HEALTH) for g in grants]
        finally:
            await gatekeeper.aclose()

    oldest, middle, newest = asyncio.run(heartbeats())
    assert oldest == replace(grants[0], transcode=True)
    assert middle == replace(grants[1], transcode=True)
    assert newest is True  # still source-only, still live

    transcodes(3)
    assert broadcasts.rebalance_transcodes() == 1
    assert broadcasts.transcoded_among(ids) == set(ids)


@pytest.mark.slow
def test_the_ingest_starts_the_ladder_of_its_source_only_publish_within_2_s_of_a_slot_freeing(
) -> None:
    """Heartbeats every minute here: the housekeeping alone must carry the upgrade."""
    transcodes(1)
    first, second = make_streamer("first"), make_streamer("second")
    loop = LoopThread()
    sinks: dict[str, RecordingSink] = {}

    def sink_for(grant: Grant) -> RecordingSink:
        sinks[grant.channel] = RecordingSink(grant)
        return sinks[grant.channel]

    async def start() -> PlatformIngest:
        gatekeeper = PlatformGatekeeper()
        server = PlatformIngest(gatekeeper, sink_for,
                                IngestConfig(node="node-a", heartbeat_interval=60))
        server.platform = gatekeeper
        await server.start("127.0.0.1", 0)
        return server

    server = loop.call(start())
    publishers: list[Any] = []
    try:
        url = f"rtmp://127.0.0.1:{server.address[1]}/live/"
        publishers.append(ffmpeg_publish(url + first.key, frames=90, realtime=True,
                                         background=True))
        wait_until(lambda: "first" in sinks, 15)
        publishers.append(ffmpeg_publish(url + second.key, frames=600, realtime=True,
                                         background=True))
        wait_until(lambda: "second" in sinks, 15)
        assert sinks["first"].grant.transcode
        assert not sinks["second"].grant.transcode
        wait_until(lambda: LiveSession.objects.filter(
            channel=first.channel, ended_at__isnull=False).exists(), 15)
        ended = time.monotonic()
        wait_until(lambda: sinks["second"].regrants, 5)
        took = time.monotonic() - ended
        print(f"\nthe source-only publish learned of its slot {took:.2f} s after the other ended")
        assert took < 2.5  # a housekeeping check (1 s) and its queries
        assert [g.transcode for g in sinks["second"].regrants] == [True]
        assert LiveSession.objects.get(channel=second.channel).transcoded
    finally:
        for process in publishers:
            process.kill()
            process.wait()
        loop.call(server.stop(grace=5))
        loop.close()


def wait_until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.02)
