"""/metrics: Prometheus text that moves with the platform, and who may read it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from ingest.gatekeeper import EndReason, Grant, PublishRequest, StreamDescription
from ingest.health import StreamHealth
from quotas import tally
from quotas.actions import set_quota
from quotas.metrics import PlatformCollector
from quotas.models import QuotaChange, SlotLease
from streams import broadcasts
from tests.support.personas import make_streamer

ELSEWHERE = "203.0.113.7"  # a documentation address: not loopback

EVERY_METRIC = {
    "golive_live_streams": "gauge",
    "golive_live_streams_transcoded": "gauge",
    "golive_live_streams_partner": "gauge",
    "golive_quota_max_streams": "gauge",
    "golive_quota_partner_reserve": "gauge",
    "golive_quota_max_transcodes": "gauge",
    "golive_slot_leases": "gauge",
    "golive_slot_leases_overdue": "gauge",
    "golive_admissions": "counter",
    "golive_lease_expiries": "counter",
    "golive_force_stops": "counter",
    "golive_ingest_bytes": "counter",
    "golive_playlist_response_seconds": "histogram",
}


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by name and labels, after checking the text parses."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    families = list(text_string_to_metric_families(response.content.decode()))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_as_prometheus_text_with_every_metric(db, client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "no-cache" in response["Cache-Control"]
    families = {
        family.name: family
        for family in text_string_to_metric_families(response.content.decode())
    }
    for name, kind in EVERY_METRIC.items():
        assert name in families, name
        assert families[name].type == kind, name
    assert "process_cpu_seconds" in families  # the default registry's process metrics
    samples = scrape(client)
    assert value(samples, "golive_admissions_total", result="admitted", reason="") == 0
    assert value(samples, "golive_lease_expiries_total") == 0
    assert value(samples, "golive_quota_max_streams") == 100


def publish(key: str) -> Grant:
    grant = broadcasts.start_broadcast(PublishRequest("live", key, "198.51.100.2", "node-a"))
    assert isinstance(grant, Grant), grant
    return grant


def test_stream_gauges_and_bytes_move_as_streams_start_and_stop(alice, bob, client) -> None:
    before = scrape(client)

    def moved(name: str) -> float:
        return value(scrape(client), name) - value(before, name)

    alice_grant = publish(alice.key)
    bob_grant = publish(bob.key)
    assert moved("golive_live_streams") == 2
    assert moved("golive_live_streams_partner") == 1
    assert moved("golive_live_streams_transcoded") == 2  # within the 4 transcodes

    description = StreamDescription("avc1.64001f", "mp4a.40.2", 1280, 720, 30.0)
    broadcasts.record_heartbeat(alice_grant.session_id, description, StreamHealth(bytes_in=1_000))
    broadcasts.record_heartbeat(bob_grant.session_id, description, StreamHealth(bytes_in=500))
    assert moved("golive_ingest_bytes_total") == 1_500

    broadcasts.end_broadcast(
        alice_grant.session_id, EndReason.PUBLISHER_STOPPED, description,
        StreamHealth(bytes_in=4_000),
    )
    assert moved("golive_live_streams") == 1
    assert moved("golive_live_streams_partner") == 1
    assert moved("golive_ingest_bytes_total") == 4_500  # an ended session's bytes stay counted

    set_quota(
        actor=None, source=QuotaChange.Source.COMMAND, reason="test",
        max_streams=40, partner_reserve=5, max_transcodes=2,
    )
    after = scrape(client)
    assert value(after, "golive_quota_max_streams") == 40
    assert value(after, "golive_quota_partner_reserve") == 5
    assert value(after, "golive_quota_max_transcodes") == 2


def test_admission_counters_are_the_sums_of_the_tallies(db, client) -> None:
    now = timezone.now()
    tally.count("admitted", n=3, at=now - timedelta(days=3))  # counters never forget
    tally.count("admitted", at=now)
    tally.count("resumed", at=now)
    tally.count("refused", "capacity", n=2, at=now)
    tally.count("refused", "partner_reserve", at=now - timedelta(hours=1))
    tally.count("lease_expired", n=2)
    tally.count("force_stopped")
    samples = scrape(client)
    assert value(samples, "golive_admissions_total", result="admitted", reason="") == 4
    assert value(samples, "golive_admissions_total", result="resumed", reason="") == 1
    assert value(samples, "golive_admissions_total", result="refused", reason="capacity") == 2
    assert value(
        samples, "golive_admissions_total", result="refused", reason="partner_reserve"
    ) == 1
    assert value(samples, "golive_lease_expiries_total") == 2
    assert value(samples, "golive_force_stops_total") == 1
    # Releases of slots are not admissions.
    assert not [key for key in samples if ("result", "lease_expired") in key[1]]

    tally.count("refused", "capacity")
    assert value(
        scrape(client), "golive_admissions_total", result="refused", reason="capacity"
    ) == 3


def test_leases_are_counted_and_overdue_ones_shown(db, client) -> None:
    now = timezone.now()
    for name, expires in (("fresh", now + timedelta(seconds=10)), ("late", now - timedelta(1))):
        channel = make_streamer(name).channel
        session = channel.sessions.create(ingest_node="node-a")
        SlotLease.objects.create(session=session, node="node-a", expires_at=expires)
    samples = scrape(client)
    assert value(samples, "golive_slot_leases") == 2
    assert value(samples, "golive_slot_leases_overdue") == 1


def test_a_scrape_costs_the_same_few_queries_however_many_streams_are_live(
    db, django_assert_num_queries
) -> None:
    for name in ("one", "two", "three"):
        make_streamer(name).channel.sessions.create(bytes_in=10)
    tally.count("refused", "capacity")
    tally.count("refused", "banned")
    with django_assert_num_queries(5):
        families = list(PlatformCollector().collect())
    assert len(families) == len(EVERY_METRIC) - 1  # the histogram is per process


def test_the_origin_times_each_media_playlist_answer(db, client) -> None:
    def count(blocking: str) -> float:
        return value(scrape(client), "golive_playlist_response_seconds_count", blocking=blocking)

    plain, blocking = count("no"), count("yes")
    assert client.get("/live/nobody/999/source/index.m3u8").status_code == 404
    assert (count("no"), count("yes")) == (plain + 1, blocking)
    response = client.get("/live/nobody/999/source/index.m3u8?_HLS_msn=3&_HLS_part=0")
    assert response.status_code == 404
    assert (count("no"), count("yes")) == (plain + 1, blocking + 1)


# --- Who may scrape ------------------------------------------------------------------------


def test_only_this_machine_scrapes_without_a_token(db, client) -> None:
    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 403
    # A proxy on this machine connects from loopback on behalf of anyone.
    proxied = client.get("/metrics", HTTP_X_FORWARDED_FOR=ELSEWHERE)
    assert proxied.status_code == 403


@pytest.mark.parametrize(
    ("token", "header", "status"),
    [
        ("s3cret-token", "Bearer s3cret-token", 200),
        ("s3cret-token", "bearer s3cret-token", 200),
        ("s3cret-token", "Bearer s3cret-tokem", 403),
        ("s3cret-token", "Bearer s3cret-token-and-more", 403),
        ("s3cret-token", "Basic s3cret-token", 403),
        ("s3cret-token", None, 403),
        ("", "Bearer ", 403),  # no token configured: none is accepted
        ("", "Bearer", 403),
    ],
)
def test_a_scraper_elsewhere_needs_the_bearer_token(
    db, client, settings, token, header, status
) -> None:
    settings.GOLIVE_METRICS_TOKEN = token
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE, **extra).status_code == status


def test_logged_in_staff_may_scrape_from_anywhere_and_others_may_not(
    olga, alice, client
) -> None:
    client.force_login(alice.user)
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 403
    client.force_login(olga)
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 200
