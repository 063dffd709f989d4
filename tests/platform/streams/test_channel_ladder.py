"""A channel's own quality ladder: set in the admin (checked by `parse_ladder`), read with
the key at admission at no extra query, kept on the broadcast's session and carried on its
grant, upgrades included; "none" is source only and takes no transcode slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ingest.gatekeeper import EndReason, Grant, PublishRequest, StreamDescription
from ingest.health import StreamHealth
from quotas import slots
from quotas.actions import get_quota, set_quota
from quotas.models import QuotaChange
from streams import broadcasts
from streams.gatekeeper import PlatformGatekeeper
from streams.models import Channel, LiveSession
from tests.support.personas import make_streamer
from tests.support.services import REQUIRE_SERVICES
from transcoder.ladder import parse_ladder

ONE_RUNG = "360p30:640x360@30:630k"
NOTHING, HEALTH = StreamDescription(), StreamHealth()


def change_form(channel: Channel, **changes: str) -> dict[str, str]:
    """The admin's change form of ``channel`` as it stands, with ``changes``."""
    return {
        "owner": str(channel.owner_id), "slug": channel.slug, "title": channel.title,
        "category": channel.category, "ban_reason": "", "stopped_until_0": "",
        "stopped_until_1": "", "stop_reason": "", "max_bitrate_kbps": "",
        "transcode_ladder": channel.transcode_ladder, **changes,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("360p:640x360",
         "Not a usable ladder: rung 1: '360p:640x360' does not read as"
         " NAME:WIDTHxHEIGHT@FPS:BITRATE[:PROFILE] (e.g. 720p30:1280x720@30:2400k)."),
        ("a:640x360@30:630k, b:641x360@30:630k",
         "Not a usable ladder: rung 2: rung 'b': 641x360 must have even sides (4:2:0)."),
        ("a:640x360@30:630k\na:426x240@30:400k",
         "Not a usable ladder: rung name 'a' appears twice."),
        (", ".join([ONE_RUNG] * 25),
         "Ensure this value has at most 500 characters (it has 598)."),
    ],
)
def test_the_admin_refuses_a_bad_ladder_with_its_message(
    ada: Any, alice: Any, client: Any, text: str, message: str
) -> None:
    client.force_login(ada)
    url = f"/admin/streams/channel/{alice.channel.pk}/change/"
    response = client.post(url, change_form(alice.channel, transcode_ladder=text))
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors == {"transcode_ladder": [message]}
    alice.channel.refresh_from_db()
    assert alice.channel.transcode_ladder == ""


def test_the_admin_saves_a_good_ladder_and_says_the_syntax_and_the_default(
    ada: Any, alice: Any, client: Any, settings: Any
) -> None:
    settings.GOLIVE_TRANSCODE_LADDER = parse_ladder("480p30:852x480@30:1400k")
    client.force_login(ada)
    url = f"/admin/streams/channel/{alice.channel.pk}/change/"
    page = client.get(url).content.decode()
    assert "NAME:WIDTHxHEIGHT@FPS:BITRATE[:PROFILE]" in page
    assert "now 480p30:852x480@30:1400k." in page  # the platform's ladder, as configured

    text = f"{ONE_RUNG}\n160p30:284x160@30:230k:baseline"
    response = client.post(url, change_form(alice.channel, transcode_ladder=text))
    assert response.status_code == 302, response.content.decode()
    alice.channel.refresh_from_db()
    assert alice.channel.transcode_ladder == text

    response = client.post(url, change_form(alice.channel, transcode_ladder=" None "))
    assert response.status_code == 302
    alice.channel.refresh_from_db()
    assert alice.channel.transcode_ladder == "none"  # one spelling of source only


# ---------------------------------------------------------------------------------------
# Admission: the lock (embedded) and the slot ledger (cluster)


@pytest.fixture(params=["lock", "ledger"])
def admission(request: pytest.FixtureRequest, transactional_db: None, settings: Any
              ) -> Iterator[str]:
    if request.param == "ledger":
        if not settings.REDIS_URL:
            if REQUIRE_SERVICES:
                raise AssertionError("the slot ledger's admission needs REDIS_URL")
            pytest.skip("the slot ledger's admission needs Redis (REDIS_URL)")
        settings.GOLIVE_SLOT_LEDGER = True
    slots._ledger.cache_clear()
    ledger = slots.ledger()
    if ledger is not None:
        ledger.clear()
    get_quota()
    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", max_streams=10,
              max_transcodes=1)
    yield request.param
    if ledger is not None:
        ledger.clear()
    slots._ledger.cache_clear()


def publish(key: str) -> Grant:
    grant = broadcasts.start_broadcast(PublishRequest("live", key, "198.51.100.7", "node-a"))
    assert isinstance(grant, Grant), grant
    return grant


def with_ladder(name: str, text: str) -> str:
    persona = make_streamer(name)
    Channel.objects.filter(pk=persona.channel.pk).update(transcode_ladder=text)
    return persona.key


def test_the_grant_carries_the_channels_ladder_and_the_session_keeps_it(
    admission: str,
) -> None:
    grant = publish(with_ladder("ann", ONE_RUNG))
    assert grant.transcode
    assert grant.ladder == parse_ladder(ONE_RUNG)
    # Edited while live: this broadcast keeps the ladder it started with.
    Channel.objects.filter(slug="ann").update(transcode_ladder="none")
    assert LiveSession.objects.get(pk=grant.session_id).transcode_ladder == ONE_RUNG

    default = publish(make_streamer("ben").key)
    assert default.ladder is None  # the platform's


def test_the_channels_ladder_costs_admission_no_query(admission: str) -> None:
    set_quota(actor=None, source=QuotaChange.Source.COMMAND, reason="test", max_transcodes=10)
    # The first admission writes rows (the hour's tally) that later ones only update.
    publish(make_streamer("warm").key)
    queries = []
    for name, text in (("ann", ""), ("ben", ONE_RUNG)):
        key = with_ladder(name, text)
        with CaptureQueriesContext(connection) as captured:
            publish(key)
        queries.append([q["sql"] for q in captured.captured_queries])
    assert len(queries[0]) == len(queries[1]), "\n\n".join("\n".join(q) for q in queries)


def test_a_source_only_channel_takes_no_transcode_slot_and_is_never_upgraded(
    admission: str,
) -> None:
    plain = publish(with_ladder("ann", "none"))
    assert (plain.transcode, plain.ladder) == (False, ())
    # The one transcode slot is still free for the next channel.
    laddered = publish(with_ladder("ben", ONE_RUNG))
    assert laddered.transcode
    broadcasts.end_broadcast(laddered.session_id, EndReason.PUBLISHER_STOPPED, NOTHING, HEALTH)
    assert broadcasts.rebalance_transcodes() == 0
    assert not LiveSession.objects.get(pk=plain.session_id).transcoded


def test_an_upgraded_publish_keeps_its_channels_ladder(admission: str) -> None:
    first = publish(make_streamer("ann").key)
    second = publish(with_ladder("ben", ONE_RUNG))
    assert (first.transcode, second.transcode) == (True, False)

    async def scenario() -> bool | Grant:
        gatekeeper = PlatformGatekeeper()
        try:
            await gatekeeper.release(first, EndReason.PUBLISHER_STOPPED, NOTHING, HEALTH)
            await gatekeeper.workers.wrap(broadcasts.rebalance_transcodes)()
            return await gatekeeper.heartbeat(second, NOTHING, HEALTH)
        finally:
            await gatekeeper.aclose()

    answer = asyncio.run(scenario())
    assert answer == replace(second, transcode=True)
    assert isinstance(answer, Grant)
    assert answer.ladder == parse_ladder(ONE_RUNG)


def test_a_reconnect_resumes_with_the_ladder_its_broadcast_started_with(
    admission: str, settings: Any
) -> None:
    settings.GOLIVE_RECONNECT_GRACE = 30
    key = with_ladder("ann", ONE_RUNG)
    grant = publish(key)
    broadcasts.end_broadcast(grant.session_id, EndReason.CONNECTION_LOST, NOTHING, HEALTH)
    Channel.objects.filter(slug="ann").update(transcode_ladder="")
    resumed = publish(key)
    assert resumed.resumed
    assert resumed.session_id == grant.session_id
    assert resumed.ladder == parse_ladder(ONE_RUNG)
